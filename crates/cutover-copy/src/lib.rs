//! Delta image copy, the agent protocol and SQLite online backup.
