//! The engine: runs a runbook step by step, checkpointing every transition.
