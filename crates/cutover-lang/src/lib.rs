//! The runbook language of `cutover`.
//!
//! A runbook is a text file that a team reads and reviews. This crate turns
//! one into a typed, name-resolved [`Runbook`] (the [`model`]) that the
//! planner, the engine and the step kinds consume, reports every fault it
//! finds as a [`Diagnostic`] pointing at file, line and column, and formats
//! runbooks canonically.
//!
//! The crate knows nothing of how a runbook is run.

pub mod diagnostic;
pub mod model;
pub mod source;
pub mod units;

pub use diagnostic::{Diagnostic, Label, Severity};
pub use model::*;
pub use source::{FileId, SourceFile, SourceMap, Span};
