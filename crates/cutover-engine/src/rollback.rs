//! Rollback: the `undo` of done steps, newest first, each checked, acted,
//! verified and recorded like a step. Steps that change nothing (port and
//! HTTP checks, waits) need no undo; a step that changed something but has
//! no `undo` line is reported and left as it is — the coordinator decides.

use crate::kind::{ActionRole, Check, Evidence};
use crate::report::{RunEvent, StepOutcome};
use crate::runner::error_evidence;
use crate::{Controls, Engine, SharedState, describe};
use cutover_lang::{ActionKind, StepId};
use cutover_store::{Phase, RunStatus, StepStatus, Transition};
use std::time::{Duration, Instant};

/// How a rollback ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// Every step in scope was undone (or needed no undo). `left` names
    /// steps that changed something but have no `undo` line.
    Completed {
        undone: Vec<String>,
        left: Vec<String>,
    },
    /// An undo failed; the rollback stopped there.
    Failed { step: String },
    /// Stopped by Ctrl-C; run rollback again to go on.
    Stopped,
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

impl Engine<'_> {
    /// Undoes the done steps finished after `to` (all done steps when
    /// `to` is None), newest first.
    pub async fn rollback(
        &self,
        state: &SharedState,
        to: Option<StepId>,
        controls: &Controls,
    ) -> anyhow::Result<RollbackOutcome> {
        state.register_secrets(self.runbook, &self.options.runbook_dir);
        let t0 = state.run_record()?.t0;
        let records = state.store().steps(state.run_id())?;
        let since = match to {
            Some(to) => {
                let name = &self.runbook.step(to).name;
                let record = records.iter().find(|r| &r.name == name);
                match record {
                    Some(r) if r.status == StepStatus::Done => r.finished_at,
                    _ => anyhow::bail!(
                        "--to {name}: that step is not done, so there is nothing to roll back to"
                    ),
                }
            }
            None => None,
        };
        let mut todo: Vec<_> = records
            .iter()
            .filter(|r| {
                r.status == StepStatus::Done
                    || (r.status == StepStatus::Running && r.phase == Some(Phase::Undo))
            })
            .filter(|r| since.is_none_or(|since| r.finished_at.is_none_or(|f| f > since)))
            .filter(|r| to.is_none_or(|to| self.runbook.step(to).name != r.name))
            .filter_map(|r| {
                self.runbook
                    .step_by_name(&r.name)
                    .map(|id| (r.finished_at, id))
            })
            .collect();
        todo.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));

        let mut undone = Vec::new();
        let mut left = Vec::new();
        for (_, id) in todo {
            if controls.is_stopped() {
                return Ok(RollbackOutcome::Stopped);
            }
            let step = self.runbook.step(id);
            let name = step.name.as_str();
            let Some(undo) = &step.undo else {
                if changes_nothing(&step.action.kind) {
                    let e = Evidence::new("nothing to undo", serde_json::Value::Null);
                    self.transition(
                        state,
                        name,
                        StepStatus::Undone,
                        "undone",
                        "nothing to undo".into(),
                        Some(&e),
                    )?;
                    self.reporter.event(&RunEvent::StepFinished {
                        step: name.to_owned(),
                        outcome: StepOutcome::Undone,
                        summary: e.summary,
                        eta: Duration::ZERO,
                    });
                    undone.push(name.to_owned());
                } else {
                    let text = format!("step `{name}` has no undo line: left as it is");
                    state.append_event(Some(name), "deviation", &text, None)?;
                    self.reporter.event(&RunEvent::Warning { text });
                    left.push(name.to_owned());
                }
                continue;
            };
            self.reporter.event(&RunEvent::StepStarted {
                step: name.to_owned(),
            });
            self.reporter.event(&RunEvent::Phase {
                step: name.to_owned(),
                phase: Phase::Undo,
            });
            let kind = self.kinds.kind_for(&undo.kind)?;
            let cancel = controls.abort.clone();
            let ctx = self.context(state, id, undo, ActionRole::Undo, t0, cancel.clone());
            if let Ok(Check::Satisfied(e)) = kind.check(&ctx).await {
                self.transition(
                    state,
                    name,
                    StepStatus::Undone,
                    "undone",
                    format!("undo already satisfied: {}", e.summary),
                    Some(&e),
                )?;
                self.reporter.event(&RunEvent::StepFinished {
                    step: name.to_owned(),
                    outcome: StepOutcome::Undone,
                    summary: e.summary,
                    eta: Duration::ZERO,
                });
                undone.push(name.to_owned());
                continue;
            }
            state.transition(&Transition {
                step: name,
                status: StepStatus::Running,
                phase: Some(Phase::Undo),
                new_attempt: false,
                event_kind: "phase",
                message: format!("undoing: {}", describe::action(self.runbook, &undo.kind)),
                evidence: None,
            })?;
            let acted = kind.act(&ctx).await;
            if cancel.is_cancelled() {
                return Ok(RollbackOutcome::Stopped);
            }
            if let Err(err) = acted {
                let e = error_evidence(&err);
                self.transition(
                    state,
                    name,
                    StepStatus::Failed,
                    "failed",
                    format!("undo failed: {}", e.summary),
                    Some(&e),
                )?;
                self.reporter.event(&RunEvent::StepFinished {
                    step: name.to_owned(),
                    outcome: StepOutcome::Failed,
                    summary: e.summary,
                    eta: Duration::ZERO,
                });
                return Ok(RollbackOutcome::Failed {
                    step: name.to_owned(),
                });
            }
            let timeout = step.timeout.unwrap_or(self.options.default_timeout);
            let deadline = Instant::now() + timeout;
            let mut pause = Duration::from_millis(50);
            let verified = loop {
                let seen = kind.verify(&ctx).await;
                match seen {
                    Ok(Check::Satisfied(e)) => break Ok(e),
                    Ok(Check::Unobservable) => {
                        break Ok(Evidence::new(
                            "undo acted; this kind cannot verify",
                            serde_json::Value::Null,
                        ));
                    }
                    Ok(Check::NotYet(e)) if Instant::now() >= deadline => break Err(e),
                    Err(err) if Instant::now() >= deadline => break Err(error_evidence(&err)),
                    _ => {}
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = controls.stop.cancelled() => return Ok(RollbackOutcome::Stopped),
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
                    self.reporter.event(&RunEvent::StepFinished {
                        step: name.to_owned(),
                        outcome: StepOutcome::Undone,
                        summary: e.summary,
                        eta: Duration::ZERO,
                    });
                    undone.push(name.to_owned());
                }
                Err(e) => {
                    self.transition(
                        state,
                        name,
                        StepStatus::Failed,
                        "failed",
                        format!("undo not verified: {}", e.summary),
                        Some(&e),
                    )?;
                    self.reporter.event(&RunEvent::StepFinished {
                        step: name.to_owned(),
                        outcome: StepOutcome::Failed,
                        summary: e.summary,
                        eta: Duration::ZERO,
                    });
                    return Ok(RollbackOutcome::Failed {
                        step: name.to_owned(),
                    });
                }
            }
        }
        if to.is_none() {
            state
                .store()
                .set_run_status(state.run_id(), RunStatus::RolledBack)?;
        }
        Ok(RollbackOutcome::Completed { undone, left })
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
