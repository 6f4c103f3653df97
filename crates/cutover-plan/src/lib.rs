//! The planner: a pure function from a runbook (and optional probed facts) to a timeline and lint diagnostics.
