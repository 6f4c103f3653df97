//! The runbook language of `cutover`.
//!
//! A runbook is a text file that a team reads and reviews. This crate turns
//! one into a typed, name-resolved [`Runbook`] (the [`model`]) that the
//! planner, the engine and the step kinds consume, reports every fault it
//! finds as a [`Diagnostic`] pointing at file, line and column, and formats
//! runbooks canonically.
//!
//! ```
//! let loaded = cutover_lang::parse_source(
//!     "move.runbook",
//!     "runbook move\n\nstep stop\n  manual \"Stop the services\"\n".to_string(),
//! );
//! assert!(loaded.diagnostics.is_empty());
//! let runbook = loaded.runbook.unwrap();
//! assert_eq!(runbook.describe(&runbook.steps[0].action), "manual \"Stop the services\"");
//! ```
//!
//! The pipeline: [`lexer`] (lines of tokens, comments kept) → [`syntax`]
//! (items: a header line and its indented body) → name resolution and
//! checking → [`Runbook`]. [`render_human`] and [`render_json`] show the
//! diagnostics; [`format_source`] prints a file canonically.
//!
//! The crate knows nothing of how a runbook is run.

mod code;
mod describe;
pub mod diagnostic;
pub mod format;
pub mod lexer;
mod load;
pub mod model;
mod render;
mod resolve;
pub mod source;
mod suggest;
pub mod syntax;
#[cfg(feature = "testgen")]
pub mod testgen;
pub mod units;

pub use code::Code;
pub use diagnostic::{Diagnostic, Label, Severity};
pub use format::{format_source, unified_diff};
pub use load::{Loaded, MAX_FILE_BYTES, load_file, parse_source, read_text};
pub use model::*;
pub use render::{printable, render_human, render_json, render_short};
pub use source::{FileId, SourceFile, SourceMap, Span};
pub use suggest::closest;
