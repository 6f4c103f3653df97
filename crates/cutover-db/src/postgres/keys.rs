//! What the destination builds after the initial copy, as `pg_restore`
//! does after loading the data: building an index over a filled table is
//! faster than keeping it up row by row.
//!
//! Indexes no constraint owns, and foreign keys, wait until every table
//! is copied. A big table ([`DEFER_BYTES`]) is copied without its primary
//! key, unique constraints and indexes; they are built the moment its copy
//! commits, before replication applies a change to it (which finds rows
//! by the primary key): while the copy runs, the statements building them
//! are queued behind the copy's lock, and every change to the table
//! queues behind them. They run in two lanes at once, each a transaction
//! on a connection of its own: the keys' unique indexes and the
//! constraints made of them (`USING INDEX`) in one, the other indexes in
//! the other. Both only share the table until the keys' lane turns its
//! indexes into constraints, which waits for the other lane, so the two
//! cannot deadlock and no change is applied before the primary key is
//! there. Each session building gives its sorts [`BUILD_MEMORY`] (unless
//! the server gives more). The queued statements are the server's: they
//! complete if the coordinator is gone, and a resumed run sees them (their
//! text is marked) instead of queueing more. Should a copy end unseen, the
//! keys are added at the next look; the worker whose change failed
//! meanwhile is retried by the server.

use super::schema::{self, Schema, Table};
use super::{Pg, ident, text};
use crate::{DbError, Server};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

/// Tables this big on the source (table and TOAST, bytes) are copied
/// without their keys: below it the saving is small, and a copy that
/// short could end between two looks.
pub(crate) const DEFER_BYTES: u64 = 128 << 20;

/// `maintenance_work_mem` of a session building keys and indexes: their
/// sorts then run in memory for tables of a few GiB (the server's default
/// of 64 MB spills to disk already for the 1 GiB table of the bench).
const BUILD_MEMORY: &str = "512MB";

/// Lanes building keys and indexes in this process, by (destination,
/// table).
static ADDING: Mutex<BTreeMap<(String, String), usize>> = Mutex::new(BTreeMap::new());

/// The tables of `source` copied without their keys: big ones with a
/// primary key.
pub(crate) async fn deferred(
    src: &Pg,
    source: &Schema,
) -> Result<BTreeSet<(String, String)>, DbError> {
    let mut found = BTreeSet::new();
    for table in &source.tables {
        if !table.constraints.iter().any(|(_, kind, _)| kind == "p") {
            continue;
        }
        let bytes = src
            .rows(
                "a table's size",
                "SELECT pg_table_size($1::text::regclass)::text",
                &[&table.qualified()],
            )
            .await?
            .first()
            .and_then(|r| text(r, 0))
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        if bytes >= DEFER_BYTES {
            found.insert((table.schema.clone(), table.name.clone()));
        }
    }
    Ok(found)
}

/// The statement adding `table`'s keys `missing` (each building its own
/// index), marked so that it can be told apart in `pg_stat_activity`.
fn keys_sql(table: &Table, missing: &[&(String, String, String)]) -> String {
    let adds: Vec<String> = missing
        .iter()
        .map(|(name, _, definition)| format!("ADD CONSTRAINT {} {definition}", ident(name)))
        .collect();
    format!(
        "{} {} ALTER TABLE {} {}",
        marker(table),
        raise_memory(false),
        table.qualified(),
        adds.join(", ")
    )
}

/// The lanes building `table`'s keys `missing` and its `indexes` at once
/// (see the module's doc): one transaction each, marked.
fn lanes(
    table: &Table,
    missing: &[&(String, String, String)],
    indexes: &[&(String, String)],
) -> Vec<String> {
    let mut built = Vec::new();
    let mut adds = Vec::new();
    for (name, kind, definition) in missing {
        let index = table
            .key_indexes
            .iter()
            .find(|(constraint, _)| constraint == name)
            .map(|(_, index)| index);
        match index {
            Some(index) => {
                built.push(format!("{index};"));
                let what = if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" };
                let mut timing = String::new();
                if definition.contains(" DEFERRABLE") && !definition.contains(" NOT DEFERRABLE") {
                    timing.push_str(" DEFERRABLE");
                    if definition.contains(" INITIALLY DEFERRED") {
                        timing.push_str(" INITIALLY DEFERRED");
                    }
                }
                adds.push(format!(
                    "ADD CONSTRAINT {0} {what} USING INDEX {0}{timing}",
                    ident(name)
                ));
            }
            None => adds.push(format!("ADD CONSTRAINT {} {definition}", ident(name))),
        }
    }
    let lane = |statements: &str| {
        format!(
            "{} BEGIN; {} {statements} COMMIT;",
            marker(table),
            raise_memory(true)
        )
    };
    let mut lanes = vec![lane(&format!(
        "{} ALTER TABLE {} {};",
        built.join(" "),
        table.qualified(),
        adds.join(", ")
    ))];
    if !indexes.is_empty() {
        let statements: Vec<String> = indexes
            .iter()
            .map(|(_, definition)| format!("{};", if_not_exists(definition)))
            .collect();
        lanes.push(lane(&statements.join(" ")));
    }
    lanes
}

/// `CREATE INDEX` made a no-op where the index exists.
fn if_not_exists(definition: &str) -> String {
    definition.replacen(" INDEX ", " INDEX IF NOT EXISTS ", 1)
}

/// Gives the session's (or with `local`, the transaction's) sorts
/// [`BUILD_MEMORY`], unless the server gives them more.
fn raise_memory(local: bool) -> String {
    format!(
        "SELECT set_config('maintenance_work_mem', '{BUILD_MEMORY}', {local}) \
         WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('{BUILD_MEMORY}');"
    )
}

fn marker(table: &Table) -> String {
    format!("/* cutover: the keys of {} */", table.qualified())
}

/// Each subscribed destination table's states, one per subscription
/// copying part of it (`i` waiting, `d` copying, `f`/`s` copied and
/// catching up, `r` replicating).
async fn states(dst: &Pg) -> Result<BTreeMap<(String, String), Vec<String>>, DbError> {
    let mut states: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in dst
        .rows(
            "the copy's state",
            "SELECT n.nspname::text, c.relname::text, r.srsubstate::text FROM pg_subscription_rel r \
             JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace",
            &[],
        )
        .await?
    {
        states
            .entry((
                text(&r, 0).unwrap_or_default(),
                text(&r, 1).unwrap_or_default(),
            ))
            .or_default()
            .push(text(&r, 2).unwrap_or_default());
    }
    Ok(states)
}

/// A table's state over its parts: waiting while one waits, copying
/// while one copies, replicating once all do, else catching up.
fn overall(states: &[String]) -> &'static str {
    let any = |state: &str| states.iter().any(|s| s == state);
    if any("i") {
        "i"
    } else if any("d") {
        "d"
    } else if states.iter().all(|s| s == "r") {
        "r"
    } else {
        "s"
    }
}

/// Whether the replication workers copying `table` (`copying` of them)
/// all hold it for their copy now.
async fn copy_holds(dst: &Pg, table: &Table, copying: usize) -> Result<bool, DbError> {
    let holders: usize = dst
        .value(
            "the copy's lock",
            &format!(
                "SELECT count(DISTINCT l.pid)::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'relation' AND l.relation = {}::regclass AND l.granted \
                 AND l.mode = 'RowExclusiveLock' AND a.backend_type LIKE 'logical replication%'",
                super::literal(&table.qualified())
            ),
        )
        .await?
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Ok(holders > 0 && holders >= copying)
}

/// Whether `table`'s keys or indexes are being built, by this process or
/// by a statement queued on the server (by an earlier run).
async fn adding(dst: &Pg, table: &Table) -> Result<bool, DbError> {
    let key = (dst.label().to_owned(), table.qualified());
    if ADDING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(&key)
    {
        return Ok(true);
    }
    let rows = dst
        .rows(
            "the statements running",
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
             AND state = 'active' AND starts_with(query, $1::text))::text",
            &[&marker(table)],
        )
        .await?;
    Ok(rows.first().and_then(|r| text(r, 0)).as_deref() == Some("true"))
}

/// Queues `lanes` (building `table`'s keys and indexes) on connections of
/// their own, which wait for the copy's lock; this call does not wait.
fn queue(destination: &Server, dst: &Pg, table: &Table, lanes: Vec<String>) {
    let key = (dst.label().to_owned(), table.qualified());
    *ADDING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key.clone())
        .or_default() += lanes.len();
    for sql in lanes {
        let destination = destination.clone();
        let key = key.clone();
        tokio::spawn(async move {
            // A failure shows at the next look: the keys or indexes are
            // still missing then, and are built there, where an error is
            // reported.
            if let Ok(pg) = Pg::connect(&destination).await {
                let _ = pg.execute("building a table's keys", &sql).await;
            }
            let mut adding = ADDING.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = adding.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    adding.remove(&key);
                }
            }
        });
    }
}

/// Builds on the destination what is due of what waits for the copy
/// (see the module's doc); returns how many keys, indexes and foreign
/// keys it built itself (those queued behind a running copy are not
/// counted).
pub(crate) async fn build(
    source: &Schema,
    dst: &Pg,
    destination: &Server,
) -> Result<usize, DbError> {
    let existing = schema::read(dst).await?;
    let states = states(dst).await?;
    let find = |table: &Table| {
        existing
            .tables
            .iter()
            .find(|t| t.schema == table.schema && t.name == table.name)
    };
    let missing = |table: &Table, other: &Table, kinds: &dyn Fn(&str) -> bool| {
        table
            .constraints
            .iter()
            .filter(|(name, kind, _)| {
                kinds(kind) && !other.constraints.iter().any(|(n, _, _)| n == name)
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let missing_indexes = |table: &Table, other: &Table| {
        table
            .indexes
            .iter()
            .filter(|(name, _)| !other.indexes.iter().any(|(n, _)| n == name))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut built = 0;
    let mut waiting = false;
    for table in &source.tables {
        let Some(other) = find(table) else { continue };
        // Only a table without a primary key is one whose keys wait (one
        // that had it when found is left as it is).
        let has_key = |t: &Table| t.constraints.iter().any(|(_, kind, _)| kind == "p");
        if has_key(other) || !has_key(table) {
            continue;
        }
        let keys = missing(table, other, &schema::is_key);
        let keys: Vec<_> = keys.iter().collect();
        let parts = states
            .get(&(table.schema.clone(), table.name.clone()))
            .cloned()
            .unwrap_or_default();
        let state = overall(&parts);
        if state == "i" || adding(dst, table).await? {
            waiting = true;
        } else if state == "d" {
            let copying = parts.iter().filter(|s| *s == "d").count();
            if copy_holds(dst, table, copying).await? {
                let indexes = missing_indexes(table, other);
                queue(
                    destination,
                    dst,
                    table,
                    lanes(table, &keys, &indexes.iter().collect::<Vec<_>>()),
                );
            }
            waiting = true;
        } else {
            dst.execute("adding a table's keys", &keys_sql(table, &keys))
                .await?;
            built += keys.len();
        }
    }
    let due = |parts: &Vec<String>| overall(parts) == "r";
    if waiting || !states.values().all(due) {
        return Ok(built);
    }
    for table in &source.tables {
        let Some(other) = find(table) else { continue };
        if !missing_indexes(table, other).is_empty() && adding(dst, table).await? {
            // Its lanes are still at work.
            return Ok(built);
        }
    }
    let mut raised = false;
    for table in &source.tables {
        let Some(other) = find(table) else { continue };
        for (_, definition) in missing_indexes(table, other) {
            if !raised {
                dst.execute("raising the sorts' memory", &raise_memory(false))
                    .await?;
                raised = true;
            }
            dst.execute("creating an index", &if_not_exists(&definition))
                .await?;
            built += 1;
        }
    }
    for table in &source.tables {
        let Some(other) = find(table) else { continue };
        for (name, _, definition) in missing(table, other, &|kind| kind == "f") {
            dst.execute(
                "adding a foreign key",
                &schema::constraint_sql(table, &name, &definition),
            )
            .await?;
            built += 1;
        }
    }
    Ok(built)
}
