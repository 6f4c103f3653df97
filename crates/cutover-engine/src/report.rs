//! How the engine talks to people: it never prints. It sends [`RunEvent`]s
//! to a [`Reporter`] (the CLI draws them with indicatif, or as plain lines;
//! a test collects them) and asks questions through a [`Prompter`].

use crate::kind::BoxFuture;
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
    Progress {
        step: String,
        done: u64,
        total: Option<u64>,
        unit: &'static str,
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
    /// planned time after it.
    StepFinished {
        step: String,
        outcome: StepOutcome,
        summary: String,
        eta: Duration,
    },
    Warning {
        text: String,
    },
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
