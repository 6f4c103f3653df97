//! Reads a state file without changing it, through the store's read-only
//! open ([`Store::open_read_only`]): a report or the dashboard never
//! migrates, locks or writes a run's state, and may read it while the
//! engine writes (WAL lets readers and one writer coexist).

use cutover_store::{
    Confirmation, EventRecord, EvidenceRecord, LockHolder, RunRecord, StepRecord, Store, StoreError,
};
use std::path::{Path, PathBuf};

/// What can go wrong reading a state file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file is missing, of another schema version, or cannot be read
    /// (not a database, a bad row, I/O).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("state file {0} holds no run yet")]
    NoRun(PathBuf),
}

/// Everything a state file says about its latest run, read in one
/// transaction so the parts agree with each other.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub run: RunRecord,
    pub steps: Vec<StepRecord>,
    pub events: Vec<EventRecord>,
    pub evidence: Vec<EvidenceRecord>,
    pub confirmations: Vec<Confirmation>,
    /// The coordinator holding the run, if any.
    pub lock: Option<LockHolder>,
}

/// Reads the latest run of the state file at `path`.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, ReadError> {
    Store::open_read_only(path)?.read(|tx| {
        let run = tx
            .latest_run()?
            .ok_or_else(|| ReadError::NoRun(path.to_owned()))?;
        Ok(Snapshot {
            steps: tx.steps(run.id)?,
            events: tx.events(run.id)?,
            evidence: tx.evidence(run.id)?,
            confirmations: tx.confirmations(run.id)?,
            lock: tx.lock_holder()?,
            run,
        })
    })
}
