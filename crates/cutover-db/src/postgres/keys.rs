//! What the destination builds after the initial copy, as `pg_restore`
//! does after loading the data: building an index over a filled table is
//! faster than keeping it up row by row.
//!
//! Indexes no constraint owns, and foreign keys, wait until every table
//! is copied. A big table ([`DEFER_BYTES`]) is copied without its primary
//! key and unique constraints too; they are built the moment its copy
//! commits, before replication applies a change to it (which finds rows
//! by the primary key): while the copy runs, an `ALTER TABLE` adding them
//! is queued behind the copy's lock, and every change to the table queues
//! behind the `ALTER TABLE`. The queued statement is the server's: it
//! completes if the coordinator is gone, and a resumed run sees it (its
//! text is marked) instead of queueing another. Should a copy end unseen,
//! the keys are added at the next look; the worker whose change failed
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

/// Keys being added by this process: (destination, table).
static ADDING: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

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

/// The statement adding `table`'s keys `missing`, marked so that it can be
/// told apart in `pg_stat_activity`.
fn keys_sql(table: &Table, missing: &[&(String, String, String)]) -> String {
    let adds: Vec<String> = missing
        .iter()
        .map(|(name, _, definition)| format!("ADD CONSTRAINT {} {definition}", ident(name)))
        .collect();
    format!(
        "{} ALTER TABLE {} {}",
        marker(table),
        table.qualified(),
        adds.join(", ")
    )
}

fn marker(table: &Table) -> String {
    format!("/* cutover: the keys of {} */", table.qualified())
}

/// Each subscribed destination table's state (`i` waiting, `d` copying,
/// `f`/`s` copied and catching up, `r` replicating).
async fn states(dst: &Pg) -> Result<BTreeMap<(String, String), String>, DbError> {
    Ok(dst
        .rows(
            "the copy's state",
            "SELECT n.nspname::text, c.relname::text, r.srsubstate::text FROM pg_subscription_rel r \
             JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            (
                (
                    text(r, 0).unwrap_or_default(),
                    text(r, 1).unwrap_or_default(),
                ),
                text(r, 2).unwrap_or_default(),
            )
        })
        .collect())
}

/// Whether a replication worker holds `table` for its copy now.
async fn copy_holds(dst: &Pg, table: &Table) -> Result<bool, DbError> {
    Ok(dst
        .value(
            "the copy's lock",
            &format!(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'relation' AND l.relation = {}::regclass AND l.granted \
                 AND l.mode = 'RowExclusiveLock' AND a.backend_type LIKE 'logical replication%')::text",
                super::literal(&table.qualified())
            ),
        )
        .await?
        .as_deref()
        == Some("true"))
}

/// Whether `table`'s keys are being added, by this process or by a
/// statement queued on the server (by an earlier run).
async fn adding(dst: &Pg, table: &Table) -> Result<bool, DbError> {
    let key = (dst.label().to_owned(), table.qualified());
    if ADDING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&key)
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

/// Queues `sql` (adding `table`'s keys) on a connection of its own, which
/// waits for the copy's lock; this call does not wait.
fn queue(destination: &Server, dst: &Pg, table: &Table, sql: String) {
    let key = (dst.label().to_owned(), table.qualified());
    ADDING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key.clone());
    let destination = destination.clone();
    tokio::spawn(async move {
        // A failure shows at the next look: the keys are still missing
        // then, and are added there, where an error is reported.
        if let Ok(pg) = Pg::connect(&destination).await {
            let _ = pg.execute("adding a table's keys", &sql).await;
        }
        ADDING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    });
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
        let state = states
            .get(&(table.schema.clone(), table.name.clone()))
            .map(String::as_str)
            .unwrap_or("r");
        let sql = keys_sql(table, &keys.iter().collect::<Vec<_>>());
        if state == "i" || adding(dst, table).await? {
            waiting = true;
        } else if state == "d" {
            if copy_holds(dst, table).await? {
                queue(destination, dst, table, sql);
            }
            waiting = true;
        } else {
            dst.execute("adding a table's keys", &sql).await?;
            built += keys.len();
        }
    }
    if waiting || states.values().any(|state| state != "r") {
        return Ok(built);
    }
    for table in &source.tables {
        let Some(other) = find(table) else { continue };
        for (name, definition) in &table.indexes {
            if other.indexes.iter().any(|(n, _)| n == name) {
                continue;
            }
            let statement = definition.replacen(" INDEX ", " INDEX IF NOT EXISTS ", 1);
            dst.execute("creating an index", &statement).await?;
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
