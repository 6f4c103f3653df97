//! Comparing both sides like pt-table-checksum: each side in one
//! repeatable-read snapshot; per table, chunks of rows in primary-key
//! order, each chunk's row count and the sum of its rows' 64-bit hashes
//! computed on both servers (only the sums cross the network, so memory
//! stays bounded).
//! The chunk bounds come from the source; a chunk that differs is halved
//! until the range holds one source row, so a difference is reported as a
//! table and a small key range. A table without a primary key is compared
//! whole, order-independently, with a warning.

use super::schema::{self, Table};
use super::{Pg, ident, literal, text};
use crate::{Comparison, DbError, Difference, Server, TableSum};

/// Halvings of a differing chunk before its range is reported.
const MAX_NARROWING: usize = 40;

/// Differences reported per table (the first ones, in key order).
const MAX_DIFFERENCES: usize = 10;

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
            comparison.warnings.push(format!(
                "table {} has no primary key: compared as a whole (row count and an order-independent checksum), a difference cannot be narrowed to rows",
                table.display()
            ));
            let (a, b) = chunks.whole().await?;
            if a != b {
                comparison.differences.push(Difference {
                    table: table.display(),
                    range: "(the whole table)".into(),
                    source_rows: a.0,
                    destination_rows: b.0,
                });
            }
            TableSum {
                table: table.display(),
                source_rows: a.0,
                destination_rows: b.0,
                chunks: 1,
                key: Vec::new(),
            }
        } else {
            chunks
                .compare(chunk_rows, &mut comparison.differences)
                .await?
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

/// A key value as text, one per key column.
type Key = Vec<String>;

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

    /// The key of the `n`th source row after `lower` (1-based), if any.
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

    /// (rows, checksum) of a key range on both sides.
    async fn sums(
        &self,
        lower: Option<&Key>,
        upper: Option<&Key>,
    ) -> Result<((u64, String), (u64, String)), DbError> {
        self.both("a chunk checksum", &self.condition(lower, upper))
            .await
    }

    /// Whole-table (rows, checksum) on both sides.
    async fn whole(&self) -> Result<((u64, String), (u64, String)), DbError> {
        self.both("a table checksum", "true").await
    }

    /// (rows, sum of the rows' 64-bit hashes) of the rows matching
    /// `condition`, on both servers at once. A sum needs no sort, and a
    /// chunk's rows are fixed by their key, which every row's hash covers.
    async fn both(
        &self,
        what: &str,
        condition: &str,
    ) -> Result<((u64, String), (u64, String)), DbError> {
        let sql = format!(
            "SELECT count(*)::text, coalesce(sum({}::numeric), 0)::text FROM {} cutover_row WHERE {condition}",
            self.hash.expression(),
            self.table.qualified()
        );
        let (a, b) = tokio::try_join!(
            self.src.rows(what, &sql, &[]),
            self.dst.rows(what, &sql, &[])
        )?;
        Ok((sum_of(&a), sum_of(&b)))
    }

    async fn compare(
        &self,
        chunk_rows: u64,
        differences: &mut Vec<Difference>,
    ) -> Result<TableSum, DbError> {
        let mut sum = TableSum {
            table: self.table.display(),
            source_rows: 0,
            destination_rows: 0,
            chunks: 0,
            key: self.key.iter().map(|(name, _)| name.clone()).collect(),
        };
        let mut found = 0;
        let mut lower: Option<Key> = None;
        loop {
            let upper = self.bound(lower.as_ref(), None, chunk_rows).await?;
            let (a, b) = self.sums(lower.as_ref(), upper.as_ref()).await?;
            sum.chunks += 1;
            sum.source_rows += a.0;
            sum.destination_rows += b.0;
            if a != b && found < MAX_DIFFERENCES {
                found += 1;
                differences.push(self.narrow(lower.clone(), upper.clone(), a.0, b.0).await?);
            }
            match upper {
                Some(upper) => lower = Some(upper),
                None => break,
            }
        }
        Ok(sum)
    }

    /// Halves a differing range (by source rows) while one half differs.
    async fn narrow(
        &self,
        mut lower: Option<Key>,
        mut upper: Option<Key>,
        mut source_rows: u64,
        mut destination_rows: u64,
    ) -> Result<Difference, DbError> {
        for _ in 0..MAX_NARROWING {
            if source_rows <= 1 {
                break;
            }
            let Some(middle) = self
                .bound(lower.as_ref(), upper.as_ref(), source_rows / 2)
                .await?
            else {
                break;
            };
            let (a, b) = self.sums(lower.as_ref(), Some(&middle)).await?;
            if a != b {
                upper = Some(middle);
                (source_rows, destination_rows) = (a.0, b.0);
            } else {
                let (a, b) = self.sums(Some(&middle), upper.as_ref()).await?;
                lower = Some(middle);
                (source_rows, destination_rows) = (a.0, b.0);
            }
        }
        let show = |key: &Option<Key>, end: &str| match key {
            None => end.to_owned(),
            Some(values) if values.len() == 1 => values[0].clone(),
            Some(values) => format!("({})", values.join(", ")),
        };
        Ok(Difference {
            table: self.table.display(),
            range: format!(
                "({}, {}] of ({})",
                show(&lower, "-inf"),
                show(&upper, "+inf"),
                self.key
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            source_rows,
            destination_rows,
        })
    }
}

fn sum_of(rows: &[tokio_postgres::Row]) -> (u64, String) {
    let row = rows.first();
    (
        row.and_then(|r| text(r, 0))
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
        row.and_then(|r| text(r, 1)).unwrap_or_default(),
    )
}
