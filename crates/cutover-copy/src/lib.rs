//! Delta image copy, the agent protocol and SQLite online sync: the fastest
//! honest way to move a disk image or a database between two hosts without
//! ever leaving a broken file where a good one was.
//!
//! - [`copy_image`] copies a file between two [`Location`]s (this machine, or
//!   an agent reached over a child's stdin/stdout such as ssh), sending only
//!   blocks that differ, keeping holes, verifying the result's content hash
//!   and swapping it in atomically. [`check_image`] compares without writing.
//! - [`sync_sqlite`] takes a consistent snapshot of a live SQLite database,
//!   copies it the same way and verifies every table's rows.
//! - [`agent::serve_stdio`] is the far end (`cutover agent --stdio --root DIR`).
//!
//! `docs/copy.md` describes the protocol, the safety guarantees and figures.

pub mod agent;
mod beneath;
pub mod blocks;
mod compress;
mod copy;
mod endpoint;
mod error;
mod files;
mod inplace;
pub mod protocol;
mod sparse;
mod sqlite;

pub use copy::{
    Cancel, CheckReport, CopyOptions, CopyReport, Outcome, Progress, SyncReport, check_image,
    copy_image, copy_with, sync_sqlite, sync_sqlite_with, table_checksums,
};
pub use endpoint::{Endpoint, Location};
pub use error::{CopyError, ErrorKind};
pub use sqlite::TableChecksum;
