//! The schema and its forward migrations, versioned with `user_version`.
//! Each migration moves the file one version up inside a transaction; a
//! file written by a newer cutover is refused rather than misread.
//! Migrations are forward-only: a released one is never edited, a change
//! is a new one appended to [`MIGRATIONS`].

use crate::{Result, Store, StoreError};

/// Migration `i` moves a file from version `i` to version `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the first schema.
    "CREATE TABLE runs (
        id            INTEGER PRIMARY KEY,
        runbook_name  TEXT NOT NULL,
        runbook_path  TEXT NOT NULL,
        content_hash  TEXT NOT NULL,
        operator      TEXT NOT NULL,
        t0            TEXT,
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        status        TEXT NOT NULL
    );
    CREATE TABLE steps (
        run_id        INTEGER NOT NULL REFERENCES runs(id),
        name          TEXT NOT NULL,
        position      INTEGER NOT NULL,
        definition    TEXT NOT NULL,
        status        TEXT NOT NULL,
        phase         TEXT,
        attempts      INTEGER NOT NULL DEFAULT 0,
        planned_start TEXT,
        started_at    TEXT,
        first_act_at  TEXT,
        finished_at   TEXT,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        run_id  INTEGER NOT NULL REFERENCES runs(id),
        at      TEXT NOT NULL,
        step    TEXT,
        kind    TEXT NOT NULL,
        message TEXT NOT NULL,
        data    TEXT
    );
    CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TABLE evidence (
        id      INTEGER PRIMARY KEY,
        run_id  INTEGER NOT NULL REFERENCES runs(id),
        at      TEXT NOT NULL,
        step    TEXT NOT NULL,
        phase   TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        summary TEXT NOT NULL,
        data    TEXT NOT NULL
    );
    CREATE INDEX evidence_by_step ON evidence (run_id, step, phase);
    CREATE TABLE confirmations (
        id      INTEGER PRIMARY KEY,
        run_id  INTEGER NOT NULL REFERENCES runs(id),
        step    TEXT NOT NULL,
        user    TEXT NOT NULL,
        note    TEXT,
        at      TEXT NOT NULL
    );
    CREATE TABLE lock (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        user   TEXT NOT NULL,
        host   TEXT NOT NULL,
        pid    INTEGER NOT NULL,
        since  TEXT NOT NULL
    );",
    // 1 -> 2: the lock names its holder's process beyond its pid (start
    // time, boot id), confirmations say whether they were given ahead of
    // their gate, and a step's events and confirmations are read by index.
    "ALTER TABLE lock ADD COLUMN start_time TEXT;
    ALTER TABLE lock ADD COLUMN boot_id TEXT;
    ALTER TABLE confirmations ADD COLUMN ahead INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_by_step ON events (run_id, step);
    CREATE INDEX confirmations_by_step ON confirmations (run_id, step);",
    // 2 -> 3: the plan a run is judged against (see plan.rs).
    "CREATE TABLE run_plans (
        run_id        INTEGER PRIMARY KEY REFERENCES runs(id),
        rehearsal     INTEGER NOT NULL,
        origin        TEXT NOT NULL,
        plan_file     TEXT,
        plan_hash     TEXT,
        plan_made_at  TEXT,
        probed_at     TEXT,
        steps         TEXT NOT NULL
    );",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(store: &Store) -> Result<()> {
    let found: i64 = store.sql(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))?;
    if found > CURRENT_VERSION {
        return Err(StoreError::TooNew {
            path: store.path.clone(),
            found,
            supported: CURRENT_VERSION,
        });
    }
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        store.sql(|c| {
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            // Another process may have migrated while this one waited.
            let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if now > version as i64 {
                return Ok(());
            }
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", version as i64 + 1)?;
            tx.commit()
        })?;
    }
    Ok(())
}
