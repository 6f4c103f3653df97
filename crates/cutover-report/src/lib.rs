//! Post-mortem exports of a run (Markdown, JSON, CSV, HTML) and the read-only live dashboard.
