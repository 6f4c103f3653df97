//! A state file opened read-only, for the report and the dashboard: they
//! must never create, migrate, lock or write a run's state, and may read it
//! while the engine writes (WAL lets readers and one writer coexist).

use crate::{
    CURRENT_VERSION, Confirmation, EventRecord, EvidenceRecord, LockHolder, Result, RunRecord,
    StepRecord, StoreError, rows,
};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A state file opened with [`Store::open_read_only`](crate::Store::open_read_only).
pub struct ReadOnlyStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for ReadOnlyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyStore")
            .field("path", &self.path)
            .finish()
    }
}

/// One read transaction on a [`ReadOnlyStore`]: every read in it sees the
/// same committed state, whatever the engine commits meanwhile.
pub struct ReadTransaction<'a> {
    conn: &'a Connection,
    path: &'a Path,
}

impl std::fmt::Debug for ReadTransaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadTransaction")
            .field("path", &self.path)
            .finish()
    }
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// Refuses a file whose schema is not this build's: a read-only
/// connection cannot migrate an older one, and must not misread a newer one.
fn check_version(c: &Connection, path: &Path) -> Result<()> {
    let found: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite(path))?;
    if found != CURRENT_VERSION {
        return Err(StoreError::Version {
            path: path.to_owned(),
            found,
            supported: CURRENT_VERSION,
        });
    }
    Ok(())
}

impl ReadOnlyStore {
    pub(crate) fn open(path: &Path) -> Result<ReadOnlyStore> {
        // Checked first: SQLite would only say it cannot open the file.
        if !path.exists() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite(path))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sqlite(path))?;
        check_version(&conn, path)?;
        Ok(ReadOnlyStore {
            conn,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one read transaction, so that everything it reads
    /// agrees (a step's status with its events and evidence). Keep `f`
    /// short: a reader holding its snapshot delays the WAL checkpoint.
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&ReadTransaction<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(sqlite(&self.path))?;
        // Read again inside the snapshot: a newer cutover may have migrated
        // the file since it was opened.
        check_version(&tx, &self.path)?;
        let value = f(&ReadTransaction {
            conn: &tx,
            path: &self.path,
        })?;
        tx.finish().map_err(sqlite(&self.path))?;
        Ok(value)
    }
}

impl ReadTransaction<'_> {
    fn sql<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        f(self.conn).map_err(sqlite(self.path))
    }

    /// The most recent run in the file.
    pub fn latest_run(&self) -> Result<Option<RunRecord>> {
        self.sql(rows::latest_run)
    }

    /// Steps of a run in runbook order.
    pub fn steps(&self, run: i64) -> Result<Vec<StepRecord>> {
        self.sql(|c| rows::steps(c, run))
    }

    /// The plan a run is judged against, when it recorded one.
    pub fn run_plan(&self, run: i64) -> Result<Option<crate::RunPlan>> {
        self.sql(|c| crate::plan::read(c, run))
    }

    /// The event log of a run, oldest first.
    pub fn events(&self, run: i64) -> Result<Vec<EventRecord>> {
        self.sql(|c| rows::events(c, run))
    }

    /// All evidence of a run, oldest first.
    pub fn evidence(&self, run: i64) -> Result<Vec<EvidenceRecord>> {
        self.sql(|c| rows::evidence(c, run))
    }

    /// Every confirmation of a run's manual steps, oldest first.
    pub fn confirmations(&self, run: i64) -> Result<Vec<Confirmation>> {
        self.sql(|c| rows::confirmations(c, run))
    }

    /// The holder of the coordinator lock, if any.
    pub fn lock_holder(&self) -> Result<Option<LockHolder>> {
        self.sql(rows::lock_holder)
    }

    /// One step of a run, by its name.
    pub fn step(&self, run: i64, name: &str) -> Result<Option<StepRecord>> {
        self.sql(|c| rows::step(c, run, name))
    }

    /// How many steps a run has.
    pub fn step_count(&self, run: i64) -> Result<i64> {
        self.sql(|c| rows::step_count(c, run))
    }

    /// The events of a run with an id above `after`, oldest first: what
    /// was logged since a reader saw event `after` (the log is
    /// append-only).
    pub fn events_after(&self, run: i64, after: i64) -> Result<Vec<EventRecord>> {
        self.sql(|c| rows::events_after(c, run, after))
    }

    /// The evidence of a run with an id above `after`, oldest first
    /// (evidence is only ever inserted).
    pub fn evidence_after(&self, run: i64, after: i64) -> Result<Vec<EvidenceRecord>> {
        self.sql(|c| rows::evidence_after(c, run, after))
    }

    /// The confirmations of a run with an id above `after`, oldest first,
    /// each with its row id (confirmations are only ever inserted).
    pub fn confirmations_after(&self, run: i64, after: i64) -> Result<Vec<(i64, Confirmation)>> {
        self.sql(|c| rows::confirmations_after(c, run, after))
    }

    /// Steps of a run in runbook order without their latest evidence
    /// summary (`last_evidence` is None): much cheaper than
    /// [`ReadTransaction::steps`] for a reader that keeps the evidence.
    pub fn steps_without_evidence(&self, run: i64) -> Result<Vec<StepRecord>> {
        self.sql(|c| rows::steps_without_evidence(c, run))
    }
}
