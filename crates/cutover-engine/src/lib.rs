//! The engine: runs a runbook step by step, checkpointing every transition
//! in the state store, so that a crash, a Ctrl-C or a lost laptop lid never
//! loses track of what has been done. It never prints: it reports
//! [`RunEvent`]s to a [`Reporter`] and asks through a [`Prompter`].
//!
//! # The step-kind interface
//!
//! A kind implements [`StepKind`] (in `cutover-steps`, one module per kind,
//! registered by one `match` arm in that crate's [`KindRegistry`]):
//!
//! ```text
//! trait StepKind: Send + Sync {
//!     fn check (&self, ctx: &StepContext) -> BoxFuture<StepResult<Check>>;    // no side effects
//!     fn act   (&self, ctx: &StepContext) -> BoxFuture<StepResult<Evidence>>;
//!     fn verify(&self, ctx: &StepContext) -> BoxFuture<StepResult<Check>>;    // default: check
//!     fn interruptible(&self) -> bool;                                        // default: false
//! }
//! enum Check { Satisfied(Evidence), NotYet(Evidence), Unobservable }
//! struct Evidence { summary: String, data: serde_json::Value }
//! enum StepError { Interrupted, Retryable { host, error }, Fatal { host, error } }
//! ```
//!
//! `verify` is **one observation**: the engine polls it with backoff (50 ms
//! doubling to 2 s) until `Satisfied` or the step's `timeout` (default
//! [`RunOptions::default_timeout`]). A kind that wants to report something
//! while not yet satisfied (servers still answering the old value, cache
//! expiry) returns `NotYet` with that evidence and may call
//! `ctx.countdown(..)`.
//!
//! [`StepContext`] gives a kind: `runbook`, `step` (id), `action` (the kind
//! line, an `undo` line or a `verify` line being run — read the arguments
//! from `ctx.action.kind`), `role` (`Main`, `Verify` or `Undo`), `t0`, `options` (e.g. `options.no_ttl_wait`),
//! `cancel` (a `CancellationToken`: give up promptly when cancelled),
//! `prompter`, and methods `step_def()`, `progress(done, total, unit)`
//! (every report to the reporter; to the event log the first, at most one a
//! second per step, and the one reaching the total), `countdown(until,
//! label)` (logged when new: repeating it while verifying is fine),
//! `message(text)`, `log_output(label, text)`
//! (bounded), `step_record(StepId)`, `evidence_of(StepId, Phase)` (e.g. a
//! `dns.switch` reads the `Phase::Verify` evidence of the `dns.ttl` step
//! that lowered its record: its data and `at`, when it was verified),
//! `first_act_at()`, `confirmation()`, `record_confirmation(note)`,
//! `sleep(d)` (cancellable), `runbook_dir()` and `secret_text(KeyId)`.
//!
//! # Lifecycle
//!
//! For each step: wait for its `after` steps and its `at` time; in `--step`
//! mode ask run / skip / stop; **check** (the kind's check and every
//! `verify` line; satisfied → done, "already satisfied", nothing acted);
//! commit the intent (status running, phase act, one more attempt); **act**;
//! commit the act's evidence (phase verify); **verify** by polling; commit
//! done with the evidence, or failed — `retry N` re-runs act + verify.
//!
//! Resume: done steps are re-checked first (a check that no longer holds is
//! reported as drift, not redone); a step caught in phase act is checked,
//! then done or redone; a step caught in phase verify resumes verifying.
//! A runbook changed since the run started is detected by [`open_run`],
//! which lists the changed steps for the coordinator to accept.
//!
//! Skips are explicit (`--skip`, or "skip" in `--step` mode) and recorded as
//! deviations. A step that depends on a skipped step does not run: the run
//! stops before it, naming both, unless it is skipped too or forced
//! (`--force STEP`, also recorded as a deviation).
//!
//! Ctrl-C: [`Controls::stop`] stops at the next safe point (between phases;
//! waits and manual gates at once); [`Controls::abort`] cancels running
//! kinds immediately. Both leave a state that `cutover run` resumes.

mod changed;
mod describe;
mod future;
mod kind;
mod report;
mod rollback;
mod runner;
pub mod secrets;
mod state;

pub use changed::{size as describe_size, what_changed};
pub use describe::{content_hash, duration as describe_duration, step as describe_step};
pub use future::BoxFuture;
pub use kind::{
    ActionRole, Check, Evidence, Interrupted, KindRegistry, OUTPUT_LIMIT, StepContext, StepError,
    StepKind, StepResult, bounded,
};
pub use report::{
    Decision, NoPrompter, NoReporter, Prompter, Recap, Reporter, RunEvent, StepOutcome,
};
pub use rollback::{PlannedUndo, RollbackOutcome, UndoAction};
pub use runner::{Engine, RunOutcome};
pub use state::{Opened, RunPlanning, SharedState, StepChange, open_planned_run, open_run};

use cutover_lang::StepId;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// At most this many steps at once (at least 1).
    pub parallel: usize,
    /// Ask before each step (forces `parallel` to 1).
    pub step_mode: bool,
    /// Run this step and what it depends on, then stop.
    pub until: Option<StepId>,
    /// Run only this step (its dependencies must be done).
    pub only: Option<StepId>,
    /// Skip these steps (deviations).
    pub skip: Vec<StepId>,
    /// Run these steps even though a step they depend on was skipped.
    pub force: Vec<StepId>,
    /// DNS kinds: do not wait for old TTLs to expire (rehearsals).
    pub no_ttl_wait: bool,
    /// The runbook's folder (relative paths in it are resolved from here).
    pub runbook_dir: PathBuf,
    /// The verify timeout of steps without `timeout`.
    pub default_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            parallel: 1,
            step_mode: false,
            until: None,
            only: None,
            skip: Vec::new(),
            force: Vec::new(),
            no_ttl_wait: false,
            runbook_dir: PathBuf::from("."),
            default_timeout: Duration::from_secs(600),
        }
    }
}

/// The two Ctrl-C levels. An abort implies a stop.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    stop: CancellationToken,
    abort: CancellationToken,
}

impl Controls {
    /// First Ctrl-C: start nothing new, stop at the next safe point
    /// (interruptible acts and verify polling stop at once).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Second Ctrl-C: also cancel what is running now.
    pub fn abort(&self) {
        self.stop.cancel();
        self.abort.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }
}
