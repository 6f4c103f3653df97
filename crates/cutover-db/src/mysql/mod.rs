//! MariaDB (and MySQL, for preflight): replication from a live source.
//!
//! What replication needs is checked before anything runs: the source
//! must write a row-based binary log (`log_bin`, `binlog_format = ROW`)
//! under a `server_id` of its own, and its user must be allowed to read it
//! (`REPLICATION SLAVE`, `SELECT`); the destination needs another
//! `server_id` and a user that may set up replication.
//!
//! Then ([`start`]) the source's rows are read in one consistent snapshot
//! whose binary log position is known as a GTID, written to the
//! destination in primary-key order, and the destination replicates from
//! that GTID on (a named replica connection, `CHANGE MASTER 'NAME'`).
//! [`lag`] compares the GTIDs the source has written with those the
//! destination has applied; [`compare`] checksums both sides in chunks.
//! Every step is idempotent and named after the `db.sync` step: a resumed
//! run finds its replica connection and continues the same copy.

mod checksum;
mod copy;
mod fallback;
mod replica;
mod schema;

pub use checksum::compare;
pub use copy::{Copied, Started, start};
pub use fallback::start_back;
pub use replica::{copy_auto_increments, is_replicating, lag, stop};

use crate::{DbError, Problem, Server};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Value};
use std::time::Duration;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// MySQL's "access denied" error codes (wrong password, unknown user).
const ACCESS_DENIED: [u16; 2] = [1045, 1698];

/// A row of text values (`None` for NULL).
pub(crate) type TextRow = Vec<Option<String>>;

/// A row of text values with their columns' names.
pub(crate) type NamedRow = Vec<(String, Option<String>)>;

/// One open connection and the server's label for errors.
pub(crate) struct My {
    conn: Conn,
    label: String,
}

impl My {
    pub(crate) async fn connect(server: &Server) -> Result<My, DbError> {
        let options = OptsBuilder::default()
            .ip_or_hostname(server.host.clone())
            .tcp_port(server.port)
            .user(Some(server.user.clone()))
            .pass(server.password.as_ref().map(|p| p.expose().to_owned()))
            .db_name(Some(server.database.clone()))
            .prefer_socket(false);
        let label = server.label();
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(options)).await {
            Err(_) => Err(DbError::Connect {
                server: label,
                reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            }),
            Ok(Ok(conn)) => Ok(My { conn, label }),
            Ok(Err(mysql_async::Error::Server(err))) if ACCESS_DENIED.contains(&err.code) => {
                Err(DbError::Login {
                    server: label,
                    user: server.user.clone(),
                    reason: err.message,
                })
            }
            Ok(Err(err)) => Err(DbError::Connect {
                server: label,
                reason: err.to_string(),
            }),
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn error(&self, what: &str, err: impl std::fmt::Display) -> DbError {
        DbError::Query {
            server: self.label.clone(),
            what: what.to_owned(),
            reason: err.to_string(),
        }
    }

    /// Runs statements that return no rows.
    pub(crate) async fn run(&mut self, what: &str, sql: &str) -> Result<(), DbError> {
        self.run_bytes(what, sql.as_bytes()).await
    }

    /// Runs one statement given as bytes (row data need not be UTF-8).
    pub(crate) async fn run_bytes(&mut self, what: &str, sql: &[u8]) -> Result<(), DbError> {
        match self.conn.query_drop(sql).await {
            Ok(()) => Ok(()),
            Err(err) => Err(self.error(what, err)),
        }
    }

    /// Every row of `sql`, as text.
    pub(crate) async fn rows(&mut self, what: &str, sql: &str) -> Result<Vec<TextRow>, DbError> {
        Ok(self
            .named_rows(what, sql)
            .await?
            .into_iter()
            .map(|row| row.into_iter().map(|(_, v)| v).collect())
            .collect())
    }

    /// Every row of `sql`, each value with its column's name.
    pub(crate) async fn named_rows(
        &mut self,
        what: &str,
        sql: &str,
    ) -> Result<Vec<NamedRow>, DbError> {
        let rows: Vec<mysql_async::Row> = match self.conn.query(sql).await {
            Ok(rows) => rows,
            Err(err) => return Err(self.error(what, err)),
        };
        Ok(rows
            .into_iter()
            .map(|row| {
                let names: Vec<String> = row
                    .columns_ref()
                    .iter()
                    .map(|c| c.name_str().into_owned())
                    .collect();
                names
                    .into_iter()
                    .zip(row.unwrap_raw().into_iter().map(|v| v.and_then(text)))
                    .collect()
            })
            .collect())
    }

    /// The first value of the first row.
    pub(crate) async fn value(&mut self, what: &str, sql: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .rows(what, sql)
            .await?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten()))
    }

    pub(crate) fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Leaves politely (errors ignored: the work is done).
    pub(crate) async fn close(self) {
        let _ = self.conn.disconnect().await;
    }
}

/// A text-protocol value as text.
pub(crate) fn text(value: Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        other => Some(other.as_sql(false).trim_matches('\'').to_owned()),
    }
}

/// The value of column `name` in a named row.
pub(crate) fn field<'a>(row: &'a NamedRow, name: &str) -> Option<&'a str> {
    row.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_deref())
}

/// `` `name` `` with inner backticks doubled.
pub(crate) fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `'text'`, escaped for the default SQL mode.
pub(crate) fn literal(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    push_literal(&mut out, text.as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends `bytes` as a quoted string literal (quote, backslash and NUL
/// escaped, as the default SQL mode reads them).
pub(crate) fn push_literal(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'\'');
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| matches!(b, b'\'' | b'\\' | 0)) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(match rest[at] {
            b'\'' => b"\\'",
            b'\\' => b"\\\\",
            _ => b"\\0",
        });
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'\'');
}

/// The current user's global privileges.
async fn privileges(my: &mut My) -> Result<Vec<String>, DbError> {
    Ok(my
        .rows(
            "the user's privileges",
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = \
             CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')",
        )
        .await?
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect())
}

/// Everything both servers need for replication: all problems, each
/// naming its setting.
pub async fn preflight(source: &Server, destination: &Server) -> Result<(), DbError> {
    let (src, dst) = tokio::join!(My::connect(source), My::connect(destination));
    let (mut src, mut dst) = match (src, dst) {
        (Ok(src), Ok(dst)) => (src, dst),
        (src, dst) => {
            let mut problems = Vec::new();
            for side in [src.err(), dst.err()].into_iter().flatten() {
                problems.push(crate::login_problem(side)?);
            }
            return Err(DbError::Preflight(problems));
        }
    };
    let (source_label, destination_label) = (source.label(), destination.label());
    let mut problems = Vec::new();
    let mut problem = |server: &str, setting: &str, found: String, fix: String| {
        problems.push(Problem {
            server: server.to_owned(),
            setting: setting.to_owned(),
            found,
            fix,
        })
    };
    let settings = src
        .rows(
            "the binary log settings",
            "SELECT CAST(@@log_bin AS CHAR), @@binlog_format, CAST(@@server_id AS CHAR)",
        )
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let get = |v: &[Option<String>], i: usize| v.get(i).cloned().flatten().unwrap_or_default();
    let log_bin = get(&settings, 0);
    if log_bin != "1" && !log_bin.eq_ignore_ascii_case("ON") {
        problem(&source_label, "log_bin", format!("off (`{log_bin}`)"), "add `log_bin` to the [mariadbd] (or [mysqld]) section of the server's configuration and restart it".into());
    }
    if !get(&settings, 1).eq_ignore_ascii_case("ROW") {
        problem(&source_label, "binlog_format", format!("`{}`", get(&settings, 1)), "set `binlog_format = ROW` in the server's configuration and restart it (or `SET GLOBAL binlog_format = ROW`)".into());
    }
    let source_id = get(&settings, 2);
    if source_id == "0" {
        problem(
            &source_label,
            "server_id",
            "0".into(),
            "set a `server_id` other than 0 in the server's configuration and restart it".into(),
        );
    }
    let granted = privileges(&mut src).await?;
    for needed in ["REPLICATION SLAVE", "SELECT"] {
        if !granted.iter().any(|g| g == needed) {
            problem(
                &source_label,
                &format!("the {needed} privilege"),
                format!("missing for user `{}`", source.user),
                format!("run `GRANT {needed} ON *.* TO ...` for the user as an administrator"),
            );
        }
    }
    let destination_id = dst
        .value("the server id", "SELECT CAST(@@server_id AS CHAR)")
        .await?
        .unwrap_or_default();
    if destination_id == source_id || destination_id == "0" {
        problem(
            &destination_label,
            "server_id",
            format!("{destination_id}, the same as the source's"),
            format!(
                "set a `server_id` other than 0 and {source_id} in the server's configuration and restart it"
            ),
        );
    }
    let granted = privileges(&mut dst).await?;
    if !granted
        .iter()
        .any(|g| g == "SUPER" || g == "REPLICATION SLAVE ADMIN")
    {
        problem(&destination_label, "the REPLICATION SLAVE ADMIN privilege", format!("missing for user `{}`", destination.user), "run `GRANT REPLICATION SLAVE ADMIN ON *.* TO ...` (SUPER on MySQL) for the user as an administrator".into());
    }
    tokio::join!(src.close(), dst.close());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DbError::Preflight(problems))
    }
}
