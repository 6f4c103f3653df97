//! The tables of one database as the server describes them: each base
//! table's `SHOW CREATE TABLE` (what the destination is created from and
//! what the comparison checks), its columns, primary key and
//! auto-increment counter.

use super::{My, ident, literal};
use crate::DbError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    pub name: String,
    /// `SHOW CREATE TABLE`, its `AUTO_INCREMENT=N` left out.
    pub create: String,
    pub columns: Vec<String>,
    /// The primary key's columns in key order (empty: none).
    pub key: Vec<String>,
    /// The next auto-increment value, for a table with such a column.
    pub auto_increment: Option<u64>,
    /// The server's estimates, for progress.
    pub rows_estimate: u64,
    pub bytes_estimate: u64,
}

impl Table {
    pub fn qualified(&self) -> String {
        ident(&self.name)
    }
}

/// The base tables of the connection's database, by name.
pub(crate) async fn read(my: &mut My) -> Result<Vec<Table>, DbError> {
    let mut tables = Vec::new();
    for row in my
        .rows(
            "the tables",
            "SELECT TABLE_NAME, CAST(AUTO_INCREMENT AS CHAR), CAST(TABLE_ROWS AS CHAR), CAST(DATA_LENGTH AS CHAR) \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        )
        .await?
    {
        let get = |i: usize| row.get(i).cloned().flatten();
        let number = |i: usize| get(i).and_then(|t| t.parse::<u64>().ok());
        tables.push(Table {
            name: get(0).unwrap_or_default(),
            create: String::new(),
            columns: Vec::new(),
            key: Vec::new(),
            auto_increment: number(1),
            rows_estimate: number(2).unwrap_or(0),
            bytes_estimate: number(3).unwrap_or(0),
        });
    }
    for table in &mut tables {
        let name = literal(&table.name);
        table.columns = column_list(
            my,
            "the columns",
            &format!(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {name} ORDER BY ORDINAL_POSITION"
            ),
        )
        .await?;
        table.key = column_list(
            my,
            "the primary key",
            &format!(
                "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {name} \
                 AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX"
            ),
        )
        .await?;
        let create = my
            .rows(
                "the table's definition",
                &format!("SHOW CREATE TABLE {}", table.qualified()),
            )
            .await?;
        let text = create
            .first()
            .and_then(|r| r.get(1).cloned().flatten())
            .unwrap_or_default();
        table.create = without_auto_increment(&text);
    }
    Ok(tables)
}

async fn column_list(my: &mut My, what: &str, sql: &str) -> Result<Vec<String>, DbError> {
    Ok(my
        .rows(what, sql)
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

/// A table definition without its ` AUTO_INCREMENT=N` table option (a
/// counter, compared on its own).
fn without_auto_increment(create: &str) -> String {
    let Some(at) = create.rfind(" AUTO_INCREMENT=") else {
        return create.to_owned();
    };
    let rest = &create[at + " AUTO_INCREMENT=".len()..];
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    format!("{}{}", &create[..at], &rest[digits..])
}

/// What differs between two databases' tables: missing or extra tables,
/// definitions (columns, types, indexes) and auto-increment counters.
pub(crate) fn differences(source: &[Table], destination: &[Table]) -> Vec<String> {
    let mut found = Vec::new();
    for table in source {
        match destination.iter().find(|t| t.name == table.name) {
            None => found.push(format!(
                "table {} is missing on the destination",
                table.name
            )),
            Some(other) if other.create != table.create => {
                let line = table
                    .create
                    .lines()
                    .zip(other.create.lines())
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| {
                        format!(
                            "`{}` on the source, `{}` on the destination",
                            a.trim(),
                            b.trim()
                        )
                    })
                    .unwrap_or_else(|| "a line more on one side".into());
                found.push(format!(
                    "table {} is defined differently: {line}",
                    table.name
                ));
            }
            Some(other) if other.auto_increment != table.auto_increment => found.push(format!(
                "table {}: the next AUTO_INCREMENT is {} on the source, {} on the destination",
                table.name,
                counter(table.auto_increment),
                counter(other.auto_increment)
            )),
            Some(_) => {}
        }
    }
    for table in destination {
        if !source.iter().any(|t| t.name == table.name) {
            found.push(format!("table {} is on the destination only", table.name));
        }
    }
    found
}

fn counter(value: Option<u64>) -> String {
    value.map_or_else(|| "none".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_left_out_of_a_definition() {
        assert_eq!(
            without_auto_increment(
                "CREATE TABLE `t` (\n  `id` int\n) ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=utf8mb4"
            ),
            "CREATE TABLE `t` (\n  `id` int\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        );
        assert_eq!(
            without_auto_increment("CREATE TABLE `t` (x int)"),
            "CREATE TABLE `t` (x int)"
        );
    }

    #[test]
    fn differences_name_tables_lines_and_counters() {
        let table = |name: &str, create: &str, ai: Option<u64>| Table {
            name: name.into(),
            create: create.into(),
            columns: Vec::new(),
            key: Vec::new(),
            auto_increment: ai,
            rows_estimate: 0,
            bytes_estimate: 0,
        };
        let source = [
            table("a", "CREATE\n  `x` int", Some(5)),
            table("b", "CREATE\n  `y` int", None),
            table("c", "CREATE", Some(7)),
        ];
        let destination = [
            table("a", "CREATE\n  `x` bigint", Some(5)),
            table("c", "CREATE", Some(3)),
            table("d", "CREATE", None),
        ];
        assert_eq!(
            differences(&source, &destination),
            [
                "table a is defined differently: ``x` int` on the source, ``x` bigint` on the destination"
                    .to_string(),
                "table b is missing on the destination".into(),
                "table c: the next AUTO_INCREMENT is 7 on the source, 3 on the destination".into(),
                "table d is on the destination only".into(),
            ]
        );
    }
}
