//! The lab: the world a runbook needs, built for real on loopback.
