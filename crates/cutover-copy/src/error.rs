//! One error type for both ends of a copy. It crosses the agent protocol as a
//! kind code plus a message, so a remote failure reads the same as a local one.

use std::fmt;
use std::io;
use std::path::Path;

/// What went wrong, coarse enough to pick an exit code or a retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// A file or folder that must exist does not.
    NotFound,
    /// The file system refused access.
    PermissionDenied,
    /// The destination's disk (or file size limit) is full.
    NoSpace,
    /// A path names something outside the agent's root.
    OutsideRoot,
    /// The two ends speak different protocol versions.
    VersionMismatch,
    /// The byte stream between the ends is not the protocol.
    Protocol,
    /// The agent process could not start or died.
    AgentFailed,
    /// The result's hash or checksums differ from the source's.
    Verification,
    /// The copy was cancelled; a rerun resumes it.
    Cancelled,
    /// A path or argument that cannot work (a folder where a file is expected).
    InvalidInput,
    /// SQLite refused an operation.
    Sqlite,
    /// Any other I/O failure.
    Io,
    /// A TCP connect the agent made for a check or a tunnel failed.
    Unreachable,
}

impl ErrorKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            ErrorKind::NotFound => 1,
            ErrorKind::PermissionDenied => 2,
            ErrorKind::NoSpace => 3,
            ErrorKind::OutsideRoot => 4,
            ErrorKind::VersionMismatch => 5,
            ErrorKind::Protocol => 6,
            ErrorKind::AgentFailed => 7,
            ErrorKind::Verification => 8,
            ErrorKind::Cancelled => 9,
            ErrorKind::InvalidInput => 10,
            ErrorKind::Sqlite => 11,
            ErrorKind::Io => 12,
            ErrorKind::Unreachable => 13,
        }
    }

    pub(crate) fn from_code(code: u8) -> ErrorKind {
        match code {
            1 => ErrorKind::NotFound,
            2 => ErrorKind::PermissionDenied,
            3 => ErrorKind::NoSpace,
            4 => ErrorKind::OutsideRoot,
            5 => ErrorKind::VersionMismatch,
            6 => ErrorKind::Protocol,
            7 => ErrorKind::AgentFailed,
            8 => ErrorKind::Verification,
            9 => ErrorKind::Cancelled,
            10 => ErrorKind::InvalidInput,
            11 => ErrorKind::Sqlite,
            13 => ErrorKind::Unreachable,
            _ => ErrorKind::Io,
        }
    }
}

/// A failed copy, sync or agent request: a kind and a message that names the
/// file or the peer involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CopyError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CopyError {
        CopyError {
            kind,
            message: message.into(),
        }
    }

    /// An I/O error while doing `what` to `path`.
    pub fn io(what: &str, path: &Path, err: io::Error) -> CopyError {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                ErrorKind::PermissionDenied
            }
            io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge => ErrorKind::NoSpace,
            _ => ErrorKind::Io,
        };
        let detail = match kind {
            ErrorKind::NoSpace => format!("{err} (the disk or the file size limit is full)"),
            _ => err.to_string(),
        };
        CopyError::new(kind, format!("{what} {}: {detail}", path.display()))
    }

    pub(crate) fn protocol(message: impl Into<String>) -> CopyError {
        CopyError::new(ErrorKind::Protocol, message)
    }

    /// The same error with `context` in front of its message.
    pub fn context(self, context: &str) -> CopyError {
        CopyError {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CopyError {}

impl From<rusqlite::Error> for CopyError {
    fn from(err: rusqlite::Error) -> CopyError {
        CopyError::new(ErrorKind::Sqlite, format!("sqlite: {err}"))
    }
}
