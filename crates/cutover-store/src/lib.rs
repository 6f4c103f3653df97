//! The state store: one SQLite file per run of a runbook.
