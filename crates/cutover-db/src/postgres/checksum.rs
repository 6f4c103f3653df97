//! Comparing both sides of a PostgreSQL replication (the walk is
//! [`crate::chunks`]): each side in one repeatable-read snapshot; a
//! chunk's checksum is the sum of its rows' 64-bit hashes, computed on
//! the server. A table without a primary key is compared whole,
//! order-independently, with a warning.

use super::schema::{self, Table};
use super::{Pg, ident, literal, text};
use crate::chunks::{self, Chunked, Key, Sum};
use crate::{Comparison, DbError, Server, TableSum};

/// Compares `source` and `destination` on a snapshot of each, in chunks of
/// `chunk_rows` rows.
pub async fn compare(
    source: &Server,
    destination: &Server,
    chunk_rows: u64,
) -> Result<Comparison, DbError> {
    let chunk_rows = chunk_rows.max(1);
    let (src, dst) = tokio::try_join!(Pg::connect(source), Pg::connect(destination))?;
    let snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    tokio::try_join!(
        src.execute("taking a snapshot", snapshot),
        dst.execute("taking a snapshot", snapshot)
    )?;
    let (source_schema, destination_schema) =
        tokio::try_join!(schema::read(&src), schema::read(&dst))?;
    let hash = RowHash::for_servers(&src, &dst).await?;
    let mut comparison = Comparison {
        schema: schema::differences(&source_schema, &destination_schema),
        ..Comparison::default()
    };
    for table in &source_schema.tables {
        let Some(other) = destination_schema
            .tables
            .iter()
            .find(|t| t.schema == table.schema && t.name == table.name)
        else {
            continue;
        };
        if shape(other) != shape(table) {
            // Reported as a schema difference; rows of another shape
            // cannot be compared.
            continue;
        }
        let key = primary_key(&src, table).await?;
        let hash = match hash {
            RowHash::Record if !record_hash_works(&src, table).await? => RowHash::Text,
            other => other,
        };
        let chunks = Chunks {
            src: &src,
            dst: &dst,
            table,
            key: &key,
            hash,
        };
        let sum = if key.is_empty() {
            comparison
                .warnings
                .push(chunks::no_key_warning(&table.display()));
            let (a, b) = chunks.whole().await?;
            comparison
                .differences
                .extend(chunks::whole_difference(&table.display(), &a, &b));
            TableSum {
                table: table.display(),
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
    let _ = tokio::join!(
        src.execute("ending the snapshot", "COMMIT"),
        dst.execute("ending the snapshot", "COMMIT")
    );
    Ok(comparison)
}

fn shape(table: &Table) -> Vec<(&str, &str)> {
    table
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.as_str()))
        .collect()
}

/// The primary key's columns and their types, in key order.
async fn primary_key(pg: &Pg, table: &Table) -> Result<Vec<(String, String)>, DbError> {
    let rows = pg
        .rows(
            "the primary key",
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_index x \
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey) \
             WHERE x.indrelid = $1::text::regclass AND x.indisprimary \
             ORDER BY array_position(x.indkey::int2[], a.attnum)",
            &[&table.qualified()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                text(r, 0).unwrap_or_default(),
                text(r, 1).unwrap_or_default(),
            )
        })
        .collect())
}

/// How a row is hashed on the servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowHash {
    /// `hash_record_extended` (PostgreSQL 14+): each column by its type's
    /// hash function, no text made; about ten times faster than md5 of the
    /// row's text.
    Record,
    /// `hashtextextended` of the row's text, where a column's type has no
    /// hash function or a server is older.
    Text,
}

impl RowHash {
    /// `Record` when both servers have it.
    async fn for_servers(src: &Pg, dst: &Pg) -> Result<RowHash, DbError> {
        let sql = "SELECT (current_setting('server_version_num')::int >= 140000)::text";
        let (a, b) = tokio::try_join!(
            src.value("the server version", sql),
            dst.value("the server version", sql)
        )?;
        Ok(
            if a.as_deref() == Some("true") && b.as_deref() == Some("true") {
                RowHash::Record
            } else {
                RowHash::Text
            },
        )
    }

    fn expression(self) -> &'static str {
        match self {
            RowHash::Record => "hash_record_extended(cutover_row, 0)",
            RowHash::Text => "hashtextextended(cutover_row::text, 0)",
        }
    }
}

/// Whether every column of `table` has a hash function: tried on one row
/// of the source in a savepoint, so a refusal leaves the snapshot usable.
async fn record_hash_works(src: &Pg, table: &Table) -> Result<bool, DbError> {
    src.execute("a savepoint", "SAVEPOINT cutover_hash").await?;
    let tried = src
        .rows(
            "trying the record hash",
            &format!(
                "SELECT {}::text FROM {} cutover_row LIMIT 1",
                RowHash::Record.expression(),
                table.qualified()
            ),
            &[],
        )
        .await;
    let end = if tried.is_ok() {
        "RELEASE SAVEPOINT cutover_hash"
    } else {
        "ROLLBACK TO SAVEPOINT cutover_hash"
    };
    src.execute("a savepoint", end).await?;
    Ok(tried.is_ok())
}

struct Chunks<'a> {
    src: &'a Pg,
    dst: &'a Pg,
    table: &'a Table,
    key: &'a [(String, String)],
    hash: RowHash,
}

impl Chunks<'_> {
    fn columns(&self) -> String {
        self.key
            .iter()
            .map(|(name, _)| ident(name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `(v1::type1, v2::type2)`
    fn value(&self, key: &Key) -> String {
        let values: Vec<String> = self
            .key
            .iter()
            .zip(key)
            .map(|((_, data_type), v)| format!("{}::{data_type}", literal(v)))
            .collect();
        format!("({})", values.join(", "))
    }

    fn condition(&self, lower: Option<&Key>, upper: Option<&Key>) -> String {
        let columns = format!("({})", self.columns());
        let mut parts = Vec::new();
        if let Some(lower) = lower {
            parts.push(format!("{columns} > {}", self.value(lower)));
        }
        if let Some(upper) = upper {
            parts.push(format!("{columns} <= {}", self.value(upper)));
        }
        if parts.is_empty() {
            "true".into()
        } else {
            parts.join(" AND ")
        }
    }

    /// Whole-table (rows, checksum) on both sides.
    async fn whole(&self) -> Result<(Sum, Sum), DbError> {
        self.both("a table checksum", "true").await
    }

    /// (rows, sum of the rows' 64-bit hashes) of the rows matching
    /// `condition`. A sum needs no sort, and a chunk's rows are fixed by
    /// their key, which every row's hash covers.
    fn sum_sql(&self, condition: &str) -> String {
        format!(
            "SELECT count(*)::text, coalesce(sum({}::numeric), 0)::text FROM {} cutover_row WHERE {condition}",
            self.hash.expression(),
            self.table.qualified()
        )
    }

    /// [`Self::sum_sql`] on both servers at once.
    async fn both(&self, what: &str, condition: &str) -> Result<(Sum, Sum), DbError> {
        let sql = self.sum_sql(condition);
        let (a, b) = tokio::try_join!(
            self.src.rows(what, &sql, &[]),
            self.dst.rows(what, &sql, &[])
        )?;
        Ok((sum_of(&a), sum_of(&b)))
    }
}

impl Chunked for Chunks<'_> {
    fn table(&self) -> String {
        self.table.display()
    }

    fn key_names(&self) -> Vec<String> {
        self.key.iter().map(|(name, _)| name.clone()).collect()
    }

    async fn bound(
        &self,
        lower: Option<&Key>,
        upper: Option<&Key>,
        n: u64,
    ) -> Result<Option<Key>, DbError> {
        let select: Vec<String> = self
            .key
            .iter()
            .enumerate()
            // Aliased: `ORDER BY "id"` would otherwise sort by the text.
            .map(|(i, (name, _))| format!("{}::text AS cutover_key{i}", ident(name)))
            .collect();
        let rows = self
            .src
            .rows(
                "a chunk bound",
                &format!(
                    "SELECT {} FROM {} WHERE {} ORDER BY {} OFFSET {} LIMIT 1",
                    select.join(", "),
                    self.table.qualified(),
                    self.condition(lower, upper),
                    self.columns(),
                    n.saturating_sub(1)
                ),
                &[],
            )
            .await?;
        Ok(rows.first().map(|row| {
            (0..self.key.len())
                .map(|i| text(row, i).unwrap_or_default())
                .collect()
        }))
    }

    async fn sums(&self, lower: Option<&Key>, upper: Option<&Key>) -> Result<(Sum, Sum), DbError> {
        self.both("a chunk checksum", &self.condition(lower, upper))
            .await
    }

    /// The first `n` rows after `lower` in key order, hashed as they are
    /// read; the `n`th's key picked by its number among them.
    async fn source_chunk(
        &self,
        lower: Option<&Key>,
        n: u64,
    ) -> Result<(Sum, Option<Key>), DbError> {
        let n = n.max(1);
        let keys = self.columns();
        let last: Vec<String> = self
            .key
            .iter()
            .map(|(name, _)| {
                format!(
                    "max(CASE WHEN cutover_n = {n} THEN {}::text END)",
                    ident(name)
                )
            })
            .collect();
        // The rows are picked first and hashed after, so no plan hashes
        // more than `n` of them; `cutover_row` is then the picked row.
        let sql = format!(
            "SELECT count(*)::text, coalesce(sum(cutover_hash::numeric), 0)::text, {} FROM \
             (SELECT {keys}, {} AS cutover_hash, row_number() OVER (ORDER BY {keys}) AS cutover_n FROM \
             (SELECT {keys}, cutover_row FROM {} cutover_row WHERE {} ORDER BY {keys} LIMIT {n}) cutover_chunk) cutover_numbered",
            last.join(", "),
            self.hash.expression(),
            self.table.qualified(),
            self.condition(lower, None),
        );
        let rows = self.src.rows("a chunk checksum", &sql, &[]).await?;
        let sum = sum_of(&rows);
        let upper = (sum.0 == n)
            .then(|| {
                rows.first().map(|row| {
                    (0..self.key.len())
                        .map(|i| text(row, 2 + i).unwrap_or_default())
                        .collect()
                })
            })
            .flatten();
        Ok((sum, upper))
    }

    async fn destination_sum(
        &self,
        lower: Option<&Key>,
        upper: Option<&Key>,
    ) -> Result<Sum, DbError> {
        let sql = self.sum_sql(&self.condition(lower, upper));
        Ok(sum_of(&self.dst.rows("a chunk checksum", &sql, &[]).await?))
    }
}

fn sum_of(rows: &[tokio_postgres::Row]) -> Sum {
    let row = rows.first();
    (
        row.and_then(|r| text(r, 0))
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
        row.and_then(|r| text(r, 1)).unwrap_or_default(),
    )
}
