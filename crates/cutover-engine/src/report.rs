//! How the engine talks to people: it never prints. It sends [`RunEvent`]s
//! to a [`Reporter`] (the CLI draws them with indicatif, or as plain lines;
//! a test collects them) and asks questions through a [`Prompter`].

use crate::future::BoxFuture;
use chrono::{DateTime, Utc};
use cutover_lang::Step;
use cutover_store::Phase;
use std::time::Duration;

/// What happened, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The run (or resume) begins: `done` of `total` selected steps are done;
    /// `eta` is the remaining planned time (from `expect` and `at`).
    Started {
        total: usize,
        done: usize,
        eta: Duration,
    },
    /// The whole run waits for the next `at` time.
    WaitingUntil {
        step: String,
        until: DateTime<Utc>,
    },
    StepStarted {
        step: String,
    },
    Phase {
        step: String,
        phase: Phase,
    },
    /// `eta` is the step's own estimate of its time left, when it makes one
    /// (a copy does, from its recent rate).
    Progress {
        step: String,
        done: u64,
        total: Option<u64>,
        unit: &'static str,
        eta: Option<Duration>,
    },
    Countdown {
        step: String,
        until: DateTime<Utc>,
        label: String,
    },
    Message {
        step: Option<String>,
        text: String,
    },
    /// A step reached a final (or stopped) state; `eta` is the remaining
    /// planned time after it. `changed` is one line of what it changed,
    /// derived from its evidence ([`crate::what_changed`]); none when it
    /// changed nothing (already satisfied, skipped, failed).
    StepFinished {
        step: String,
        outcome: StepOutcome,
        summary: String,
        changed: Option<String>,
        eta: Duration,
    },
    /// A manual gate waits for its confirmation (here or by `cutover confirm`).
    Gate {
        step: String,
        instructions: String,
    },
    Warning {
        text: String,
    },
    /// The run (or this pass of it) ended.
    Finished {
        recap: Recap,
    },
}

/// What a run came to, for its closing lines: counts of the selected steps
/// by how they ended, time taken against the plan, deviations.
#[derive(Debug, Clone, PartialEq)]
pub struct Recap {
    /// `completed`, `stopped`, `failed` or `blocked`.
    pub outcome: &'static str,
    /// Selected steps.
    pub total: usize,
    /// Acted and verified (or acted, where the kind cannot verify).
    pub done: usize,
    /// Found already true: nothing acted.
    pub already_satisfied: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Not reached (stopped, blocked, or waiting behind a failure).
    pub not_run: usize,
    /// Since the run started (earlier passes of a resumed run included).
    pub took: Duration,
    /// What the plan gives for the run from its start.
    pub planned: Duration,
    /// Each deviation recorded, as `step: text`.
    pub deviations: Vec<String>,
}

impl StepOutcome {
    /// The outcome as people read it: `verified`, `already satisfied`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::AlreadySatisfied => "already satisfied",
            StepOutcome::Verified => "verified",
            StepOutcome::Unverified => "done (unverified)",
            StepOutcome::AttemptFailed => "attempt failed",
            StepOutcome::Failed => "failed",
            StepOutcome::Skipped => "skipped",
            StepOutcome::Interrupted => "interrupted",
            StepOutcome::Undone => "undone",
        }
    }

    /// The outcome as one JSON word: `verified`, `already_satisfied`, ...
    pub fn as_word(self) -> &'static str {
        match self {
            StepOutcome::AlreadySatisfied => "already_satisfied",
            StepOutcome::Verified => "verified",
            StepOutcome::Unverified => "unverified",
            StepOutcome::AttemptFailed => "attempt_failed",
            StepOutcome::Failed => "failed",
            StepOutcome::Skipped => "skipped",
            StepOutcome::Interrupted => "interrupted",
            StepOutcome::Undone => "undone",
        }
    }
}

impl RunEvent {
    /// The event as one JSON object for `cutover run --format json`: an
    /// `event` word, the step where there is one, times in RFC 3339 UTC,
    /// durations in seconds, sizes in bytes (docs/engine.md lists them).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let utc = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self {
            RunEvent::Started { total, done, eta } => json!({
                "event": "run_started", "total": total, "done": done, "eta_s": eta.as_secs(),
            }),
            RunEvent::WaitingUntil { step, until } => json!({
                "event": "waiting_until", "step": step, "until": utc(until),
            }),
            RunEvent::StepStarted { step } => json!({ "event": "step_started", "step": step }),
            RunEvent::Phase { step, phase } => json!({
                "event": "phase", "step": step, "phase": phase.as_str(),
            }),
            RunEvent::Progress {
                step,
                done,
                total,
                unit,
                eta,
            } => json!({
                "event": "progress", "step": step, "done": done, "total": total, "unit": unit,
                "eta_ms": eta.map(|eta| eta.as_millis() as u64),
            }),
            RunEvent::Countdown { step, until, label } => json!({
                "event": "countdown", "step": step, "until": utc(until), "label": label,
            }),
            RunEvent::Message { step, text } => json!({
                "event": "message", "step": step, "text": text,
            }),
            RunEvent::StepFinished {
                step,
                outcome,
                summary,
                changed,
                eta,
            } => json!({
                "event": match outcome {
                    StepOutcome::Failed | StepOutcome::AttemptFailed => "step_failed",
                    _ => "step_done",
                },
                "step": step,
                "outcome": outcome.as_word(),
                "summary": summary,
                "changed": changed,
                "eta_s": eta.as_secs(),
            }),
            RunEvent::Gate { step, instructions } => json!({
                "event": "gate_waiting", "step": step, "instructions": instructions,
                "confirm": format!("cutover confirm {step}"),
            }),
            RunEvent::Warning { text } => json!({ "event": "warning", "text": text }),
            RunEvent::Finished { recap } => json!({
                "event": "run_finished",
                "outcome": recap.outcome,
                "total": recap.total,
                "done": recap.done,
                "already_satisfied": recap.already_satisfied,
                "skipped": recap.skipped,
                "failed": recap.failed,
                "not_run": recap.not_run,
                "took_s": recap.took.as_secs(),
                "planned_s": recap.planned.as_secs(),
                "deviations": recap.deviations,
            }),
        }
    }
}

/// How a step ended in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Its check found the desired state already true: nothing was done.
    AlreadySatisfied,
    /// Acted and verified.
    Verified,
    /// Acted; its kind cannot verify (e.g. `exec` without `verify`).
    Unverified,
    /// An attempt failed (more may follow with `retry`).
    AttemptFailed,
    /// Failed after all attempts.
    Failed,
    Skipped,
    /// Stopped mid-way by Ctrl-C; resumable.
    Interrupted,
    /// Rolled back by its `undo`.
    Undone,
}

/// Receives events. Called from the engine's task: keep it quick.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &RunEvent);
}

/// A reporter that drops everything.
#[derive(Debug, Default)]
pub struct NoReporter;

impl Reporter for NoReporter {
    fn event(&self, _event: &RunEvent) {}
}

/// The coordinator's answer before a step in `--step` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Run,
    /// Skip it (recorded as a deviation).
    Skip,
    /// Stop the run here (resumable).
    Stop,
}

/// Questions for the person at the terminal.
pub trait Prompter: Send + Sync {
    /// `--step`: before `step` starts; `what` says what it will do.
    fn before_step<'a>(&'a self, step: &'a Step, what: &'a str) -> BoxFuture<'a, Decision>;

    /// A manual gate: shows the instructions and resolves with the
    /// person's note (possibly empty) once they confirm. With no terminal
    /// it never resolves (confirmation then comes from `cutover confirm`).
    fn confirm_manual<'a>(
        &'a self,
        step: &'a Step,
        instructions: &'a str,
    ) -> BoxFuture<'a, Option<String>>;

    /// `--step`: `step` is next but depends on `skipped`, which was
    /// skipped. [`Decision::Run`] runs it anyway (a deviation, as
    /// `--force`), [`Decision::Skip`] skips it too, [`Decision::Stop`]
    /// stops the run before it (the default).
    fn after_skip<'a>(&'a self, _step: &'a Step, _skipped: &'a Step) -> BoxFuture<'a, Decision> {
        Box::pin(async { Decision::Stop })
    }
}

/// A prompter for runs without a terminal: `--step` answers "run", manual
/// gates wait for `cutover confirm`.
#[derive(Debug, Default)]
pub struct NoPrompter;

impl Prompter for NoPrompter {
    fn before_step<'a>(&'a self, _step: &'a Step, _what: &'a str) -> BoxFuture<'a, Decision> {
        Box::pin(async { Decision::Run })
    }

    fn confirm_manual<'a>(
        &'a self,
        _step: &'a Step,
        _instructions: &'a str,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(std::future::pending())
    }
}
