//! Database servers for `db.sync`: this crate talks to the servers — it
//! checks what replication needs (preflight), sets replication up and takes
//! it down, measures how far the destination is behind (lag), copies what
//! replication leaves out (sequence values) and compares both sides with
//! chunked checksums in primary-key order, for PostgreSQL ([`postgres`])
//! and MariaDB ([`mysql`]); and replication back, new to old, for a
//! fallback window (`start_back` of each).
//!
//! It knows nothing of runbooks: a [`Server`] is an address, a database, a
//! user and a [`Password`] the caller has read from wherever the runbook
//! points. A password is never part of an error, a `Debug` output or any
//! value this crate returns.
//!
//! [`local`] starts throwaway servers from the system's binaries (tests,
//! benchmarks, the lab).

mod chunks;
pub mod local;
pub mod mysql;
pub mod postgres;
pub mod size;

use serde::Serialize;
use std::fmt;

/// One database on one server, as `db.sync` reaches it.
#[derive(Clone, Debug)]
pub struct Server {
    /// An address or a name the server answers on.
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<Password>,
}

impl Server {
    /// `user@host:port/database`, for messages (never the password).
    pub fn label(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

/// A password, kept out of every `Debug` and message.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(text: impl Into<String>) -> Password {
        Password(text.into())
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A setting replication needs that a server does not have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The server, as [`Server::label`].
    pub server: String,
    /// The setting or privilege, by name (`wal_level`, `REPLICATION`).
    pub setting: String,
    /// What the server has instead.
    pub found: String,
    /// The line to change or the statement to run.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} is {}: {}",
            self.server, self.setting, self.found, self.fix
        )
    }
}

/// Why a database operation failed. No variant holds a password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server could not be reached or dropped the connection.
    #[error("cannot connect to {server}: {reason}")]
    Connect { server: String, reason: String },
    /// The server refused the user's password (or the user).
    #[error("{server} refused the login of user `{user}`: {reason}")]
    Login {
        server: String,
        user: String,
        reason: String,
    },
    /// What replication needs is missing; every problem found is listed.
    #[error("{}", problems_text(.0))]
    Preflight(Vec<Problem>),
    /// A statement failed.
    #[error("{server}: {what}: {reason}")]
    Query {
        server: String,
        what: String,
        reason: String,
    },
    /// The source holds something this crate cannot copy.
    #[error("{server}: {what}")]
    Unsupported { server: String, what: String },
    /// Replication stopped on an error the server reports.
    #[error("replication on {server} stopped: {reason}")]
    Stopped { server: String, reason: String },
}

impl DbError {
    /// Whether another attempt cannot pass before something is changed.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            DbError::Login { .. }
                | DbError::Preflight(_)
                | DbError::Unsupported { .. }
                | DbError::Stopped { .. }
        )
    }
}

/// A refused login as a preflight problem; other connection errors pass.
pub(crate) fn login_problem(err: DbError) -> Result<Problem, DbError> {
    match err {
        DbError::Login {
            server,
            user,
            reason,
        } => Ok(Problem {
            server,
            setting: format!("the login of user `{user}`"),
            found: format!("refused ({reason})"),
            fix: "check the user and the password the runbook points to".into(),
        }),
        other => Err(other),
    }
}

fn problems_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The replication objects' name for a `db.sync` step (PostgreSQL's
/// publication, subscription and slot, MariaDB's replica connection):
/// `cutover_` and the step name in lower case, other characters as `_`.
pub fn replication_name(step: &str) -> String {
    let mut name = String::from("cutover_");
    name.extend(step.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
    name.truncate(63);
    name
}

/// The name of a `db.sync` step's replication back, new to old, in the
/// fallback window its `undo` opens ([`replication_name`] of the step,
/// `_back` added).
pub fn fallback_name(step: &str) -> String {
    let mut name = replication_name(step);
    name.truncate(63 - "_back".len());
    name.push_str("_back");
    name
}

/// How far a replicating destination is: the bulk copy and the lag.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lag {
    /// Tables being replicated.
    pub tables: usize,
    /// Tables whose initial copy is done and which follow the stream.
    pub tables_ready: usize,
    /// Bytes of table data on the source and on the destination.
    pub source_bytes: u64,
    pub copied_bytes: u64,
    /// The source's WAL position when measured.
    pub source_position: String,
    /// What the destination has applied and made durable.
    pub applied_position: Option<String>,
    /// The WAL between the two (None while the stream is not connected).
    pub lag_bytes: Option<u64>,
    /// The source's estimate of the time behind (None while unknown).
    pub lag_seconds: Option<f64>,
    /// Transactions written on the source and not yet applied, where the
    /// engine counts them (MariaDB's GTIDs); they then decide.
    pub lag_transactions: Option<u64>,
}

impl Lag {
    /// Every table copied and nothing left to apply: no transaction
    /// behind where they are counted, else no byte of log behind.
    pub fn caught_up(&self) -> bool {
        self.tables_ready == self.tables
            && match self.lag_transactions {
                Some(transactions) => transactions == 0,
                None => self.lag_bytes == Some(0),
            }
    }
}

/// One table as compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableSum {
    /// `schema.table`
    pub table: String,
    pub source_rows: u64,
    pub destination_rows: u64,
    /// The chunks compared (1 for a table without a primary key).
    pub chunks: u64,
    /// The primary-key columns the chunks follow (empty: whole table).
    pub key: Vec<String>,
}

/// Rows that differ: the table and the key range that holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub table: String,
    /// `(a, b]` over the key columns (`-inf`/`+inf` at the ends).
    pub range: String,
    pub source_rows: u64,
    pub destination_rows: u64,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: rows with key in {} differ ({} on the source, {} on the destination)",
            self.table, self.range, self.source_rows, self.destination_rows
        )
    }
}

/// The outcome of comparing both sides on one snapshot each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub tables: Vec<TableSum>,
    pub differences: Vec<Difference>,
    /// Tables, columns, types and indexes that are not the same.
    pub schema: Vec<String>,
    /// Things compared less strictly (a table without a primary key).
    pub warnings: Vec<String>,
}

impl Comparison {
    pub fn equal(&self) -> bool {
        self.differences.is_empty() && self.schema.is_empty()
    }
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.source_rows).sum()
    }
}

/// A sequence value copied to the destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SequenceValue {
    pub sequence: String,
    pub value: i64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn replication_names_are_plain_identifiers() {
        assert_eq!(super::replication_name("Sync-DB 1"), "cutover_sync_db_1");
        assert_eq!(super::replication_name(&"x".repeat(100)).len(), 63);
        assert_eq!(super::fallback_name("Sync-DB"), "cutover_sync_db_back");
        assert_eq!(super::fallback_name(&"x".repeat(100)).len(), 63);
    }
}
