//! Comparing both sides of a MariaDB replication (the walk is
//! [`crate::chunks`]): each side in one consistent snapshot, times in
//! UTC; a row's hash is the CRC32 of its columns' text (with a NULL
//! marker per column, as pt-table-checksum does), and a chunk's checksum
//! its row count and the sum of its rows' hashes, computed on the server. A table
//! without a primary key is compared whole, with a warning. Table
//! definitions and auto-increment counters are compared too.

use super::copy::{after, key_order, up_to};
use super::schema::{self, Table};
use super::{My, ident};
use crate::chunks::{self, Chunked, Key, Sum};
use crate::{Comparison, DbError, Server};
use tokio::sync::Mutex;

/// Compares `source` and `destination` on a snapshot of each, in chunks of
/// `chunk_rows` rows.
pub async fn compare(
    source: &Server,
    destination: &Server,
    chunk_rows: u64,
) -> Result<Comparison, DbError> {
    let chunk_rows = chunk_rows.max(1);
    let (mut src, mut dst) = tokio::try_join!(My::connect(source), My::connect(destination))?;
    for sql in [
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    ] {
        tokio::try_join!(
            src.run("taking a snapshot", sql),
            dst.run("taking a snapshot", sql)
        )?;
    }
    let (source_tables, destination_tables) =
        tokio::try_join!(schema::read(&mut src), schema::read(&mut dst))?;
    let mut comparison = Comparison {
        schema: schema::differences(&source_tables, &destination_tables),
        ..Comparison::default()
    };
    let (src, dst) = (Mutex::new(src), Mutex::new(dst));
    for table in &source_tables {
        let Some(other) = destination_tables.iter().find(|t| t.name == table.name) else {
            continue;
        };
        if other.columns != table.columns {
            // Reported as a schema difference.
            continue;
        }
        let name = format!("{}.{}", source.database, table.name);
        let chunks = Chunks {
            name: name.clone(),
            src: &src,
            dst: &dst,
            table,
        };
        let sum = if table.key.is_empty() {
            comparison.warnings.push(chunks::no_key_warning(&name));
            let (a, b) = chunks.both("a table checksum", "TRUE").await?;
            comparison
                .differences
                .extend(chunks::whole_difference(&name, &a, &b));
            crate::TableSum {
                table: name,
                source_rows: a.0,
                destination_rows: b.0,
                chunks: 1,
                key: Vec::new(),
            }
        } else {
            chunks::compare(&chunks, chunk_rows, &mut comparison.differences).await?
        };
        comparison.tables.push(sum);
    }
    let (mut src, mut dst) = (src.into_inner(), dst.into_inner());
    let _ = tokio::join!(
        src.run("ending the snapshot", "COMMIT"),
        dst.run("ending the snapshot", "COMMIT")
    );
    tokio::join!(src.close(), dst.close());
    Ok(comparison)
}

/// A row's hash: `CRC32` of its columns' text, as pt-table-checksum
/// does by default. (The row's text is the costly part: a second hash of
/// it, e.g. `CRC32C` for 64 bits, builds it twice and doubles the time;
/// the chunk's row count is compared beside the sum.)
fn row_hash(table: &Table) -> String {
    let columns: Vec<String> = table.columns.iter().map(|c| ident(c)).collect();
    let nulls: Vec<String> = columns.iter().map(|c| format!("ISNULL({c})")).collect();
    format!(
        "CRC32(CONCAT_WS('#', {}, CONCAT({})))",
        columns.join(", "),
        nulls.join(", ")
    )
}

struct Chunks<'a> {
    /// `database.table`, for reports.
    name: String,
    src: &'a Mutex<My>,
    dst: &'a Mutex<My>,
    table: &'a Table,
}

impl Chunks<'_> {
    fn condition(&self, lower: Option<&Key>, upper: Option<&Key>) -> String {
        let mut parts = Vec::new();
        if let Some(lower) = lower {
            parts.push(after(&self.table.key, lower));
        }
        if let Some(upper) = upper {
            parts.push(up_to(&self.table.key, upper));
        }
        if parts.is_empty() {
            "TRUE".into()
        } else {
            parts.join(" AND ")
        }
    }

    /// (rows, sum of the rows' hashes) matching `condition`.
    fn sum_sql(&self, condition: &str) -> String {
        format!(
            "SELECT CAST(COUNT(*) AS CHAR), CAST(COALESCE(SUM({}), 0) AS CHAR) FROM {} WHERE {condition}",
            row_hash(self.table),
            self.table.qualified()
        )
    }

    /// [`Self::sum_sql`] on both servers at once.
    async fn both(&self, what: &str, condition: &str) -> Result<(Sum, Sum), DbError> {
        let sql = self.sum_sql(condition);
        let (mut src, mut dst) = tokio::join!(self.src.lock(), self.dst.lock());
        let (a, b) = tokio::try_join!(src.rows(what, &sql), dst.rows(what, &sql))?;
        Ok((sum_of(&a), sum_of(&b)))
    }
}

impl Chunked for Chunks<'_> {
    fn table(&self) -> String {
        self.name.clone()
    }

    fn key_names(&self) -> Vec<String> {
        self.table.key.clone()
    }

    async fn bound(
        &self,
        lower: Option<&Key>,
        upper: Option<&Key>,
        n: u64,
    ) -> Result<Option<Key>, DbError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT 1 OFFSET {}",
            key_order(&self.table.key, false),
            self.table.qualified(),
            self.condition(lower, upper),
            key_order(&self.table.key, false),
            n.saturating_sub(1)
        );
        let rows = self.src.lock().await.rows("a chunk bound", &sql).await?;
        Ok(rows
            .into_iter()
            .next()
            .map(|row| row.into_iter().map(|v| v.unwrap_or_default()).collect()))
    }

    async fn sums(&self, lower: Option<&Key>, upper: Option<&Key>) -> Result<(Sum, Sum), DbError> {
        self.both("a chunk checksum", &self.condition(lower, upper))
            .await
    }

    /// The `n`th row's key (an index walk), then the sum up to it: one
    /// statement doing both materializes the chunk and numbers its rows,
    /// which on MariaDB costs more than the second walk.
    async fn source_chunk(
        &self,
        lower: Option<&Key>,
        n: u64,
    ) -> Result<(Sum, Option<Key>), DbError> {
        let upper = self.bound(lower, None, n).await?;
        let sql = self.sum_sql(&self.condition(lower, upper.as_ref()));
        let rows = self.src.lock().await.rows("a chunk checksum", &sql).await?;
        Ok((sum_of(&rows), upper))
    }

    async fn destination_sum(
        &self,
        lower: Option<&Key>,
        upper: Option<&Key>,
    ) -> Result<Sum, DbError> {
        let sql = self.sum_sql(&self.condition(lower, upper));
        let rows = self.dst.lock().await.rows("a chunk checksum", &sql).await?;
        Ok(sum_of(&rows))
    }
}

fn sum_of(rows: &[super::TextRow]) -> Sum {
    let row = rows.first();
    let get = |i: usize| row.and_then(|r| r.get(i).cloned().flatten());
    (
        get(0).and_then(|t| t.parse().ok()).unwrap_or(0),
        get(1).unwrap_or_default(),
    )
}
