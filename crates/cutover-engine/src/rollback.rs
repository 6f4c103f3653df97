//! Rollback: the `undo` of every step whose action may have taken effect,
//! newest first, each checked, acted, verified and recorded like a step.
//!
//! In scope are done steps and steps whose intent was committed (an act
//! started) but that failed or were never verified — a `dns.switch` whose
//! update landed but whose verification timed out changed DNS all the
//! same — and undos that failed or were interrupted before. Steps that
//! change nothing (port and HTTP checks, waits) need no undo; a step that
//! changed something but has no `undo` line is reported and left as it is.
//! A rollback is complete only when every step in scope is undone: it
//! never reports success while one is not.

use crate::kind::{ActionRole, Check, Evidence, StepError};
use crate::report::{Decision, RunEvent, StepOutcome};
use crate::runner::error_evidence;
use crate::{Controls, Engine, SharedState, describe};
use chrono::{DateTime, Utc};
use cutover_lang::{ActionKind, StepId};
use cutover_store::{Phase, RunStatus, StepRecord, StepStatus, Transition};
use std::time::{Duration, Instant};

/// What rollback will do with one step in scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoAction {
    /// Run the step's `undo` line (its canonical text).
    Undo(String),
    /// The step changes nothing (checks, waits): it is marked undone.
    NothingToUndo,
    /// The step may have changed something and has no `undo` line.
    NoUndoLine,
}

/// One step rollback will undo, in the order it will undo them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUndo {
    pub id: StepId,
    pub step: String,
    /// Why it is in scope: its state in the run (`done`, `failed in act`…).
    pub state: String,
    pub action: UndoAction,
    /// What the undo's check sees now (the live value), where it can read
    /// one; `None` when there is nothing to read.
    pub current: Option<String>,
}

/// How a rollback ended: what was undone, what failed, what could not be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollbackOutcome {
    /// Undone by their `undo` line (or found already undone).
    pub undone: Vec<String>,
    /// Changed nothing; marked undone.
    pub nothing_to_undo: Vec<String>,
    /// The undo that failed (step, why); the rollback stopped there.
    pub failed: Option<(String, String)>,
    /// The failed undo refused for good (a fatal error, such as a
    /// `db.sync`'s undo after `db.unfollow`): a new rollback fails the same way.
    pub failed_for_good: bool,
    /// In scope, but no `undo` line: left as they are.
    pub no_undo: Vec<String>,
    /// Skipped at the `--step` prompt: left as they are.
    pub skipped: Vec<String>,
    /// Not reached (after a failure or a stop).
    pub not_reached: Vec<String>,
    /// Stopped by Ctrl-C (or "stop" at the prompt); run rollback again to go on.
    pub stopped: bool,
}

impl RollbackOutcome {
    /// True when every step in scope is undone (or needed no undo).
    pub fn is_complete(&self) -> bool {
        self.failed.is_none()
            && self.no_undo.is_empty()
            && self.skipped.is_empty()
            && self.not_reached.is_empty()
            && !self.stopped
    }
}

fn changes_nothing(kind: &ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::PortOpen { .. }
            | ActionKind::PortClosed { .. }
            | ActionKind::HttpCheck { .. }
            | ActionKind::Wait(_)
    )
}

/// Whether a step's action may have taken effect: it is done, or an act
/// was started (intent committed) and never undone, or an earlier undo of
/// it failed or was interrupted.
fn may_have_acted(record: &StepRecord) -> bool {
    match record.status {
        StepStatus::Done => true,
        StepStatus::Running | StepStatus::Failed => {
            record.phase == Some(Phase::Undo)
                || (record.attempts > 0 && matches!(record.phase, Some(Phase::Act | Phase::Verify)))
        }
        StepStatus::Pending | StepStatus::Skipped | StepStatus::Undone => false,
    }
}

fn state_text(record: &StepRecord) -> String {
    match (record.status, record.phase) {
        (StepStatus::Done, _) => "done".to_owned(),
        (StepStatus::Failed, Some(Phase::Undo)) => "its undo failed".to_owned(),
        (StepStatus::Running, Some(Phase::Undo)) => "its undo was interrupted".to_owned(),
        (StepStatus::Failed, Some(phase)) => format!("failed in {}", phase.as_str()),
        (StepStatus::Running, Some(phase)) => format!("caught in {}", phase.as_str()),
        (status, _) => status.as_str().to_owned(),
    }
}

impl Engine<'_> {
    /// The steps a rollback (down to, not including, `to`) will undo, newest
    /// first, each with what its undo's check sees now.
    pub async fn rollback_plan(
        &self,
        state: &SharedState,
        to: Option<StepId>,
        controls: &Controls,
    ) -> anyhow::Result<Vec<PlannedUndo>> {
        let t0 = state.run_record()?.t0;
        let records = state.store().steps(state.run_id())?;
        let since: Option<DateTime<Utc>> = match to {
            Some(to) => {
                let name = &self.runbook.step(to).name;
                match records.iter().find(|r| &r.name == name) {
                    Some(r) if r.status == StepStatus::Done => r.finished_at,
                    _ => anyhow::bail!(
                        "--to {name}: that step is not done, so there is nothing to roll back to"
                    ),
                }
            }
            None => None,
        };
        // Newest first; a step still in flight (no finish time) is newest.
        let by_name = self.runbook.steps_by_name();
        let mut scope: Vec<(Option<DateTime<Utc>>, StepId, &StepRecord)> = records
            .iter()
            .filter(|r| may_have_acted(r))
            .filter(|r| since.is_none_or(|since| r.finished_at.is_none_or(|f| f > since)))
            .filter(|r| to.is_none_or(|to| self.runbook.step(to).name != r.name))
            .filter_map(|r| {
                by_name
                    .get(r.name.as_str())
                    .map(|&id| (r.finished_at, id, r))
            })
            .collect();
        scope.sort_by(|a, b| match (a.0, b.0) {
            (None, None) => b.1.cmp(&a.1),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(&x).then(b.1.cmp(&a.1)),
        });
        let mut plan = Vec::with_capacity(scope.len());
        for (_, id, record) in scope {
            let step = self.runbook.step(id);
            let (action, current) = match &step.undo {
                Some(undo) => {
                    let kind = self.kinds.kind_for(&undo.kind)?;
                    let ctx = self.context(
                        state,
                        id,
                        undo,
                        ActionRole::Undo,
                        t0,
                        controls.abort.clone(),
                        controls.stop.clone(),
                    );
                    let current = match kind.check(&ctx).await {
                        Ok(Check::Satisfied(e)) => Some(format!("already undone: {}", e.summary)),
                        Ok(Check::NotYet(e)) => Some(e.summary),
                        Ok(Check::Unobservable) => None,
                        // Fatal: the undo refuses to run (as a db.sync's does
                        // once its fallback window has ended).
                        Err(err @ StepError::Fatal { .. }) => {
                            Some(format!("it cannot be undone: {err:#}"))
                        }
                        Err(err) => Some(format!("cannot read it now: {err:#}")),
                    };
                    (UndoAction::Undo(self.runbook.describe(undo)), current)
                }
                None if changes_nothing(&step.action.kind) => (UndoAction::NothingToUndo, None),
                None => (UndoAction::NoUndoLine, None),
            };
            plan.push(PlannedUndo {
                id,
                step: step.name.clone(),
                state: state_text(record),
                action,
                current,
            });
        }
        Ok(plan)
    }

    /// Undoes the steps of `plan` (from [`Engine::rollback_plan`]) in order.
    /// The run is `running` meanwhile (so a crash shows as one), and ends
    /// `rolled_back` only when the plan covered the whole run and every
    /// step in it is undone; otherwise `failed` (an undo failed) or
    /// `stopped`.
    pub async fn rollback(
        &self,
        state: &SharedState,
        plan: &[PlannedUndo],
        whole_run: bool,
        controls: &Controls,
    ) -> anyhow::Result<RollbackOutcome> {
        state.register_secrets(self.runbook, &self.options.runbook_dir);
        let t0 = state.run_record()?.t0;
        state
            .store()
            .set_run_status(state.run_id(), RunStatus::Running)?;
        let mut outcome = RollbackOutcome::default();
        for (index, planned) in plan.iter().enumerate() {
            if controls.is_stopped() {
                outcome.stopped = true;
            }
            if outcome.stopped || outcome.failed.is_some() {
                outcome
                    .not_reached
                    .extend(plan[index..].iter().map(|p| p.step.clone()));
                break;
            }
            let id = planned.id;
            let step = self.runbook.step(id);
            let name = step.name.as_str();
            let Some(undo) = &step.undo else {
                if planned.action == UndoAction::NothingToUndo {
                    let e = Evidence::new("nothing to undo", serde_json::Value::Null);
                    self.transition(
                        state,
                        name,
                        StepStatus::Undone,
                        "undone",
                        "nothing to undo".into(),
                        Some(&e),
                    )?;
                    self.undo_finished(name, StepOutcome::Undone, &e.summary);
                    outcome.nothing_to_undo.push(name.to_owned());
                } else {
                    let text = format!("step `{name}` has no undo line: left as it is");
                    state.append_event(Some(name), "deviation", &text, None)?;
                    self.reporter.event(&RunEvent::Warning { text });
                    outcome.no_undo.push(name.to_owned());
                }
                continue;
            };
            self.reporter.event(&RunEvent::StepStarted {
                step: name.to_owned(),
            });
            if self.options.step_mode {
                let what = format!(
                    "undo `{name}` ({}):\n  {}",
                    planned.state,
                    self.runbook.describe(undo)
                );
                let decision = tokio::select! {
                    d = self.prompter.before_step(step, &what) => d,
                    () = controls.stop.cancelled() => Decision::Stop,
                };
                match decision {
                    Decision::Run => {}
                    Decision::Skip => {
                        state.append_event(
                            Some(name),
                            "deviation",
                            "undo skipped at the prompt: left as it is",
                            None,
                        )?;
                        self.undo_finished(
                            name,
                            StepOutcome::Skipped,
                            "undo skipped at the prompt",
                        );
                        outcome.skipped.push(name.to_owned());
                        continue;
                    }
                    Decision::Stop => {
                        self.undo_finished(
                            name,
                            StepOutcome::Interrupted,
                            "stopped before its undo",
                        );
                        outcome.stopped = true;
                        outcome
                            .not_reached
                            .extend(plan[index..].iter().map(|p| p.step.clone()));
                        break;
                    }
                }
            }
            self.reporter.event(&RunEvent::Phase {
                step: name.to_owned(),
                phase: Phase::Undo,
            });
            match self.undo_one(state, id, undo, t0, controls).await? {
                UndoEnd::Undone(summary) => {
                    self.undo_finished(name, StepOutcome::Undone, &summary);
                    outcome.undone.push(name.to_owned());
                }
                UndoEnd::Failed { summary, for_good } => {
                    self.undo_finished(name, StepOutcome::Failed, &summary);
                    outcome.failed = Some((name.to_owned(), summary));
                    outcome.failed_for_good = for_good;
                }
                UndoEnd::Stopped => {
                    self.undo_finished(
                        name,
                        StepOutcome::Interrupted,
                        "undo interrupted; resumable",
                    );
                    outcome.stopped = true;
                    outcome
                        .not_reached
                        .extend(plan[index..].iter().map(|p| p.step.clone()));
                    break;
                }
            }
        }
        let status = if outcome.failed.is_some() {
            RunStatus::Failed
        } else if whole_run && outcome.is_complete() {
            RunStatus::RolledBack
        } else {
            RunStatus::Stopped
        };
        state.store().set_run_status(state.run_id(), status)?;
        Ok(outcome)
    }

    /// One undo: check (already undone?), intent, act, verify by polling.
    async fn undo_one(
        &self,
        state: &SharedState,
        id: StepId,
        undo: &cutover_lang::Action,
        t0: Option<DateTime<Utc>>,
        controls: &Controls,
    ) -> anyhow::Result<UndoEnd> {
        let step = self.runbook.step(id);
        let name = step.name.as_str();
        let kind = self.kinds.kind_for(&undo.kind)?;
        let cancel = controls.abort.clone();
        let ctx = self.context(
            state,
            id,
            undo,
            ActionRole::Undo,
            t0,
            cancel.clone(),
            controls.stop.clone(),
        );
        if let Ok(Check::Satisfied(e)) = kind.check(&ctx).await {
            let summary = format!("undo already satisfied: {}", e.summary);
            self.transition(
                state,
                name,
                StepStatus::Undone,
                "undone",
                summary.clone(),
                Some(&e),
            )?;
            return Ok(UndoEnd::Undone(e.summary));
        }
        if controls.is_stopped() {
            return Ok(UndoEnd::Stopped);
        }
        // Intent before the side effect.
        state.transition(&Transition {
            step: name,
            status: StepStatus::Running,
            phase: Some(Phase::Undo),
            new_attempt: false,
            event_kind: "phase",
            message: format!("undoing: {}", self.runbook.describe(undo)),
            evidence: None,
        })?;
        let acted = kind.act(&ctx).await;
        if cancel.is_cancelled()
            || (controls.is_stopped() && matches!(&acted, Err(StepError::Interrupted)))
        {
            return Ok(UndoEnd::Stopped);
        }
        if let Err(err) = acted {
            let e = error_evidence(&err);
            let summary = format!("undo failed: {}", e.summary);
            self.transition(
                state,
                name,
                StepStatus::Failed,
                "failed",
                summary.clone(),
                Some(&e),
            )?;
            return Ok(UndoEnd::Failed {
                summary,
                for_good: !err.is_retryable(),
            });
        }
        let timeout = step.timeout.unwrap_or(self.options.default_timeout);
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(50);
        let verified = loop {
            match kind.verify(&ctx).await {
                Ok(Check::Satisfied(e)) => break Ok(e),
                Ok(Check::Unobservable) => {
                    break Ok(Evidence::new(
                        "undo acted; this kind cannot verify",
                        serde_json::Value::Null,
                    ));
                }
                Ok(Check::NotYet(e)) if Instant::now() >= deadline => break Err(e),
                Err(err) if !err.is_retryable() || Instant::now() >= deadline => {
                    break Err(error_evidence(&err));
                }
                _ => {}
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = controls.stop.cancelled() => return Ok(UndoEnd::Stopped),
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        };
        match verified {
            Ok(e) => {
                self.transition(
                    state,
                    name,
                    StepStatus::Undone,
                    "undone",
                    format!("undone: {}", e.summary),
                    Some(&e),
                )?;
                Ok(UndoEnd::Undone(e.summary))
            }
            Err(e) => {
                let summary = format!(
                    "undo not verified within {}: {}",
                    describe::duration(timeout),
                    e.summary
                );
                self.transition(
                    state,
                    name,
                    StepStatus::Failed,
                    "failed",
                    summary.clone(),
                    Some(&e),
                )?;
                Ok(UndoEnd::Failed {
                    summary,
                    for_good: false,
                })
            }
        }
    }

    fn undo_finished(&self, step: &str, outcome: StepOutcome, summary: &str) {
        self.reporter.event(&RunEvent::StepFinished {
            step: step.to_owned(),
            outcome,
            summary: summary.to_owned(),
            changed: None,
            eta: Duration::ZERO,
        });
    }

    fn transition(
        &self,
        state: &SharedState,
        step: &str,
        status: StepStatus,
        event_kind: &str,
        message: String,
        evidence: Option<&Evidence>,
    ) -> anyhow::Result<()> {
        state.transition(&Transition {
            step,
            status,
            phase: Some(Phase::Undo),
            new_attempt: false,
            event_kind,
            message,
            evidence: evidence.map(|e| (Phase::Undo, e.summary.clone(), e.data.clone())),
        })
    }
}

/// How one undo ended.
enum UndoEnd {
    Undone(String),
    /// `for_good`: a fatal error, which another attempt meets again.
    Failed {
        summary: String,
        for_good: bool,
    },
    Stopped,
}
