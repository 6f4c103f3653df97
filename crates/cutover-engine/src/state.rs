//! The run's state as the engine uses it: the store behind a mutex (kinds
//! and the scheduler share it), what keeps progress reports and repeated
//! countdowns from flooding the event log, and opening a run — new,
//! resumed, or resumed with a changed runbook.

use crate::describe;
use crate::secrets::Secrets;
use chrono::{DateTime, TimeDelta, Utc};
use cutover_lang::Runbook;
use cutover_plan::Plan;
use cutover_store::{
    Confirmation, EvidenceRecord, NewRun, NewStep, Phase, RunRecord, StepRecord, Store, Transition,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// A step's progress is logged at most this often: the dashboard reads the
/// log once a second, and a copy reports after every block it moves.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Which progress reports go to the event log: per step the first, then at
/// most one per [`PROGRESS_EVERY`], and always the one reaching the total.
#[derive(Debug, Default)]
pub(crate) struct ProgressThrottle {
    /// When each step's progress was last logged, and how far it was.
    logged: HashMap<String, (Instant, u64)>,
}

impl ProgressThrottle {
    /// Whether `done` of `total` for `step` at `now` is to be logged;
    /// remembers it when it is.
    pub(crate) fn admit(
        &mut self,
        step: &str,
        done: u64,
        total: Option<u64>,
        now: Instant,
    ) -> bool {
        let due = match self.logged.get(step) {
            None => true,
            Some(&(at, logged_done)) => {
                now.duration_since(at) >= PROGRESS_EVERY
                    || (total == Some(done) && logged_done != done)
            }
        };
        if due {
            self.logged.insert(step.to_owned(), (now, done));
        }
        due
    }
}

/// The store of one run, shared by the scheduler and the kinds.
#[derive(Debug)]
pub struct SharedState {
    store: Mutex<Store>,
    run: i64,
    progress: Mutex<ProgressThrottle>,
    /// The countdown each step logged last: a kind may repeat one while
    /// verifying, and only a new one is logged.
    countdowns: Mutex<HashMap<String, (DateTime<Utc>, String)>>,
    /// Masked in every event and evidence written through here (see
    /// [`crate::secrets`]); registered when a run or rollback starts.
    secrets: RwLock<Secrets>,
}

impl SharedState {
    pub fn new(store: Store, run: i64) -> SharedState {
        SharedState {
            store: Mutex::new(store),
            run,
            progress: Mutex::default(),
            countdowns: Mutex::default(),
            secrets: RwLock::default(),
        }
    }

    /// Reads the secret of every key of `runbook` that can be read now
    /// (`file:` paths relative to `runbook_dir`) and masks them from here
    /// on in everything this state writes. Called when a run or rollback
    /// starts; a key that cannot be read is skipped.
    pub fn register_secrets(&self, runbook: &Runbook, runbook_dir: &Path) {
        let found = Secrets::of_runbook(runbook, runbook_dir);
        *self
            .secrets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = found;
    }

    fn secrets(&self) -> std::sync::RwLockReadGuard<'_, Secrets> {
        self.secrets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `text` with every registered secret masked.
    pub fn mask(&self, text: &str) -> String {
        self.secrets().mask(text)
    }

    pub fn run_id(&self) -> i64 {
        self.run
    }

    /// Direct access to the store (reads, lock release).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves the connection usable:
        // every write is one transaction, committed or not.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn run_record(&self) -> anyhow::Result<RunRecord> {
        self.store()
            .latest_run()?
            .ok_or_else(|| anyhow::anyhow!("the state file holds no run"))
    }

    pub(crate) fn transition(&self, t: &Transition<'_>) -> anyhow::Result<()> {
        let secrets = self.secrets();
        if secrets.is_empty() {
            drop(secrets);
            return Ok(self.store().transition(self.run, t)?);
        }
        let masked = Transition {
            message: secrets.mask(&t.message),
            evidence: t.evidence.as_ref().map(|(phase, summary, data)| {
                (*phase, secrets.mask(summary), secrets.mask_json(data))
            }),
            ..*t
        };
        drop(secrets);
        Ok(self.store().transition(self.run, &masked)?)
    }

    pub(crate) fn append_event(
        &self,
        step: Option<&str>,
        kind: &str,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> anyhow::Result<()> {
        let secrets = self.secrets();
        if secrets.is_empty() {
            drop(secrets);
            return Ok(self
                .store()
                .append_event(self.run, step, kind, message, data)?);
        }
        let message = secrets.mask(message);
        let data = data.map(|d| secrets.mask_json(d));
        drop(secrets);
        Ok(self
            .store()
            .append_event(self.run, step, kind, &message, data.as_ref())?)
    }

    /// Whether this progress report of `step` is to be logged now (see
    /// [`ProgressThrottle`]).
    pub(crate) fn progress_due(&self, step: &str, done: u64, total: Option<u64>) -> bool {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(step, done, total, Instant::now())
    }

    /// Whether `step` starts a countdown it has not logged already.
    pub(crate) fn countdown_is_new(&self, step: &str, until: DateTime<Utc>, label: &str) -> bool {
        let mut logged = self
            .countdowns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let countdown = (until, label.to_owned());
        if logged.get(step) == Some(&countdown) {
            return false;
        }
        logged.insert(step.to_owned(), countdown);
        true
    }

    pub(crate) fn step_record(&self, name: &str) -> anyhow::Result<Option<StepRecord>> {
        Ok(self.store().step(self.run, name)?)
    }

    pub(crate) fn evidence_of(
        &self,
        name: &str,
        phase: Phase,
    ) -> anyhow::Result<Option<EvidenceRecord>> {
        Ok(self.store().latest_evidence(self.run, name, phase)?)
    }

    pub(crate) fn confirmation(&self, name: &str) -> anyhow::Result<Option<Confirmation>> {
        Ok(self.store().confirmation(self.run, name)?)
    }

    pub(crate) fn confirm(&self, name: &str, user: &str, note: Option<&str>) -> anyhow::Result<()> {
        Ok(self.store().confirm(self.run, name, user, note)?)
    }

    /// Accepts the changed runbook listed by [`open_run`]: changed steps
    /// go back to pending, added ones are registered, removed ones dropped.
    pub fn accept_changes(
        &self,
        runbook: &Runbook,
        content_hash: &str,
        changes: &[StepChange],
    ) -> anyhow::Result<()> {
        let t0 = self.run_record()?.t0;
        let names: Vec<&str> = changes.iter().map(|c| c.name.as_str()).collect();
        let message = if names.is_empty() {
            "runbook text changed; no step changed".to_owned()
        } else {
            format!(
                "runbook changed; accepted changes to steps {}",
                names.join(", ")
            )
        };
        self.store().accept_changed_runbook(
            self.run,
            content_hash,
            &new_steps(runbook, t0),
            &message,
        )?;
        Ok(())
    }
}

/// A difference between the runbook a run started with and the one given now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepChange {
    pub name: String,
    /// The step's text when the run started (None: the step is new).
    pub before: Option<String>,
    /// The step's text now (None: the step was removed).
    pub after: Option<String>,
}

/// The state file opened for a run.
#[derive(Debug)]
pub enum Opened {
    /// No run was in the file: one was started.
    New(SharedState),
    /// A run is resumed with the same runbook.
    Resumed(SharedState),
    /// A run is resumed but the runbook's text differs from the one it
    /// started with: `changes` lists the steps that differ (possibly none,
    /// e.g. a comment changed). Nothing runs until they are accepted with
    /// [`SharedState::accept_changes`].
    Changed {
        state: SharedState,
        content_hash: String,
        changes: Vec<StepChange>,
    },
}

/// The instant a plan's offsets count from in a run: the run's T0, else
/// the runbook's (its window, or its earliest absolute `at`); None: the
/// start of the run. Status and the export count from the same.
pub(crate) fn plan_t0(plan: &Plan, run_t0: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    run_t0.or(plan.t0)
}

/// The steps of a new run, each with its planned start from the planner.
fn new_steps(runbook: &Runbook, t0: Option<DateTime<Utc>>) -> Vec<NewStep> {
    let plan = cutover_plan::plan(runbook, None);
    let origin = plan_t0(&plan, t0).unwrap_or_else(Utc::now);
    runbook
        .steps
        .iter()
        .zip(&plan.steps)
        .map(|(step, planned)| NewStep {
            name: step.name.clone(),
            definition: describe::step(runbook, step),
            planned_start: origin.checked_add_signed(TimeDelta::milliseconds(planned.start)),
        })
        .collect()
}

/// Opens the run in `store` for `runbook`, or starts one. `t0` is used
/// only by a new run (a resumed run keeps the T0 it started with).
pub fn open_run(
    store: Store,
    runbook: &Runbook,
    runbook_path: &str,
    content_hash: &str,
    t0: Option<DateTime<Utc>>,
) -> anyhow::Result<Opened> {
    open_planned_run(store, runbook, runbook_path, content_hash, t0, None)
}

/// How a new run is planned: the plan it is judged against (a reviewed
/// plan's, a rehearsal's re-based one) and what the store records of it.
#[derive(Debug, Clone)]
pub struct RunPlanning {
    pub plan: Plan,
    pub rehearsal: bool,
    pub reviewed: Option<cutover_store::ReviewedPlanRef>,
    /// The reviewed plan's own times (it may have been calibrated), which
    /// the run records instead of `plan`'s.
    pub spans: Option<Vec<cutover_store::PlannedSpan>>,
}

/// [`open_run`] with the plan a new run records (planned starts, the
/// `run_plans` row); a resumed run keeps what it recorded.
pub fn open_planned_run(
    store: Store,
    runbook: &Runbook,
    runbook_path: &str,
    content_hash: &str,
    t0: Option<DateTime<Utc>>,
    planning: Option<&RunPlanning>,
) -> anyhow::Result<Opened> {
    let existing = store.latest_run()?;
    let Some(run) = existing else {
        let new_run = |steps| NewRun {
            runbook_name: runbook.name.clone(),
            runbook_path: runbook_path.to_owned(),
            content_hash: content_hash.to_owned(),
            operator: cutover_store::current_user(),
            t0,
            steps,
        };
        let id = match planning {
            None => store.create_run(&new_run(new_steps(runbook, t0)))?,
            Some(planning) => {
                let origin = plan_t0(&planning.plan, t0).unwrap_or_else(Utc::now);
                let spans = planning.spans.clone().unwrap_or_else(|| {
                    planning
                        .plan
                        .steps
                        .iter()
                        .map(|s| cutover_store::PlannedSpan {
                            name: s.name.clone(),
                            start_ms: s.start,
                            end_ms: s.end,
                            source: s.duration.provenance.as_str().to_owned(),
                        })
                        .collect()
                });
                let steps = runbook
                    .steps
                    .iter()
                    .map(|step| NewStep {
                        name: step.name.clone(),
                        definition: describe::step(runbook, step),
                        planned_start: spans.iter().find(|s| s.name == step.name).and_then(|s| {
                            origin.checked_add_signed(TimeDelta::milliseconds(s.start_ms))
                        }),
                    })
                    .collect();
                let recorded = cutover_store::RunPlan {
                    rehearsal: planning.rehearsal,
                    origin,
                    reviewed: planning.reviewed.clone(),
                    steps: spans,
                };
                store.create_planned_run(&new_run(steps), Some(&recorded))?
            }
        };
        return Ok(Opened::New(SharedState::new(store, id)));
    };
    if run.runbook_name != runbook.name {
        anyhow::bail!(
            "state file {} belongs to runbook `{}`, not `{}`; pass another --state",
            store.path().display(),
            run.runbook_name,
            runbook.name
        );
    }
    if run.content_hash == content_hash {
        return Ok(Opened::Resumed(SharedState::new(store, run.id)));
    }
    let recorded = store.steps(run.id)?;
    let recorded_by_name: HashMap<&str, &StepRecord> = recorded
        .iter()
        .rev() // the first record of a name wins, as in `find`
        .map(|r| (r.name.as_str(), r))
        .collect();
    let by_name = runbook.steps_by_name();
    let mut changes = Vec::new();
    for step in &runbook.steps {
        let now = describe::step(runbook, step);
        match recorded_by_name.get(step.name.as_str()) {
            Some(old) if old.definition == now => {}
            Some(old) => changes.push(StepChange {
                name: step.name.clone(),
                before: Some(old.definition.clone()),
                after: Some(now),
            }),
            None => changes.push(StepChange {
                name: step.name.clone(),
                before: None,
                after: Some(now),
            }),
        }
    }
    for old in &recorded {
        if !by_name.contains_key(old.name.as_str()) {
            changes.push(StepChange {
                name: old.name.clone(),
                before: Some(old.definition.clone()),
                after: None,
            });
        }
    }
    Ok(Opened::Changed {
        state: SharedState::new(store, run.id),
        content_hash: content_hash.to_owned(),
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_admitted_once_a_second_per_step_and_always_at_the_total() {
        let mut throttle = ProgressThrottle::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let total = Some(100);
        assert!(throttle.admit("copy", 1, total, at(0)), "the first report");
        assert!(!throttle.admit("copy", 2, total, at(10)));
        assert!(!throttle.admit("copy", 40, total, at(999)));
        assert!(throttle.admit("other", 5, total, at(999)), "per step");
        assert!(
            throttle.admit("copy", 50, total, at(1000)),
            "a second later"
        );
        assert!(!throttle.admit("copy", 60, total, at(1500)));
        assert!(throttle.admit("copy", 100, total, at(1501)), "the total");
        assert!(!throttle.admit("copy", 100, total, at(1502)), "only once");
        assert!(throttle.admit("scan", 7, None, at(0)));
        assert!(!throttle.admit("scan", 7, None, at(10)), "no total, no end");
        assert!(throttle.admit("scan", 9, None, at(1010)));
    }
}
