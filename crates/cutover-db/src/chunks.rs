//! The chunked comparison both engines share, like pt-table-checksum: a
//! table is walked in primary-key order in chunks whose bounds come from
//! the source; each chunk's row count and checksum are computed on both
//! servers (only the sums cross the network, so memory stays bounded). A
//! chunk that differs is halved until its range holds one source row, so
//! a difference is reported as a table and a small key range. The engines
//! supply the SQL ([`Chunked`]).
//!
//! The walk reads each source row once: one statement sums the next
//! chunk's rows and returns its last key, and the destination sums that
//! range while the source reads the next chunk, so both servers work at
//! once.

use crate::{DbError, Difference, TableSum};

/// Halvings of a differing chunk before its range is reported.
const MAX_NARROWING: usize = 40;

/// Differences reported per table (the first ones, in key order).
const MAX_DIFFERENCES: usize = 10;

/// A key value as text, one per key column.
pub(crate) type Key = Vec<String>;

/// (rows, checksum) of a key range on one side.
pub(crate) type Sum = (u64, String);

/// One table of one engine, as the comparison walks it.
pub(crate) trait Chunked {
    /// `schema.table` for reports.
    fn table(&self) -> String;
    /// The primary key's column names, in key order.
    fn key_names(&self) -> Vec<String>;
    /// The key of the `n`th source row after `lower` (1-based) and not
    /// after `upper`, if any.
    async fn bound(
        &self,
        lower: Option<&Key>,
        upper: Option<&Key>,
        n: u64,
    ) -> Result<Option<Key>, DbError>;
    /// (rows, checksum) of the range `(lower, upper]` on the source and
    /// on the destination.
    async fn sums(&self, lower: Option<&Key>, upper: Option<&Key>) -> Result<(Sum, Sum), DbError>;
    /// The source's next chunk: (rows, checksum) of the first `n` rows
    /// after `lower`, and the key of the `n`th (None when fewer remain:
    /// the chunk then runs to the end of the table).
    async fn source_chunk(
        &self,
        lower: Option<&Key>,
        n: u64,
    ) -> Result<(Sum, Option<Key>), DbError>;
    /// (rows, checksum) of the range `(lower, upper]` on the destination.
    async fn destination_sum(
        &self,
        lower: Option<&Key>,
        upper: Option<&Key>,
    ) -> Result<Sum, DbError>;
}

/// Compares `table` in chunks of `chunk_rows` source rows; differing
/// ranges are added to `differences`.
pub(crate) async fn compare<C: Chunked>(
    table: &C,
    chunk_rows: u64,
    differences: &mut Vec<Difference>,
) -> Result<TableSum, DbError> {
    let mut sum = TableSum {
        table: table.table(),
        source_rows: 0,
        destination_rows: 0,
        chunks: 0,
        key: table.key_names(),
    };
    let mut found = 0;
    let mut lower: Option<Key> = None;
    let (mut a, mut upper) = table.source_chunk(None, chunk_rows).await?;
    loop {
        // The destination's sum of this chunk beside the source's next.
        let next = async {
            match &upper {
                Some(end) => table.source_chunk(Some(end), chunk_rows).await.map(Some),
                None => Ok(None),
            }
        };
        let (b, next) =
            tokio::try_join!(table.destination_sum(lower.as_ref(), upper.as_ref()), next)?;
        sum.chunks += 1;
        sum.source_rows += a.0;
        sum.destination_rows += b.0;
        if a != b && found < MAX_DIFFERENCES {
            found += 1;
            differences.push(narrow(table, lower.clone(), upper.clone(), a.0, b.0).await?);
        }
        match next {
            Some((next_sum, next_upper)) => {
                lower = upper;
                (a, upper) = (next_sum, next_upper);
            }
            None => break,
        }
    }
    Ok(sum)
}

/// Halves a differing range (by source rows) while one half differs.
async fn narrow<C: Chunked>(
    table: &C,
    mut lower: Option<Key>,
    mut upper: Option<Key>,
    mut source_rows: u64,
    mut destination_rows: u64,
) -> Result<Difference, DbError> {
    for _ in 0..MAX_NARROWING {
        if source_rows <= 1 {
            break;
        }
        let Some(middle) = table
            .bound(lower.as_ref(), upper.as_ref(), source_rows / 2)
            .await?
        else {
            break;
        };
        let (a, b) = table.sums(lower.as_ref(), Some(&middle)).await?;
        if a != b {
            upper = Some(middle);
            (source_rows, destination_rows) = (a.0, b.0);
        } else {
            let (a, b) = table.sums(Some(&middle), upper.as_ref()).await?;
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
        table: table.table(),
        range: format!(
            "({}, {}] of ({})",
            show(&lower, "-inf"),
            show(&upper, "+inf"),
            table.key_names().join(", ")
        ),
        source_rows,
        destination_rows,
    })
}

/// The warning for a table compared whole.
pub(crate) fn no_key_warning(table: &str) -> String {
    format!(
        "table {table} has no primary key: compared as a whole (row count and an order-independent checksum), a difference cannot be narrowed to rows"
    )
}

/// The difference of a table compared whole, if its sums differ.
pub(crate) fn whole_difference(table: &str, a: &Sum, b: &Sum) -> Option<Difference> {
    (a != b).then(|| Difference {
        table: table.to_owned(),
        range: "(the whole table)".into(),
        source_rows: a.0,
        destination_rows: b.0,
    })
}
