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
    /// The plan the run recorded at its start (a reviewed plan, a
    /// rehearsal's), if any: what it is judged against.
    pub plan: Option<cutover_store::RunPlan>,
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
            plan: tx.run_plan(run.id)?,
            run,
        })
    })
}

/// A snapshot of a state file kept up to date by reading only what changed
/// since it was last read (what the dashboard does on every change).
///
/// The event log is append-only and evidence and confirmations are only
/// ever inserted, so their rows with an id above the last one seen are all
/// that is new. The mutable parts are read again: the runs row, the lock
/// row and every steps row, but without the per-step query of its latest
/// evidence (its summary is known from the kept evidence), which halves
/// their cost. It reads everything again when the run is another, a
/// `changed` event says the runbook changed (steps reset, inserted,
/// deleted, moved), or any read fails.
/// A replaced file is not noticed here: drop the value (the dashboard does
/// when the file's identity changes).
#[derive(Debug)]
pub struct LiveSnapshot {
    path: PathBuf,
    kept: Option<Kept>,
}

#[derive(Debug)]
struct Kept {
    store: cutover_store::ReadOnlyStore,
    snapshot: Snapshot,
    /// The summary of each step's latest evidence (what
    /// `StepRecord::last_evidence` is), by step name.
    last_summary: std::collections::HashMap<String, String>,
    last_event: i64,
    last_evidence: i64,
    last_confirmation: i64,
}

/// Whether an incremental read could be done, or everything is to be read.
enum Incremental {
    Done,
    ReadAll,
}

impl LiveSnapshot {
    pub fn new(path: PathBuf) -> LiveSnapshot {
        LiveSnapshot { path, kept: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latest run as it is now: read incrementally when a snapshot is
    /// kept, in full otherwise (or when anything looks inconsistent).
    pub fn refresh(&mut self) -> Result<&Snapshot, ReadError> {
        let incremental = match self.kept.as_mut() {
            Some(kept) => match kept.read_new(&self.path) {
                Ok(Incremental::Done) => true,
                Ok(Incremental::ReadAll) | Err(_) => false,
            },
            None => false,
        };
        if !incremental {
            self.kept = None;
            self.kept = Some(Kept::read_all(&self.path)?);
        }
        Ok(&self.kept.as_ref().expect("kept").snapshot)
    }

    /// The snapshot last read, if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.kept.as_ref().map(|k| &k.snapshot)
    }

    /// Forgets the kept snapshot: the next [`LiveSnapshot::refresh`]
    /// reads everything.
    pub fn forget(&mut self) {
        self.kept = None;
    }
}

impl Kept {
    fn read_all(path: &Path) -> Result<Kept, ReadError> {
        let store = Store::open_read_only(path)?;
        let (snapshot, last_confirmation) = store.read(|tx| {
            let run = tx
                .latest_run()?
                .ok_or_else(|| ReadError::NoRun(path.to_owned()))?;
            let confirmations = tx.confirmations_after(run.id, 0)?;
            let last_confirmation = confirmations.last().map_or(0, |(id, _)| *id);
            Ok::<_, ReadError>((
                Snapshot {
                    steps: tx.steps(run.id)?,
                    events: tx.events(run.id)?,
                    evidence: tx.evidence(run.id)?,
                    confirmations: confirmations.into_iter().map(|(_, c)| c).collect(),
                    lock: tx.lock_holder()?,
                    plan: tx.run_plan(run.id)?,
                    run,
                },
                last_confirmation,
            ))
        })?;
        let last_summary = snapshot
            .evidence
            .iter()
            .map(|e| (e.step.clone(), e.summary.clone()))
            .collect();
        Ok(Kept {
            store,
            last_summary,
            last_event: snapshot.events.last().map_or(0, |e| e.id),
            last_evidence: snapshot.evidence.last().map_or(0, |e| e.id),
            last_confirmation,
            snapshot,
        })
    }

    /// Reads what changed since, in one read transaction, and applies it
    /// only when all of it could be read and agrees with what is kept.
    fn read_new(&mut self, path: &Path) -> Result<Incremental, ReadError> {
        let run_id = self.snapshot.run.id;
        let (last_event, last_evidence, last_confirmation) =
            (self.last_event, self.last_evidence, self.last_confirmation);
        let read = self.store.read(|tx| {
            let Some(run) = tx.latest_run()? else {
                return Err(ReadError::NoRun(path.to_owned()));
            };
            if run.id != run_id {
                return Ok(None);
            }
            let events = tx.events_after(run_id, last_event)?;
            if events.iter().any(|e| e.kind == "changed") {
                return Ok(None);
            }
            Ok(Some((
                run,
                events,
                tx.evidence_after(run_id, last_evidence)?,
                tx.confirmations_after(run_id, last_confirmation)?,
                tx.steps_without_evidence(run_id)?,
                tx.lock_holder()?,
            )))
        })?;
        let Some((run, events, evidence, confirmations, mut steps, lock)) = read else {
            return Ok(Incremental::ReadAll);
        };
        for e in &evidence {
            self.last_summary.insert(e.step.clone(), e.summary.clone());
        }
        for step in &mut steps {
            step.last_evidence = self.last_summary.get(&step.name).cloned();
        }
        if let Some(e) = events.last() {
            self.last_event = e.id;
        }
        if let Some(e) = evidence.last() {
            self.last_evidence = e.id;
        }
        if let Some((id, _)) = confirmations.last() {
            self.last_confirmation = *id;
        }
        let snapshot = &mut self.snapshot;
        snapshot.run = run;
        snapshot.steps = steps;
        snapshot.events.extend(events);
        snapshot.evidence.extend(evidence);
        snapshot
            .confirmations
            .extend(confirmations.into_iter().map(|(_, c)| c));
        snapshot.lock = lock;
        Ok(Incremental::Done)
    }
}
