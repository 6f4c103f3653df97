//! The scheduler and the step lifecycle (see the crate docs).

use crate::kind::{
    ActionRole, Check, Evidence, Interrupted, KindRegistry, StepContext, StepError, StepKind,
};
use crate::report::{Decision, Prompter, Recap, Reporter, RunEvent, StepOutcome};
use crate::state::plan_t0;
use crate::{Controls, RunOptions, SharedState, describe};
use chrono::{DateTime, Utc};
use cutover_lang::{Action, Runbook, StepId};
use cutover_plan::Plan;
use cutover_store::{Phase, RunStatus, StepStatus, Transition};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How a run (or resume) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every selected step is done or skipped.
    Completed,
    /// Stopped on request (Ctrl-C, "stop" in `--step` mode); resumable.
    Stopped,
    /// A step failed after all its attempts.
    Failed { step: String },
    /// A step depends on a skipped step and was neither skipped nor forced.
    Blocked { step: String, skipped: String },
    /// `--only`: a step it depends on is not done.
    NotReady { step: String, missing: String },
}

/// Runs a runbook against its state.
pub struct Engine<'a> {
    pub runbook: &'a Runbook,
    pub kinds: &'a dyn KindRegistry,
    pub reporter: &'a dyn Reporter,
    pub prompter: &'a dyn Prompter,
    pub options: &'a RunOptions,
}

/// How one step ended in this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepEnd {
    Done,
    Skipped,
    Failed,
    /// Stopped before or between phases (Ctrl-C, "stop"); resumable.
    Stopped,
}

const FIRST_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_secs(2);

/// The outcome of observing a step (its kind and its `verify` lines).
enum Observed {
    Satisfied(Evidence),
    NotYet(Evidence),
    Unobservable,
    /// A fatal error: no observation can succeed (waiting is pointless).
    Fatal(Evidence),
}

/// When a step is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Observing {
    /// The check before acting: the act runs next unless it is satisfied.
    BeforeAct,
    /// The verification after acting.
    AfterAct,
    /// A done step re-checked on resume: nothing acts after it.
    Recheck,
}

/// A failed observation as what was seen: fatal, interrupted, or not yet.
fn observed_error(err: StepError) -> anyhow::Result<Observed> {
    match err {
        StepError::Interrupted => Err(Interrupted.into()),
        StepError::Fatal { .. } => Ok(Observed::Fatal(error_evidence(&err))),
        StepError::Retryable { .. } => Ok(Observed::NotYet(error_evidence(&err))),
    }
}

impl<'a> Engine<'a> {
    #[allow(clippy::too_many_arguments)] // one argument per field a kind sees
    pub(crate) fn context<'s>(
        &'s self,
        state: &'s SharedState,
        step: StepId,
        action: &'s Action,
        role: ActionRole,
        t0: Option<DateTime<Utc>>,
        cancel: CancellationToken,
        stopping: CancellationToken,
    ) -> StepContext<'s> {
        StepContext {
            runbook: self.runbook,
            step,
            action,
            role,
            t0,
            options: self.options,
            cancel,
            stopping,
            prompter: self.prompter,
            reporter: self.reporter,
            state,
            act_follows: false,
        }
    }

    fn name(&self, id: StepId) -> &'a str {
        &self.runbook.step(id).name
    }

    /// Observes a step: its kind's `check` (or `verify`), then each of its
    /// `verify` lines' checks. Errors count as "not yet", with the error as
    /// evidence; cancellation is returned as an error. `when` says whether
    /// an act follows this observation or has just run.
    async fn observe(
        &self,
        state: &SharedState,
        id: StepId,
        t0: Option<DateTime<Utc>>,
        cancel: &CancellationToken,
        when: Observing,
    ) -> anyhow::Result<Observed> {
        let step = self.runbook.step(id);
        let kind = self.kinds.kind_for(&step.action.kind)?;
        let mut ctx = self.context(
            state,
            id,
            &step.action,
            ActionRole::Main,
            t0,
            cancel.clone(),
            cancel.clone(),
        );
        ctx.act_follows = when == Observing::BeforeAct;
        let main = if when == Observing::AfterAct {
            kind.verify(&ctx).await
        } else {
            kind.check(&ctx).await
        };
        if cancel.is_cancelled() {
            anyhow::bail!("interrupted");
        }
        let main = match main {
            Ok(Check::NotYet(e)) => return Ok(Observed::NotYet(e)),
            Err(err) => return observed_error(err),
            Ok(Check::Satisfied(e)) => Some(e),
            Ok(Check::Unobservable) => None,
        };
        if step.verify.is_empty() {
            return Ok(main.map_or(Observed::Unobservable, Observed::Satisfied));
        }
        let mut summaries: Vec<String> = main.iter().map(|e| e.summary.clone()).collect();
        let mut lines = Vec::new();
        for line in &step.verify {
            let line_kind = self.kinds.kind_for(&line.kind)?;
            let ctx = self.context(
                state,
                id,
                line,
                ActionRole::Verify,
                t0,
                cancel.clone(),
                cancel.clone(),
            );
            match line_kind.check(&ctx).await {
                Ok(Check::Satisfied(e)) => {
                    summaries.push(e.summary);
                    lines.push(e.data);
                }
                Ok(Check::NotYet(e)) => return Ok(Observed::NotYet(e)),
                Ok(Check::Unobservable) => {}
                Err(err) => return observed_error(err),
            }
            if cancel.is_cancelled() {
                anyhow::bail!("interrupted");
            }
        }
        Ok(Observed::Satisfied(Evidence::new(
            summaries.join("; "),
            serde_json::json!({
                "kind": main.map(|e| e.data),
                "verify": lines,
            }),
        )))
    }

    #[allow(clippy::too_many_arguments)] // one argument per column of a transition
    fn commit(
        &self,
        state: &SharedState,
        id: StepId,
        status: StepStatus,
        phase: Option<Phase>,
        new_attempt: bool,
        event_kind: &str,
        message: String,
        evidence: Option<(Phase, &Evidence)>,
    ) -> anyhow::Result<()> {
        state.transition(&Transition {
            step: self.name(id),
            status,
            phase,
            new_attempt,
            event_kind,
            message,
            evidence: evidence.map(|(p, e)| (p, e.summary.clone(), e.data.clone())),
        })
    }

    fn finished(&self, id: StepId, outcome: StepOutcome, summary: &str, eta: Duration) {
        self.reporter.event(&RunEvent::StepFinished {
            step: self.name(id).to_owned(),
            outcome,
            summary: summary.to_owned(),
            changed: None,
            eta,
        });
    }

    /// A step acted and is done: [`RunEvent::StepFinished`] with what it
    /// changed, from its act's evidence (committed, so also after a resume
    /// caught it verifying) and `end`, its final observation.
    fn changed(
        &self,
        state: &SharedState,
        id: StepId,
        outcome: StepOutcome,
        end: &Evidence,
        eta: Duration,
    ) {
        let act = state
            .evidence_of(self.name(id), Phase::Act)
            .ok()
            .flatten()
            .map(|r| Evidence::new(r.summary, r.data));
        let step = self.runbook.step(id);
        self.reporter.event(&RunEvent::StepFinished {
            step: step.name.clone(),
            outcome,
            summary: end.summary.clone(),
            changed: Some(crate::changed::what_changed(step, act.as_ref(), end)),
            eta,
        });
    }

    /// The whole lifecycle of one step. `resume_phase` is the phase it was
    /// caught in by a crash or stop, if any.
    async fn run_step(
        &self,
        state: &SharedState,
        id: StepId,
        t0: Option<DateTime<Utc>>,
        resume_phase: Option<Phase>,
        controls: &Controls,
        eta: Duration,
    ) -> anyhow::Result<StepEnd> {
        let step = self.runbook.step(id);
        let name = self.name(id);
        let kind: &dyn StepKind = self.kinds.kind_for(&step.action.kind)?;
        let check_cancel = controls.abort.clone();
        let mut resume_verify = resume_phase == Some(Phase::Verify);

        // `--step`: the check comes first (it has no side effects), so the
        // question shows what holds now; a step already satisfied is not
        // asked about. The question comes before the step starts.
        let mut checked = None;
        if self.options.step_mode {
            if !resume_verify {
                checked = Some(
                    self.observe(state, id, t0, &check_cancel, Observing::BeforeAct)
                        .await,
                );
            }
            if !matches!(checked, Some(Ok(Observed::Satisfied(_)))) {
                let mut what = describe::step(self.runbook, step);
                if let Some(Ok(Observed::NotYet(e))) = &checked {
                    what.push_str("\n  # now: ");
                    what.push_str(&e.summary);
                }
                let decision = tokio::select! {
                    d = self.prompter.before_step(step, &what) => d,
                    () = controls.stop.cancelled() => Decision::Stop,
                };
                match decision {
                    Decision::Run => {}
                    Decision::Skip => {
                        self.commit(
                            state,
                            id,
                            StepStatus::Skipped,
                            None,
                            false,
                            "deviation",
                            "skipped at the prompt".into(),
                            None,
                        )?;
                        self.finished(id, StepOutcome::Skipped, "skipped at the prompt", eta);
                        return Ok(StepEnd::Skipped);
                    }
                    Decision::Stop => {
                        self.finished(id, StepOutcome::Interrupted, "stopped before it ran", eta);
                        return Ok(StepEnd::Stopped);
                    }
                }
            }
        }
        self.reporter.event(&RunEvent::StepStarted {
            step: name.to_owned(),
        });

        // Check: is it already true? (Also how a step caught mid-act resumes.)
        self.reporter.event(&RunEvent::Phase {
            step: name.to_owned(),
            phase: Phase::Check,
        });
        if !resume_verify {
            let observed = match checked {
                Some(observed) => observed,
                None => {
                    self.observe(state, id, t0, &check_cancel, Observing::BeforeAct)
                        .await
                }
            };
            match observed {
                Ok(Observed::Satisfied(e)) => {
                    self.commit(
                        state,
                        id,
                        StepStatus::Done,
                        Some(Phase::Check),
                        false,
                        "done",
                        format!("already satisfied: {}", e.summary),
                        Some((Phase::Check, &e)),
                    )?;
                    self.finished(id, StepOutcome::AlreadySatisfied, &e.summary, eta);
                    return Ok(StepEnd::Done);
                }
                Ok(Observed::Fatal(e)) => {
                    return self.fail_fatal(state, id, Phase::Check, "cannot run", &e, eta);
                }
                Ok(_) => {}
                Err(_) if controls.abort.is_cancelled() => return Ok(self.interrupted(id, eta)),
                Err(err) => return Err(err),
            }
        }

        let attempts = step.retry + 1;
        let timeout = step.timeout.unwrap_or(self.options.default_timeout);
        for attempt in 1..=attempts {
            if controls.stop.is_cancelled() {
                return Ok(self.interrupted(id, eta));
            }
            if !resume_verify {
                // Intent before the side effect.
                self.commit(
                    state,
                    id,
                    StepStatus::Running,
                    Some(Phase::Act),
                    true,
                    "phase",
                    format!("acting (attempt {attempt} of {attempts})"),
                    None,
                )?;
                self.reporter.event(&RunEvent::Phase {
                    step: name.to_owned(),
                    phase: Phase::Act,
                });
                let act_cancel = if kind.interruptible() {
                    controls.stop.clone()
                } else {
                    controls.abort.clone()
                };
                let ctx = self.context(
                    state,
                    id,
                    &step.action,
                    ActionRole::Main,
                    t0,
                    act_cancel.clone(),
                    controls.stop.clone(),
                );
                let acted = kind.act(&ctx).await;
                if act_cancel.is_cancelled() {
                    return Ok(self.interrupted(id, eta));
                }
                // A kind that stopped at a safe point on a stop request
                // (a countdown before its change) did not fail: the intent
                // stays committed and a resume checks, then acts.
                if matches!(&acted, Err(StepError::Interrupted)) && controls.stop.is_cancelled() {
                    return Ok(self.interrupted(id, eta));
                }
                match acted {
                    Ok(e) => {
                        self.commit(
                            state,
                            id,
                            StepStatus::Running,
                            Some(Phase::Verify),
                            false,
                            "phase",
                            format!("acted: {}", e.summary),
                            Some((Phase::Act, &e)),
                        )?;
                    }
                    Err(err) => {
                        let e = error_evidence(&err);
                        self.commit(
                            state,
                            id,
                            StepStatus::Failed,
                            Some(Phase::Act),
                            false,
                            "failed",
                            format!("act failed: {}", e.summary),
                            Some((Phase::Act, &e)),
                        )?;
                        if err.is_retryable() {
                            self.finished(id, StepOutcome::AttemptFailed, &e.summary, eta);
                            continue;
                        }
                        // Another attempt would fail the same way.
                        self.finished(id, StepOutcome::Failed, &e.summary, eta);
                        return Ok(StepEnd::Failed);
                    }
                }
                if controls.stop.is_cancelled() {
                    return Ok(self.interrupted(id, eta));
                }
            }
            resume_verify = false;

            self.reporter.event(&RunEvent::Phase {
                step: name.to_owned(),
                phase: Phase::Verify,
            });
            let verify_cancel = controls.stop.clone();
            let deadline = Instant::now() + timeout;
            let mut pause = FIRST_POLL;
            let last = loop {
                match self
                    .observe(state, id, t0, &verify_cancel, Observing::AfterAct)
                    .await
                {
                    Ok(Observed::Satisfied(e)) => {
                        self.commit(
                            state,
                            id,
                            StepStatus::Done,
                            Some(Phase::Verify),
                            false,
                            "done",
                            format!("verified: {}", e.summary),
                            Some((Phase::Verify, &e)),
                        )?;
                        self.changed(state, id, StepOutcome::Verified, &e, eta);
                        return Ok(StepEnd::Done);
                    }
                    Ok(Observed::Unobservable) => {
                        let e = Evidence::new(
                            "acted; this kind cannot verify",
                            serde_json::Value::Null,
                        );
                        self.commit(
                            state,
                            id,
                            StepStatus::Done,
                            Some(Phase::Verify),
                            false,
                            "done",
                            "done, unverified (no verify line)".into(),
                            Some((Phase::Verify, &e)),
                        )?;
                        self.changed(state, id, StepOutcome::Unverified, &e, eta);
                        return Ok(StepEnd::Done);
                    }
                    Ok(Observed::Fatal(e)) => {
                        return self.fail_fatal(
                            state,
                            id,
                            Phase::Verify,
                            "cannot be verified",
                            &e,
                            eta,
                        );
                    }
                    Ok(Observed::NotYet(e)) if Instant::now() >= deadline => break e,
                    Ok(Observed::NotYet(_)) => {}
                    Err(_) if verify_cancel.is_cancelled() => return Ok(self.interrupted(id, eta)),
                    Err(err) => return Err(err),
                }
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::select! {
                    () = tokio::time::sleep(pause.min(left)) => {}
                    () = verify_cancel.cancelled() => return Ok(self.interrupted(id, eta)),
                }
                pause = (pause * 2).min(MAX_POLL);
            };
            let message = format!(
                "not verified within {}: {}",
                describe::duration(timeout),
                last.summary
            );
            self.commit(
                state,
                id,
                StepStatus::Failed,
                Some(Phase::Verify),
                false,
                "failed",
                message.clone(),
                Some((Phase::Verify, &last)),
            )?;
            self.finished(id, StepOutcome::AttemptFailed, &message, eta);
        }
        self.finished(
            id,
            StepOutcome::Failed,
            &format!("failed after {attempts} attempt(s)"),
            eta,
        );
        Ok(StepEnd::Failed)
    }

    /// Fails the step at once after a fatal observation in `phase`: no
    /// further attempt or polling can pass.
    fn fail_fatal(
        &self,
        state: &SharedState,
        id: StepId,
        phase: Phase,
        what: &str,
        e: &Evidence,
        eta: Duration,
    ) -> anyhow::Result<StepEnd> {
        let message = format!("{what}: {}", e.summary);
        self.commit(
            state,
            id,
            StepStatus::Failed,
            Some(phase),
            false,
            "failed",
            message.clone(),
            Some((phase, e)),
        )?;
        self.finished(id, StepOutcome::Failed, &message, eta);
        Ok(StepEnd::Failed)
    }

    fn interrupted(&self, id: StepId, eta: Duration) -> StepEnd {
        self.finished(id, StepOutcome::Interrupted, "interrupted; resumable", eta);
        StepEnd::Stopped
    }

    /// The steps this run covers: all, `--until` and its dependencies, or `--only`.
    fn selection(&self) -> Vec<bool> {
        let n = self.runbook.steps.len();
        if let Some(only) = self.options.only {
            let mut selected = vec![false; n];
            selected[only.0] = true;
            return selected;
        }
        let Some(until) = self.options.until else {
            return vec![true; n];
        };
        let mut selected = vec![false; n];
        let mut todo = vec![until];
        while let Some(id) = todo.pop() {
            if !std::mem::replace(&mut selected[id.0], true) {
                todo.extend(self.runbook.step(id).after.iter().copied());
            }
        }
        selected
    }

    /// Time left until the end the plan heads for from here
    /// ([`Plan::end_from`]); steps not selected count as done.
    fn eta(
        &self,
        plan: &Plan,
        statuses: &[StepStatus],
        selected: &[bool],
        t0: Option<DateTime<Utc>>,
    ) -> Duration {
        let now = Utc::now();
        let done: Vec<bool> = statuses
            .iter()
            .zip(selected)
            .map(|(s, sel)| !sel || matches!(s, StepStatus::Done | StepStatus::Skipped))
            .collect();
        let now_offset = (now - plan_t0(plan, t0).unwrap_or(now)).num_milliseconds();
        let left = plan.end_from(self.runbook, &done, now_offset) - now_offset;
        Duration::from_millis(u64::try_from(left).unwrap_or(0))
    }

    /// Runs (or resumes) the run in `state` until every selected step is
    /// done or skipped, a step fails or is blocked, or `controls` stop it.
    ///
    /// The scheduler is incremental: each step keeps a count of the
    /// dependencies it still waits for, a finished step releases its
    /// dependents, steps whose `at` lies ahead wait in a timer heap, and
    /// the ready set is ordered by source position, so the cost per event
    /// does not grow with the number of steps.
    pub async fn run(
        &self,
        state: &SharedState,
        controls: &Controls,
    ) -> anyhow::Result<RunOutcome> {
        state.register_secrets(self.runbook, &self.options.runbook_dir);
        let run = state.run_record()?;
        let t0 = run.t0;
        let n = self.runbook.steps.len();
        for step in &self.runbook.steps {
            if step.at.is_some_and(|at| at.instant(t0).is_none()) {
                anyhow::bail!(
                    "step `{}` starts at a time relative to T0, but the runbook has no window and the run no T0; start it with --t0 now|TIME",
                    step.name
                );
            }
        }
        let records = state.store().steps(state.run_id())?;
        let mut statuses = vec![StepStatus::Pending; n];
        let mut phases: Vec<Option<Phase>> = vec![None; n];
        let by_name = self.runbook.steps_by_name();
        for record in records {
            if let Some(&id) = by_name.get(record.name.as_str()) {
                statuses[id.0] = record.status;
                phases[id.0] = record.phase;
            }
        }
        state
            .store()
            .set_run_status(state.run_id(), RunStatus::Running)?;
        let selected = self.selection();

        // Explicit skips.
        for &id in &self.options.skip {
            match statuses[id.0] {
                StepStatus::Done => self.reporter.event(&RunEvent::Warning {
                    text: format!("step `{}` is already done; not skipped", self.name(id)),
                }),
                StepStatus::Skipped => {}
                _ => {
                    self.commit(
                        state,
                        id,
                        StepStatus::Skipped,
                        None,
                        false,
                        "deviation",
                        "skipped by --skip".into(),
                        None,
                    )?;
                    statuses[id.0] = StepStatus::Skipped;
                }
            }
        }

        // --only: the step's dependencies must be done (or skipped).
        if let Some(only) = self.options.only {
            for dep in &self.runbook.step(only).after {
                if !finished(statuses[dep.0]) {
                    return self.end(
                        state,
                        RunOutcome::NotReady {
                            step: self.name(only).to_owned(),
                            missing: self.name(*dep).to_owned(),
                        },
                    );
                }
            }
        }

        let plan = cutover_plan::plan(self.runbook, None);
        let total = selected.iter().filter(|s| **s).count();
        let mut done_count = statuses
            .iter()
            .zip(&selected)
            .filter(|(s, sel)| **sel && finished(**s))
            .count();
        self.reporter.event(&RunEvent::Started {
            total,
            done: done_count,
            eta: self.eta(&plan, &statuses, &selected, t0),
        });

        // Resume: re-check done steps against the live world.
        self.recheck_done(state, &statuses, &selected, t0, controls)
            .await?;

        let parallel = if self.options.step_mode {
            1
        } else {
            self.options.parallel.max(1)
        };
        let mut sched = Schedule::new(self, &statuses, &selected, t0);
        let mut ran = vec![false; n];
        let mut running = FuturesUnordered::new();
        let mut halt: Option<RunOutcome> = None;
        let mut stop_seen = false;
        // The ETA is recomputed at most once a second: it walks every step.
        let mut eta = (Instant::now(), self.eta(&plan, &statuses, &selected, t0));
        loop {
            if eta.0.elapsed() >= Duration::from_secs(1) {
                eta = (Instant::now(), self.eta(&plan, &statuses, &selected, t0));
            }
            sched.release_due(Utc::now());
            while halt.is_none() && !controls.stop.is_cancelled() && running.len() < parallel {
                let Some(i) = sched.ready.pop_first() else {
                    break;
                };
                let id = StepId(i);
                let step = self.runbook.step(id);
                let mut forced = self.options.force.contains(&id);
                if let Some(skipped) = sched.blocked_by[i] {
                    // `--step` asks; otherwise the run stops before it.
                    let decision = if self.options.step_mode {
                        tokio::select! {
                            d = self.prompter.after_skip(step, self.runbook.step(skipped)) => d,
                            () = controls.stop.cancelled() => Decision::Stop,
                        }
                    } else {
                        Decision::Stop
                    };
                    match decision {
                        Decision::Run => forced = true,
                        Decision::Skip => {
                            let text = format!(
                                "skipped at the prompt: `{}` was skipped",
                                self.name(skipped)
                            );
                            self.commit(
                                state,
                                id,
                                StepStatus::Skipped,
                                None,
                                false,
                                "deviation",
                                text.clone(),
                                None,
                            )?;
                            self.finished(id, StepOutcome::Skipped, &text, eta.1);
                            statuses[i] = StepStatus::Skipped;
                            done_count += 1;
                            sched.finished(self, id, StepStatus::Skipped, &statuses);
                            continue;
                        }
                        Decision::Stop => {
                            halt = Some(RunOutcome::Blocked {
                                step: step.name.clone(),
                                skipped: self.name(skipped).to_owned(),
                            });
                            break;
                        }
                    }
                }
                if forced {
                    for dep in step
                        .after
                        .iter()
                        .filter(|d| statuses[d.0] == StepStatus::Skipped)
                    {
                        state.append_event(
                            Some(&step.name),
                            "deviation",
                            &format!(
                                "run {} although `{}` was skipped",
                                if self.options.force.contains(&id) {
                                    "by --force"
                                } else {
                                    "at the prompt"
                                },
                                self.name(*dep)
                            ),
                            None,
                        )?;
                    }
                }
                let resume_phase = (statuses[i] == StepStatus::Running)
                    .then_some(phases[i])
                    .flatten();
                let eta = eta.1;
                running.push(async move {
                    (
                        id,
                        self.run_step(state, id, t0, resume_phase, controls, eta)
                            .await,
                    )
                });
            }

            if running.is_empty() {
                if let Some(outcome) = halt {
                    return self.end(state, outcome);
                }
                if controls.stop.is_cancelled() {
                    return self.end(state, RunOutcome::Stopped);
                }
                if done_count == total {
                    return self.end(state, RunOutcome::Completed);
                }
                let Some((at, id)) = sched.next_timer() else {
                    // Nothing can start and nothing runs: a failed step
                    // earlier in this pass holds the rest.
                    let failed = (0..n).find(|i| ran[*i] && statuses[*i] == StepStatus::Failed);
                    return self.end(
                        state,
                        RunOutcome::Failed {
                            step: failed
                                .map_or_else(String::new, |i| self.runbook.steps[i].name.clone()),
                        },
                    );
                };
                self.reporter.event(&RunEvent::WaitingUntil {
                    step: self.name(id).to_owned(),
                    until: at,
                });
                let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = controls.stop.cancelled() => {}
                }
                continue;
            }

            let wake = sched
                .next_timer()
                .map(|(at, _)| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            tokio::select! {
                Some((id, result)) = running.next() => {
                    ran[id.0] = true;
                    match result? {
                        StepEnd::Done => {
                            statuses[id.0] = StepStatus::Done;
                            done_count += 1;
                            sched.finished(self, id, StepStatus::Done, &statuses);
                        }
                        StepEnd::Skipped => {
                            statuses[id.0] = StepStatus::Skipped;
                            done_count += 1;
                            sched.finished(self, id, StepStatus::Skipped, &statuses);
                        }
                        StepEnd::Failed => {
                            statuses[id.0] = StepStatus::Failed;
                            halt.get_or_insert(RunOutcome::Failed { step: self.name(id).to_owned() });
                        }
                        StepEnd::Stopped => {
                            statuses[id.0] = StepStatus::Running;
                            halt.get_or_insert(RunOutcome::Stopped);
                        }
                    }
                }
                () = controls.stop.cancelled(), if !stop_seen => stop_seen = true,
                () = tokio::time::sleep(wake.unwrap_or(Duration::MAX)), if wake.is_some() => {}
            }
        }
    }

    async fn recheck_done(
        &self,
        state: &SharedState,
        statuses: &[StepStatus],
        selected: &[bool],
        t0: Option<DateTime<Utc>>,
        controls: &Controls,
    ) -> anyhow::Result<()> {
        let done: Vec<StepId> = (0..statuses.len())
            .filter(|i| selected[*i] && statuses[*i] == StepStatus::Done)
            .map(StepId)
            .collect();
        let parallel = self.options.parallel.max(1);
        let mut checks = futures_util::stream::iter(done.into_iter().map(|id| async move {
            (
                id,
                self.observe(state, id, t0, &controls.abort, Observing::Recheck)
                    .await,
            )
        }))
        .buffer_unordered(parallel);
        while let Some((id, observed)) = checks.next().await {
            if let Ok(Observed::NotYet(e)) = observed {
                let text = format!(
                    "step `{}` was done, but its check no longer holds: {} (not redone)",
                    self.name(id),
                    e.summary
                );
                state.append_event(Some(self.name(id)), "drift", &text, Some(&e.data))?;
                self.reporter.event(&RunEvent::Warning { text });
            }
        }
        Ok(())
    }

    fn end(&self, state: &SharedState, outcome: RunOutcome) -> anyhow::Result<RunOutcome> {
        let store = state.store();
        let steps = store.steps(state.run_id())?;
        let status = match &outcome {
            RunOutcome::Completed
                if steps
                    .iter()
                    .all(|s| matches!(s.status, StepStatus::Done | StepStatus::Skipped)) =>
            {
                RunStatus::Completed
            }
            RunOutcome::Failed { .. } => RunStatus::Failed,
            _ => RunStatus::Stopped,
        };
        store.set_run_status(state.run_id(), status)?;
        match &outcome {
            RunOutcome::Blocked { step, skipped } => store.append_event(
                state.run_id(),
                Some(step),
                "blocked",
                &format!("not run: it depends on skipped step `{skipped}`"),
                None,
            )?,
            RunOutcome::NotReady { step, missing } => store.append_event(
                state.run_id(),
                Some(step),
                "blocked",
                &format!("not run: step `{missing}` it depends on is not done"),
                None,
            )?,
            _ => {}
        }
        drop(store);
        let recap = self.recap(state, &outcome, &steps)?;
        self.reporter.event(&RunEvent::Finished { recap });
        Ok(outcome)
    }

    /// The run's recap from its state: the selected steps by status (done
    /// ones split by whether they acted), the time since the run started
    /// against the plan's, and the deviations recorded.
    fn recap(
        &self,
        state: &SharedState,
        outcome: &RunOutcome,
        steps: &[cutover_store::StepRecord],
    ) -> anyhow::Result<Recap> {
        let run = state.run_record()?;
        let events = state.store().events(state.run_id())?;
        let mut satisfied = std::collections::HashMap::new();
        let mut deviations = Vec::new();
        for event in &events {
            match (event.kind.as_str(), &event.step) {
                ("done", Some(step)) => {
                    satisfied.insert(
                        step.as_str(),
                        event.message.starts_with("already satisfied"),
                    );
                }
                ("deviation", step) => deviations.push(match step {
                    Some(step) => format!("{step}: {}", event.message),
                    None => event.message.clone(),
                }),
                _ => {}
            }
        }
        let selected = self.selection();
        let by_name = self.runbook.steps_by_name();
        let mut recap = Recap {
            outcome: match outcome {
                RunOutcome::Completed => "completed",
                RunOutcome::Stopped => "stopped",
                RunOutcome::Failed { .. } => "failed",
                RunOutcome::Blocked { .. } | RunOutcome::NotReady { .. } => "blocked",
            },
            total: 0,
            done: 0,
            already_satisfied: 0,
            skipped: 0,
            failed: 0,
            not_run: 0,
            took: (Utc::now() - run.started_at).to_std().unwrap_or_default(),
            planned: Duration::ZERO,
            deviations,
        };
        for record in steps {
            if !by_name
                .get(record.name.as_str())
                .is_some_and(|id| selected[id.0])
            {
                continue;
            }
            recap.total += 1;
            match record.status {
                StepStatus::Done if satisfied.get(record.name.as_str()) == Some(&true) => {
                    recap.already_satisfied += 1;
                }
                StepStatus::Done => recap.done += 1,
                StepStatus::Skipped => recap.skipped += 1,
                StepStatus::Failed => recap.failed += 1,
                _ => recap.not_run += 1,
            }
        }
        let plan = cutover_plan::plan(self.runbook, None);
        let start =
            (run.started_at - plan_t0(&plan, run.t0).unwrap_or(run.started_at)).num_milliseconds();
        let nothing_done = vec![false; self.runbook.steps.len()];
        let planned = plan.end_from(self.runbook, &nothing_done, start) - start;
        recap.planned = Duration::from_millis(u64::try_from(planned).unwrap_or(0));
        Ok(recap)
    }
}

/// A status that lets dependents go on (and counts as finished for the run).
fn finished(status: StepStatus) -> bool {
    matches!(status, StepStatus::Done | StepStatus::Skipped)
}

/// The scheduler's incremental state: what each step still waits for,
/// which steps may start now (by source position), and which wait for
/// their `at` time.
struct Schedule {
    /// Per step: dependencies not finished yet.
    waiting_for: Vec<usize>,
    /// Per step: the steps that name it in `after`.
    dependents: Vec<Vec<usize>>,
    /// Per step: a skipped dependency that blocks it (not forced).
    blocked_by: Vec<Option<StepId>>,
    /// Per step: it is in the selection and not finished.
    to_run: Vec<bool>,
    /// Steps that may start now, lowest source position first.
    ready: BTreeSet<usize>,
    /// Steps whose dependencies are done but whose `at` lies ahead.
    timers: BinaryHeap<Reverse<(DateTime<Utc>, usize)>>,
    t0: Option<DateTime<Utc>>,
}

impl Schedule {
    fn new(
        engine: &Engine<'_>,
        statuses: &[StepStatus],
        selected: &[bool],
        t0: Option<DateTime<Utc>>,
    ) -> Schedule {
        let steps = &engine.runbook.steps;
        let n = steps.len();
        let mut sched = Schedule {
            waiting_for: vec![0; n],
            dependents: vec![Vec::new(); n],
            blocked_by: vec![None; n],
            to_run: (0..n)
                .map(|i| selected[i] && !finished(statuses[i]))
                .collect(),
            ready: BTreeSet::new(),
            timers: BinaryHeap::new(),
            t0,
        };
        for (i, step) in steps.iter().enumerate() {
            for dep in &step.after {
                sched.dependents[dep.0].push(i);
                if !finished(statuses[dep.0]) {
                    sched.waiting_for[i] += 1;
                }
            }
        }
        for i in 0..n {
            if sched.to_run[i] {
                sched.note_skips(engine, i, statuses);
                sched.consider(engine, i);
            }
        }
        sched
    }

    /// Marks step `i` blocked when a dependency was skipped and `i` is not
    /// forced: it is then taken from the ready set only to halt the run.
    fn note_skips(&mut self, engine: &Engine<'_>, i: usize, statuses: &[StepStatus]) {
        if engine.options.force.contains(&StepId(i)) || self.blocked_by[i].is_some() {
            return;
        }
        let step = &engine.runbook.steps[i];
        if let Some(dep) = step
            .after
            .iter()
            .find(|d| statuses[d.0] == StepStatus::Skipped)
        {
            self.blocked_by[i] = Some(*dep);
            self.ready.insert(i);
        }
    }

    /// Puts step `i` in the ready set or the timer heap once nothing holds it.
    fn consider(&mut self, engine: &Engine<'_>, i: usize) {
        if !self.to_run[i] || self.waiting_for[i] > 0 || self.blocked_by[i].is_some() {
            return;
        }
        match engine.runbook.steps[i]
            .at
            .and_then(|at| at.instant(self.t0))
            .filter(|at| *at > Utc::now())
        {
            Some(at) => self.timers.push(Reverse((at, i))),
            None => {
                self.ready.insert(i);
            }
        }
    }

    /// Step `id` finished with `status` (done or skipped): release its dependents.
    fn finished(
        &mut self,
        engine: &Engine<'_>,
        id: StepId,
        status: StepStatus,
        statuses: &[StepStatus],
    ) {
        self.to_run[id.0] = false;
        for k in 0..self.dependents[id.0].len() {
            let d = self.dependents[id.0][k];
            self.waiting_for[d] = self.waiting_for[d].saturating_sub(1);
            if !self.to_run[d] {
                continue;
            }
            if status == StepStatus::Skipped {
                self.note_skips(engine, d, statuses);
            }
            self.consider(engine, d);
        }
    }

    /// Moves steps whose `at` has come into the ready set.
    fn release_due(&mut self, now: DateTime<Utc>) {
        while let Some(Reverse((at, i))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.ready.insert(i);
        }
    }

    /// The earliest `at` still ahead, and its step.
    fn next_timer(&self) -> Option<(DateTime<Utc>, StepId)> {
        self.timers.peek().map(|Reverse((at, i))| (*at, StepId(*i)))
    }
}

/// A failure as evidence: the message (with the host it concerns), and in
/// the data the host and whether another attempt may help.
pub(crate) fn error_evidence(err: &StepError) -> Evidence {
    let text = err.to_string();
    Evidence::new(
        text.clone(),
        serde_json::json!({
            "error": text,
            "host": err.host(),
            "retryable": err.is_retryable(),
        }),
    )
}
