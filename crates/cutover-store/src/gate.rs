//! Confirming a manual gate from another terminal: the confirmation is
//! recorded only when it can mean what the person means — the gate is
//! waiting for it now, or (asked for explicitly) it is given ahead for a
//! step the run has not reached yet.

use crate::{LockHolder, Phase, Result, RunStatus, StepStatus, Store, StoreError, rows};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// A confirmation [`Store::confirm_gate`] recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateConfirmed {
    pub step: String,
    /// The step's status when it was confirmed (`running` for a waiting
    /// gate).
    pub status: StepStatus,
    pub phase: Option<Phase>,
    /// Recorded as given ahead: the gate was not waiting for it.
    pub ahead: bool,
    /// The holder of the coordinator lock, if any.
    pub coordinator: Option<LockHolder>,
    /// Whether that holder is alive (not stale; a holder on another host
    /// counts as alive). False without a holder.
    pub coordinator_alive: bool,
    pub at: DateTime<Utc>,
}

/// Why [`Store::confirm_gate`] recorded nothing (inside
/// [`StoreError::GateRefused`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum GateRefusal {
    /// The run has no step of that name.
    NoStep,
    /// The run is over (completed or rolled back): no gate will wait again.
    RunFinished { status: RunStatus },
    /// The step is done, skipped or undone: its gate will not wait again.
    StepFinished { status: StepStatus },
    /// The gate is not waiting: the step is not in its act phase, or no
    /// live coordinator drives the run. Without `ahead`, any such step is
    /// refused; with it, only a step past its gate (verifying, undoing).
    NotWaiting {
        status: StepStatus,
        phase: Option<Phase>,
        coordinator: Option<LockHolder>,
        coordinator_alive: bool,
    },
}

impl std::fmt::Display for GateRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GateRefusal::NoStep => f.write_str("the run has no step of that name"),
            GateRefusal::RunFinished { status } => {
                write!(f, "the run is finished ({})", status.as_str())
            }
            GateRefusal::StepFinished { status } => {
                write!(f, "the step is already {}", status.as_str())
            }
            GateRefusal::NotWaiting {
                status,
                phase,
                coordinator,
                coordinator_alive,
            } => {
                f.write_str("its gate is not waiting: the step is ")?;
                match (status, phase) {
                    (StepStatus::Pending, _) => f.write_str("pending (not reached yet)")?,
                    (StepStatus::Running, Some(Phase::Verify)) => {
                        f.write_str("past its gate (verifying)")?;
                    }
                    (StepStatus::Running, Some(Phase::Undo)) => {
                        f.write_str("being undone")?;
                    }
                    (status, Some(phase)) => {
                        write!(f, "{} (phase {})", status.as_str(), phase.as_str())?;
                    }
                    (status, None) => f.write_str(status.as_str())?,
                }
                match (coordinator, coordinator_alive) {
                    (None, _) => f.write_str("; no coordinator is running the run"),
                    (Some(holder), false) => write!(
                        f,
                        "; the coordinator {holder} is gone (its process is no longer running)"
                    ),
                    (Some(holder), true) => write!(f, "; the coordinator is {holder}"),
                }
            }
        }
    }
}

impl Store {
    /// Confirms the manual gate `step` of `run` for `user` (from another
    /// terminal), in one IMMEDIATE transaction so that what is checked is
    /// what is recorded.
    ///
    /// Recorded (`ahead` = false) when the gate waits: the step is running
    /// in phase act and a live coordinator holds the lock. Otherwise
    /// refused with [`StoreError::GateRefused`] — unless `ahead` is set and
    /// the step has not reached its gate (pending, failed, or caught in
    /// act with no live coordinator): then it is recorded with `ahead` =
    /// true. A finished run or a done, skipped or undone step is refused
    /// either way.
    pub fn confirm_gate(
        &self,
        run: i64,
        step: &str,
        user: &str,
        note: Option<&str>,
        ahead: bool,
    ) -> Result<GateConfirmed> {
        let refused = |refusal| StoreError::GateRefused {
            step: step.to_owned(),
            refusal: Box::new(refusal),
        };
        let outcome = self.sql(|c| {
            let tx = crate::write_transaction(c)?;
            let Some(run_status) = tx
                .query_row("SELECT status FROM runs WHERE id = ?1", [run], |r| {
                    r.get::<_, String>(0)
                })
                .optional()?
            else {
                return Ok(Err(None));
            };
            let Some((status, phase)) = tx
                .query_row(
                    "SELECT status, phase FROM steps WHERE run_id = ?1 AND name = ?2",
                    params![run, step],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
                )
                .optional()?
            else {
                return Ok(Err(Some(GateRefusal::NoStep)));
            };
            let run_status = RunStatus::parse(&run_status).ok_or_else(|| bad(&run_status))?;
            let status = StepStatus::parse(&status).ok_or_else(|| bad(&status))?;
            let phase = match phase {
                Some(p) => Some(Phase::parse(&p).ok_or_else(|| bad(&p))?),
                None => None,
            };
            let coordinator = rows::lock_holder(&tx)?;
            let coordinator_alive = coordinator.as_ref().is_some_and(|h| !h.is_stale());

            if matches!(run_status, RunStatus::Completed | RunStatus::RolledBack) {
                return Ok(Err(Some(GateRefusal::RunFinished { status: run_status })));
            }
            if matches!(
                status,
                StepStatus::Done | StepStatus::Skipped | StepStatus::Undone
            ) {
                return Ok(Err(Some(GateRefusal::StepFinished { status })));
            }
            let in_act = status == StepStatus::Running && phase == Some(Phase::Act);
            let waiting = in_act && coordinator_alive;
            let not_reached = match status {
                StepStatus::Pending | StepStatus::Failed => true,
                StepStatus::Running => matches!(phase, None | Some(Phase::Check | Phase::Act)),
                StepStatus::Done | StepStatus::Skipped | StepStatus::Undone => false,
            };
            if !(waiting || ahead && not_reached) {
                return Ok(Err(Some(GateRefusal::NotWaiting {
                    status,
                    phase,
                    coordinator,
                    coordinator_alive,
                })));
            }
            let recorded_ahead = !waiting;
            let at = Utc::now();
            tx.execute(
                "INSERT INTO confirmations (run_id, step, user, note, at, ahead)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run, step, user, note, at, recorded_ahead],
            )?;
            let by = if recorded_ahead {
                format!("confirmed ahead by {user} (before its gate waited)")
            } else {
                format!("confirmed by {user}")
            };
            let message = match note {
                Some(note) => format!("{by}: {note}"),
                None => by,
            };
            tx.execute(
                "INSERT INTO events (run_id, at, step, kind, message) VALUES (?1, ?2, ?3, 'confirmed', ?4)",
                params![run, at, step, message],
            )?;
            tx.commit()?;
            Ok(Ok(GateConfirmed {
                step: step.to_owned(),
                status,
                phase,
                ahead: recorded_ahead,
                coordinator,
                coordinator_alive,
                at,
            }))
        })?;
        match outcome {
            Ok(confirmed) => Ok(confirmed),
            Err(Some(refusal)) => Err(refused(refusal)),
            Err(None) => Err(StoreError::Invalid(format!(
                "state file {} has no run {run}",
                self.path.display()
            ))),
        }
    }
}

fn bad(text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown value `{text}`").into(),
    )
}
