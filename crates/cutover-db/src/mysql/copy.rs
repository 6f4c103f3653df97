//! The initial copy and the replica connection. The source's rows are
//! read in one `START TRANSACTION WITH CONSISTENT SNAPSHOT`, whose binary
//! log position the server reports (`binlog_snapshot_file/position`, as a
//! GTID by `BINLOG_GTID_POS`), so the copy is exactly the source at that
//! GTID; the destination's replica connection starts from it once every
//! row is written.
//!
//! Rows are written in primary-key order, one multi-row `INSERT` at a
//! time (each commits on its own), while the next is being read. A copy
//! cut short resumes after the highest key the destination holds, in a
//! new snapshot: those later rows may already hold changes made after the
//! GTID, so the resumed replica applies the stream idempotently (a row it
//! would insert is replaced, one it would change or delete and cannot
//! find is left alone), which converges because the row-based log carries
//! whole rows. A table without a primary key is copied again whole. The
//! resumed copy writes with `REPLACE`, since the killed run's last
//! statement may still be committing on the server.

use super::{My, ident, literal, push_literal, replica, schema};
use crate::{DbError, Server};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Value};

/// Bytes of row data per `INSERT` (less if the destination's
/// `max_allowed_packet` is small).
const STATEMENT_BYTES: usize = 4 << 20;

/// The character set number of binary strings (and of numbers and dates
/// in result metadata).
const BINARY_CHARSET: u16 = 63;

/// What [`start`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Started {
    /// Tables created on the destination (0 when the schema was there).
    pub tables_created: usize,
    /// The tables replicated.
    pub tables: usize,
    /// The replica connection was made now (false: it was there).
    pub replica_created: bool,
    /// The copy was cut short before and was resumed now.
    pub copy_resumed: bool,
    /// Rows and bytes of `INSERT`s written now.
    pub rows_copied: u64,
    pub bytes_copied: u64,
    /// The GTID replication starts from (empty when it was running).
    pub gtid: String,
}

/// Progress of the copy: rows written so far (this run) of the source's
/// estimate, and the bytes of statements written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub rows: u64,
    pub rows_total: u64,
    pub bytes: u64,
}

/// Sets replication `name` up and copies the rows, or continues a copy cut
/// short, or finds it running. `source_from_destination` is how the
/// destination's server reaches the source (usually `source` itself);
/// `progress` hears of every statement written.
pub async fn start(
    source: &Server,
    source_from_destination: &Server,
    destination: &Server,
    name: &str,
    progress: &(dyn Fn(Copied) + Send + Sync),
) -> Result<Started, DbError> {
    let mut dst = My::connect(destination).await?;
    let mut started = Started::default();
    let existing = replica::status(&mut dst, name).await?;
    if existing.as_ref().is_some_and(replica::has_started) {
        let mut src = My::connect(source).await?;
        started.tables = schema::read(&mut src).await?.len();
        tokio::join!(src.close(), dst.close());
        return Ok(started);
    }
    started.copy_resumed = existing.is_some();

    let mut src = My::connect(source).await?;
    mariadb_only(&mut src).await?;
    for sql in [
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    ] {
        src.run("taking a snapshot", sql).await?;
    }
    let gtid = snapshot_gtid(&mut src).await?;
    let tables = schema::read(&mut src).await?;
    started.tables = tables.len();
    if tables.is_empty() {
        return Err(DbError::Unsupported {
            server: src.label().to_owned(),
            what: "the database has no tables to replicate".into(),
        });
    }

    // The copy's own writes stay out of the destination's binary log where
    // the user may say so (it is not replicated on).
    let _ = dst
        .run("not logging the copy", "SET SESSION sql_log_bin = 0")
        .await;
    dst.run(
        "preparing the copy",
        "SET SESSION foreign_key_checks = 0, unique_checks = 0, time_zone = '+00:00', sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
    )
    .await?;
    if !started.copy_resumed {
        started.tables_created = create_tables(&mut dst, &tables).await?;
        set_up_replica(&mut dst, source_from_destination, destination, name, &gtid).await?;
        started.replica_created = true;
        started.gtid = gtid;
    } else {
        started.gtid = dst
            .value("the replica's position", "SELECT @@GLOBAL.gtid_slave_pos")
            .await?
            .unwrap_or_default();
    }

    let limit = statement_limit(&mut dst).await?;
    let mut copied = Copied {
        rows_total: tables.iter().map(|t| t.rows_estimate).sum(),
        ..Copied::default()
    };
    for table in &tables {
        copy_table(
            &mut src,
            &mut dst,
            table,
            started.copy_resumed,
            limit,
            &mut copied,
            progress,
        )
        .await?;
    }
    started.rows_copied = copied.rows;
    started.bytes_copied = copied.bytes;
    let _ = src.run("ending the snapshot", "COMMIT").await;
    src.close().await;

    if started.copy_resumed {
        dst.run(
            "applying the stream idempotently",
            "SET GLOBAL slave_exec_mode = 'IDEMPOTENT'",
        )
        .await?;
    }
    dst.run(
        "starting the replica",
        &format!("START SLAVE {}", literal(name)),
    )
    .await?;
    dst.close().await;
    Ok(started)
}

/// MySQL's GTIDs are not MariaDB's; only MariaDB's are followed.
async fn mariadb_only(src: &mut My) -> Result<(), DbError> {
    let version = src
        .value("the server version", "SELECT VERSION()")
        .await?
        .unwrap_or_default();
    if version.contains("MariaDB") {
        Ok(())
    } else {
        Err(DbError::Unsupported {
            server: src.label().to_owned(),
            what: format!(
                "replication from MySQL {version} is not built (its GTIDs are not MariaDB's); the source must be MariaDB"
            ),
        })
    }
}

/// The GTID of the snapshot just taken.
async fn snapshot_gtid(src: &mut My) -> Result<String, DbError> {
    let rows = src
        .rows(
            "the snapshot's position",
            "SHOW STATUS LIKE 'binlog_snapshot_%'",
        )
        .await?;
    let value = |name: &str| {
        rows.iter()
            .find(|r| {
                r.first()
                    .cloned()
                    .flatten()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .and_then(|r| r.get(1).cloned().flatten())
            .unwrap_or_default()
    };
    let (file, position) = (
        value("Binlog_snapshot_file"),
        value("Binlog_snapshot_position"),
    );
    if file.is_empty() || position.parse::<u64>().is_err() {
        return Err(DbError::Unsupported {
            server: src.label().to_owned(),
            what: "the server reports no binary log position for a snapshot (is log_bin on?)"
                .into(),
        });
    }
    Ok(src
        .value(
            "the snapshot's GTID",
            &format!("SELECT BINLOG_GTID_POS({}, {position})", literal(&file)),
        )
        .await?
        .unwrap_or_default())
}

/// Creates the tables the destination lacks; one it has must be empty.
async fn create_tables(dst: &mut My, tables: &[schema::Table]) -> Result<usize, DbError> {
    let present = schema::read(dst).await?;
    let mut created = 0;
    for table in tables {
        if present.iter().any(|t| t.name == table.name) {
            let any = dst
                .value(
                    "whether a table is empty",
                    &format!("SELECT 1 FROM {} LIMIT 1", table.qualified()),
                )
                .await?;
            if any.is_some() {
                return Err(DbError::Unsupported {
                    server: dst.label().to_owned(),
                    what: format!(
                        "table {} already holds rows; the initial copy needs it empty or missing",
                        table.name
                    ),
                });
            }
            continue;
        }
        dst.run("creating a table", &table.create).await?;
        created += 1;
    }
    Ok(created)
}

/// The replica connection `name`, from `gtid`, following the source's
/// database only (renamed to the destination's when the names differ).
pub(super) async fn set_up_replica(
    dst: &mut My,
    source: &Server,
    destination: &Server,
    name: &str,
    gtid: &str,
) -> Result<(), DbError> {
    dst.run(
        "setting the replica's start",
        &format!("SET GLOBAL gtid_slave_pos = {}", literal(gtid)),
    )
    .await?;
    let mut change = format!(
        "CHANGE MASTER {} TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, MASTER_USE_GTID = slave_pos",
        literal(name),
        literal(&source.host),
        source.port,
        literal(&source.user),
    );
    if let Some(password) = &source.password {
        change.push_str(&format!(
            ", MASTER_PASSWORD = {}",
            literal(password.expose())
        ));
    }
    dst.run("setting up the replica", &change).await?;
    dst.run(
        "following one database",
        &format!(
            "SET GLOBAL {}.replicate_do_db = {}",
            ident(name),
            literal(&source.database)
        ),
    )
    .await?;
    if source.database != destination.database {
        dst.run(
            "renaming the database",
            &format!(
                "SET GLOBAL {}.replicate_rewrite_db = {}",
                ident(name),
                literal(&format!("{}->{}", source.database, destination.database))
            ),
        )
        .await?;
    }
    Ok(())
}

async fn statement_limit(dst: &mut My) -> Result<usize, DbError> {
    let packet: usize = dst
        .value("max_allowed_packet", "SELECT @@max_allowed_packet")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20);
    Ok(STATEMENT_BYTES.min(packet / 2).max(16 << 10))
}

/// How a column's values are written in an `INSERT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// As the server printed it (numbers).
    Bare,
    /// `X'..'` (binary strings, bits).
    Hex,
    /// A quoted string.
    Quoted,
}

fn form(column: &Column) -> Form {
    use ColumnType::*;
    match column.column_type() {
        MYSQL_TYPE_TINY
        | MYSQL_TYPE_SHORT
        | MYSQL_TYPE_LONG
        | MYSQL_TYPE_INT24
        | MYSQL_TYPE_LONGLONG
        | MYSQL_TYPE_FLOAT
        | MYSQL_TYPE_DOUBLE
        | MYSQL_TYPE_DECIMAL
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_YEAR => Form::Bare,
        MYSQL_TYPE_BIT => Form::Hex,
        MYSQL_TYPE_DATE
        | MYSQL_TYPE_NEWDATE
        | MYSQL_TYPE_TIME
        | MYSQL_TYPE_TIME2
        | MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_TIMESTAMP2 => Form::Quoted,
        _ if column.character_set() == BINARY_CHARSET => Form::Hex,
        _ => Form::Quoted,
    }
}

fn push_value(out: &mut Vec<u8>, value: Option<Value>, form: Form) {
    match value {
        None | Some(Value::NULL) => out.extend_from_slice(b"NULL"),
        Some(Value::Bytes(bytes)) => match form {
            Form::Bare => out.extend_from_slice(&bytes),
            Form::Hex => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"X'");
                for b in bytes {
                    out.push(DIGITS[usize::from(b >> 4)]);
                    out.push(DIGITS[usize::from(b & 15)]);
                }
                out.push(b'\'');
            }
            Form::Quoted => push_literal(out, &bytes),
        },
        Some(other) => out.extend_from_slice(other.as_sql(false).as_bytes()),
    }
}

/// `(k1, k2) > (v1, v2)` written out so the server uses the key's index.
pub(crate) fn after(key: &[String], values: &[String]) -> String {
    compare_keys(key, values, ">")
}

/// `(k1, k2) <= (v1, v2)`, written out.
pub(crate) fn up_to(key: &[String], values: &[String]) -> String {
    compare_keys(key, values, "<=")
}

fn compare_keys(key: &[String], values: &[String], op: &str) -> String {
    let strict = &op[..1];
    let mut alternatives = Vec::new();
    for i in 0..key.len() {
        let mut terms: Vec<String> = (0..i)
            .map(|j| format!("{} = {}", ident(&key[j]), literal(&values[j])))
            .collect();
        let last = if i + 1 == key.len() { op } else { strict };
        terms.push(format!("{} {last} {}", ident(&key[i]), literal(&values[i])));
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    format!("({})", alternatives.join(" OR "))
}

pub(crate) fn key_order(key: &[String], descending: bool) -> String {
    key.iter()
        .map(|k| {
            if descending {
                format!("{} DESC", ident(k))
            } else {
                ident(k)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies one table's rows after those the destination holds.
async fn copy_table(
    src: &mut My,
    dst: &mut My,
    table: &schema::Table,
    resumed: bool,
    limit: usize,
    copied: &mut Copied,
    progress: &(dyn Fn(Copied) + Send + Sync),
) -> Result<(), DbError> {
    let columns = table
        .columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut select = format!("SELECT {columns} FROM {}", table.qualified());
    if table.key.is_empty() {
        if resumed {
            dst.run(
                "emptying a table without a primary key",
                &format!("DELETE FROM {}", table.qualified()),
            )
            .await?;
        }
    } else {
        let last = dst
            .rows(
                "the last row copied",
                &format!(
                    "SELECT {} FROM {} ORDER BY {} LIMIT 1",
                    key_order(&table.key, false),
                    table.qualified(),
                    key_order(&table.key, true)
                ),
            )
            .await?;
        if let Some(last) = last.into_iter().next() {
            let values: Vec<String> = last.into_iter().map(|v| v.unwrap_or_default()).collect();
            select.push_str(&format!(" WHERE {}", after(&table.key, &values)));
        }
        select.push_str(&format!(" ORDER BY {}", key_order(&table.key, false)));
    }
    // A resumed copy writes with REPLACE: the statement the killed run had
    // sent may still be running on the server and commit rows after the
    // highest key read above; REPLACE waits for its locks and overwrites
    // them with this snapshot's rows.
    let verb = if resumed { "REPLACE" } else { "INSERT" };
    let prefix = format!("{verb} INTO {} ({columns}) VALUES ", table.qualified()).into_bytes();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(Vec<u8>, u64)>(2);
    let label = src.label().to_owned();
    let read_error = |err: mysql_async::Error| DbError::Query {
        server: label.clone(),
        what: format!("reading table {}", table.name),
        reason: err.to_string(),
    };
    let reader = async {
        let mut result = src.conn().query_iter(select).await.map_err(read_error)?;
        let forms: Vec<Form> = result
            .columns()
            .map(|c| c.iter().map(form).collect())
            .unwrap_or_default();
        let mut statement = prefix.clone();
        let mut rows = 0u64;
        while let Some(row) = result.next().await.map_err(read_error)? {
            if rows > 0 {
                statement.push(b',');
            }
            statement.push(b'(');
            for (i, value) in row.unwrap_raw().into_iter().enumerate() {
                if i > 0 {
                    statement.push(b',');
                }
                push_value(
                    &mut statement,
                    value,
                    forms.get(i).copied().unwrap_or(Form::Quoted),
                );
            }
            statement.push(b')');
            rows += 1;
            if statement.len() >= limit {
                let full = std::mem::replace(&mut statement, prefix.clone());
                if sender.send((full, rows)).await.is_err() {
                    break;
                }
                rows = 0;
            }
        }
        if rows > 0 {
            let _ = sender.send((statement, rows)).await;
        }
        drop(sender);
        Ok::<(), DbError>(())
    };
    let writer = async {
        while let Some((statement, rows)) = receiver.recv().await {
            dst.run_bytes(&format!("writing rows of table {}", table.name), &statement)
                .await?;
            copied.rows += rows;
            copied.bytes += statement.len() as u64;
            progress(*copied);
        }
        Ok::<(), DbError>(())
    };
    tokio::try_join!(reader, writer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comparisons_are_written_out_per_column() {
        let key = ["a".to_string(), "b".to_string()];
        let values = ["1".to_string(), "x'y".to_string()];
        assert_eq!(
            after(&key, &values),
            "((`a` > '1') OR (`a` = '1' AND `b` > 'x\\'y'))"
        );
        assert_eq!(
            up_to(&key, &values),
            "((`a` < '1') OR (`a` = '1' AND `b` <= 'x\\'y'))"
        );
        assert_eq!(after(&key[..1], &values[..1]), "((`a` > '1'))");
    }

    #[test]
    fn values_are_written_by_their_form() {
        let mut out = Vec::new();
        push_value(&mut out, Some(Value::Bytes(b"12".to_vec())), Form::Bare);
        push_value(&mut out, Some(Value::Bytes(vec![0, 255])), Form::Hex);
        push_value(
            &mut out,
            Some(Value::Bytes(b"it's \\".to_vec())),
            Form::Quoted,
        );
        push_value(&mut out, None, Form::Quoted);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "12X'00ff''it\\'s \\\\'NULL"
        );
    }
}
