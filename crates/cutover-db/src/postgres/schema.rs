//! The schema as the catalog describes it: tables with their columns,
//! constraints and indexes, and sequences, in user schemas. Read from both
//! sides, it is what the destination is created from and what the
//! comparison checks; `pg_dump` is not used, so no password is handed to a
//! command.

use super::{Pg, ident, text};
use crate::DbError;
use std::collections::{BTreeMap, BTreeSet};

/// Relations in these schemas are the server's own.
const USER_SCHEMAS: &str = "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Schema {
    pub tables: Vec<Table>,
    pub sequences: Vec<Sequence>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// (name, kind `p`/`u`/`c`/`f`/`x`, definition)
    pub constraints: Vec<(String, String, String)>,
    /// (name, `CREATE INDEX` statement) of indexes no constraint owns.
    pub indexes: Vec<(String, String)>,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Column {
    pub name: String,
    pub data_type: String,
    pub not_null: bool,
    pub default: Option<String>,
    /// `a` (always), `d` (by default) or empty.
    pub identity: String,
    /// `s` (stored) or empty.
    pub generated: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sequence {
    pub schema: String,
    pub name: String,
    pub data_type: String,
    pub start: String,
    pub min: String,
    pub max: String,
    pub increment: String,
    pub cycle: bool,
    /// An identity column's sequence, made with its column.
    pub identity: bool,
    /// `schema.table.column` of a serial column that owns it.
    pub owned_by: Option<String>,
}

impl Sequence {
    pub fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }
}

pub(crate) async fn read(pg: &Pg) -> Result<Schema, DbError> {
    let mut tables: BTreeMap<(String, String), Table> = BTreeMap::new();
    for row in pg
        .rows(
            "the tables",
            &format!(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND NOT c.relispartition AND {USER_SCHEMAS}"
            ),
            &[],
        )
        .await?
    {
        let key = (text(&row, 0).unwrap_or_default(), text(&row, 1).unwrap_or_default());
        tables.insert(
            key.clone(),
            Table {
                schema: key.0,
                name: key.1,
                ..Table::default()
            },
        );
    }
    for row in pg
        .rows(
            "the columns",
            &format!(
                "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                 a.attnotnull::text, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE c.relkind = 'r' AND NOT c.relispartition AND {USER_SCHEMAS} ORDER BY 1, 2, a.attnum"
            ),
            &[],
        )
        .await?
    {
        let key = (text(&row, 0).unwrap_or_default(), text(&row, 1).unwrap_or_default());
        if let Some(table) = tables.get_mut(&key) {
            table.columns.push(Column {
                name: text(&row, 2).unwrap_or_default(),
                data_type: text(&row, 3).unwrap_or_default(),
                not_null: text(&row, 4).as_deref() == Some("true"),
                default: text(&row, 5),
                identity: text(&row, 6).unwrap_or_default(),
                generated: text(&row, 7).unwrap_or_default(),
            });
        }
    }
    for row in pg
        .rows(
            "the constraints",
            &format!(
                "SELECT n.nspname::text, c.relname::text, k.conname::text, k.contype::text, pg_get_constraintdef(k.oid) \
                 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND {USER_SCHEMAS} ORDER BY 1, 2, 3"
            ),
            &[],
        )
        .await?
    {
        let key = (text(&row, 0).unwrap_or_default(), text(&row, 1).unwrap_or_default());
        if let Some(table) = tables.get_mut(&key) {
            table.constraints.push((
                text(&row, 2).unwrap_or_default(),
                text(&row, 3).unwrap_or_default(),
                text(&row, 4).unwrap_or_default(),
            ));
        }
    }
    for row in pg
        .rows(
            "the indexes",
            &format!(
                "SELECT n.nspname::text, c.relname::text, i.relname::text, pg_get_indexdef(x.indexrelid) \
                 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND {USER_SCHEMAS} \
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = c.oid) \
                 ORDER BY 1, 2, 3"
            ),
            &[],
        )
        .await?
    {
        let key = (text(&row, 0).unwrap_or_default(), text(&row, 1).unwrap_or_default());
        if let Some(table) = tables.get_mut(&key) {
            table
                .indexes
                .push((text(&row, 2).unwrap_or_default(), text(&row, 3).unwrap_or_default()));
        }
    }
    Ok(Schema {
        tables: tables.into_values().collect(),
        sequences: sequences(pg).await?,
    })
}

pub(crate) async fn sequences(pg: &Pg) -> Result<Vec<Sequence>, DbError> {
    let rows = pg
        .rows(
            "the sequences",
            &format!(
                "SELECT n.nspname::text, s.relname::text, format_type(q.seqtypid, NULL), q.seqstart::text, q.seqmin::text, \
                 q.seqmax::text, q.seqincrement::text, q.seqcycle::text, \
                 EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype = 'i')::text, \
                 (SELECT quote_ident(tn.nspname) || '.' || quote_ident(t.relname) || '.' || quote_ident(a.attname) \
                    FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
                    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid \
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype = 'a' LIMIT 1) \
                 FROM pg_sequence q JOIN pg_class s ON s.oid = q.seqrelid JOIN pg_namespace n ON n.oid = s.relnamespace \
                 WHERE {USER_SCHEMAS} ORDER BY 1, 2"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Sequence {
            schema: text(row, 0).unwrap_or_default(),
            name: text(row, 1).unwrap_or_default(),
            data_type: text(row, 2).unwrap_or_default(),
            start: text(row, 3).unwrap_or_default(),
            min: text(row, 4).unwrap_or_default(),
            max: text(row, 5).unwrap_or_default(),
            increment: text(row, 6).unwrap_or_default(),
            cycle: text(row, 7).as_deref() == Some("true"),
            identity: text(row, 8).as_deref() == Some("true"),
            owned_by: text(row, 9),
        })
        .collect())
}

/// Creates, in one transaction, what the destination lacks of `source`:
/// schemas, sequences, tables with their constraints (the primary key
/// among them: replication finds rows by it). Other indexes wait for
/// [`super::keys::build`], after the initial copy: filling a table and
/// then building its indexes is faster than keeping them up row by row.
/// So do the primary key and unique constraints of the `deferred` tables
/// (built as their copy ends), and, when any table is deferred, the
/// foreign keys (they need the keys they point to). A table that exists
/// is left as it is (the comparison reports how it differs). Returns how
/// many tables were created.
pub(crate) async fn create_missing(
    source: &Schema,
    dst: &Pg,
    deferred: &BTreeSet<(String, String)>,
) -> Result<usize, DbError> {
    let existing = read(dst).await?;
    let have: BTreeSet<(&str, &str)> = existing
        .tables
        .iter()
        .map(|t| (t.schema.as_str(), t.name.as_str()))
        .collect();
    let have_sequences: BTreeSet<(&str, &str)> = existing
        .sequences
        .iter()
        .map(|s| (s.schema.as_str(), s.name.as_str()))
        .collect();
    let missing: Vec<&Table> = source
        .tables
        .iter()
        .filter(|t| !have.contains(&(t.schema.as_str(), t.name.as_str())))
        .collect();
    let mut sql = String::from("BEGIN;\n");
    let schemas: BTreeSet<&str> = source.tables.iter().map(|t| t.schema.as_str()).collect();
    for schema in schemas {
        sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {};\n", ident(schema)));
    }
    for sequence in &source.sequences {
        if sequence.identity
            || have_sequences.contains(&(sequence.schema.as_str(), sequence.name.as_str()))
        {
            continue;
        }
        sql.push_str(&format!(
            "CREATE SEQUENCE {} AS {} INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {} {};\n",
            sequence.qualified(),
            sequence.data_type,
            sequence.increment,
            sequence.min,
            sequence.max,
            sequence.start,
            if sequence.cycle { "CYCLE" } else { "NO CYCLE" }
        ));
    }
    for table in &missing {
        let columns: Vec<String> = table.columns.iter().map(column_sql).collect();
        sql.push_str(&format!(
            "CREATE TABLE {} ({});\n",
            table.qualified(),
            columns.join(", ")
        ));
        let deferred = deferred.contains(&(table.schema.clone(), table.name.clone()));
        for (name, kind, definition) in &table.constraints {
            if kind != "f" && !(deferred && is_key(kind)) {
                sql.push_str(&constraint_sql(table, name, definition));
            }
        }
    }
    for table in missing.iter().filter(|_| deferred.is_empty()) {
        for (name, kind, definition) in &table.constraints {
            if kind == "f" {
                sql.push_str(&constraint_sql(table, name, definition));
            }
        }
    }
    for sequence in &source.sequences {
        let Some(owner) = &sequence.owned_by else {
            continue;
        };
        let made_here = missing
            .iter()
            .any(|t| owner.starts_with(&format!("{}.", qualified_unquoted(t))));
        if made_here && !sequence.identity {
            sql.push_str(&format!(
                "ALTER SEQUENCE {} OWNED BY {owner};\n",
                sequence.qualified()
            ));
        }
    }
    sql.push_str("COMMIT;");
    if let Err(err) = dst.execute("creating the schema", &sql).await {
        // The failed transaction is rolled back; leave the connection clean.
        let _ = dst.execute("rolling back", "ROLLBACK").await;
        return Err(match err {
            DbError::Query { server, reason, .. } => DbError::Unsupported {
                server,
                what: format!(
                    "cannot create the source's schema here: {reason} (create what it needs, e.g. types or extensions, on the destination first)"
                ),
            },
            other => other,
        });
    }
    Ok(missing.len())
}

/// `schema.table` as `quote_ident` writes it, to match `owned_by`.
fn qualified_unquoted(table: &Table) -> String {
    let quote = |s: &str| {
        let plain = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if plain { s.to_owned() } else { ident(s) }
    };
    format!("{}.{}", quote(&table.schema), quote(&table.name))
}

fn column_sql(column: &Column) -> String {
    let mut text = format!("{} {}", ident(&column.name), column.data_type);
    match (column.identity.as_str(), column.generated.as_str()) {
        ("a", _) => text.push_str(" GENERATED ALWAYS AS IDENTITY"),
        ("d", _) => text.push_str(" GENERATED BY DEFAULT AS IDENTITY"),
        (_, "s") => {
            if let Some(expression) = &column.default {
                text.push_str(&format!(" GENERATED ALWAYS AS ({expression}) STORED"));
            }
        }
        _ => {
            if let Some(default) = &column.default {
                text.push_str(&format!(" DEFAULT {default}"));
            }
        }
    }
    if column.not_null && column.identity.is_empty() {
        text.push_str(" NOT NULL");
    }
    text
}

/// A primary key or unique constraint (kept up by an index of its own).
pub(crate) fn is_key(kind: &str) -> bool {
    kind == "p" || kind == "u"
}

pub(crate) fn constraint_sql(table: &Table, name: &str, definition: &str) -> String {
    format!(
        "ALTER TABLE {} ADD CONSTRAINT {} {definition};\n",
        table.qualified(),
        ident(name)
    )
}

/// How the destination's schema differs from the source's, one line each.
pub(crate) fn differences(source: &Schema, destination: &Schema) -> Vec<String> {
    let mut found = Vec::new();
    let dest: BTreeMap<(&str, &str), &Table> = destination
        .tables
        .iter()
        .map(|t| ((t.schema.as_str(), t.name.as_str()), t))
        .collect();
    let src: BTreeSet<(&str, &str)> = source
        .tables
        .iter()
        .map(|t| (t.schema.as_str(), t.name.as_str()))
        .collect();
    for table in &source.tables {
        let Some(other) = dest.get(&(table.schema.as_str(), table.name.as_str())) else {
            found.push(format!(
                "table {} is missing on the destination",
                table.display()
            ));
            continue;
        };
        let shape = |t: &Table| -> Vec<(String, String, bool)> {
            t.columns
                .iter()
                .map(|c| (c.name.clone(), c.data_type.clone(), c.not_null))
                .collect()
        };
        if shape(table) != shape(other) {
            let describe = |t: &Table| {
                t.columns
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}{}",
                            c.name,
                            c.data_type,
                            if c.not_null { " not null" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            found.push(format!(
                "table {}: columns differ (source: {}; destination: {})",
                table.display(),
                describe(table),
                describe(other)
            ));
        }
        let keys = |t: &Table| -> BTreeSet<String> {
            t.constraints
                .iter()
                .map(|(_, kind, def)| format!("{kind} {def}"))
                .chain(t.indexes.iter().map(|(_, def)| def.clone()))
                .collect()
        };
        let (a, b) = (keys(table), keys(other));
        for only in a.difference(&b) {
            found.push(format!(
                "table {}: the destination lacks {}",
                table.display(),
                strip_kind(only)
            ));
        }
        for only in b.difference(&a) {
            found.push(format!(
                "table {}: the destination has {} which the source has not",
                table.display(),
                strip_kind(only)
            ));
        }
    }
    for table in &destination.tables {
        if !src.contains(&(table.schema.as_str(), table.name.as_str())) {
            found.push(format!(
                "table {} is on the destination only",
                table.display()
            ));
        }
    }
    found
}

fn strip_kind(text: &str) -> String {
    match text.split_once(' ') {
        Some((kind, def)) if kind.len() == 1 => format!("constraint `{def}`"),
        _ => format!("index `{text}`"),
    }
}
