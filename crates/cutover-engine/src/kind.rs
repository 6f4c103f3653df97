//! The step-kind interface: what a kind implements and what it gets to work
//! with. Kinds live in `cutover-steps`; the engine only sees this trait.

use crate::future::BoxFuture;
use crate::report::{Prompter, Reporter, RunEvent};
use crate::{RunOptions, SharedState};
use chrono::{DateTime, Utc};
use cutover_lang::{Action, ActionKind, KeyId, Runbook, Step, StepId};
use cutover_store::{Confirmation, EvidenceRecord, Phase, StepRecord};
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a kind observed: a short summary (shown in tables and the report)
/// and the details as JSON (kept in the `evidence` table).
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub summary: String,
    pub data: serde_json::Value,
}

impl Evidence {
    pub fn new(summary: impl Into<String>, data: serde_json::Value) -> Evidence {
        Evidence {
            summary: summary.into(),
            data,
        }
    }
}

/// One observation of the live world against a step's desired state.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// The desired state holds.
    Satisfied(Evidence),
    /// It does not hold (yet): what was seen instead.
    NotYet(Evidence),
    /// This kind cannot observe it (e.g. `exec` without a `verify` line):
    /// before acting the step must act; after acting, a successful act is
    /// the only verification.
    Unobservable,
}

/// A step kind. Kinds are stateless (`&'static` unit structs): everything
/// a call needs is in its [`StepContext`], the action's arguments in
/// `ctx.action.kind`.
///
/// The engine drives the lifecycle: `check` (already satisfied → done,
/// nothing acted) → intent committed → `act` → outcome committed →
/// `verify` polled with backoff until [`Check::Satisfied`] or the step's
/// timeout → evidence committed. Every method must give up promptly when
/// `ctx.cancel` is cancelled (return any error; the engine records the step
/// as caught mid-flight, and a resume re-checks it).
pub trait StepKind: Send + Sync {
    /// Is the desired state already true? Must have no side effects; it is
    /// also how resume re-checks done steps and steps caught mid-flight, so
    /// it should be cheap.
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>>;

    /// Make the change. Report progress through `ctx`. A retryable error
    /// fails this attempt (`retry N` re-runs act+verify); a fatal one fails
    /// the step.
    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>>;

    /// One observation after acting; the engine polls it until it returns
    /// `Satisfied` or the step's timeout passes (a fatal error ends the
    /// polling at once). Defaults to `check`.
    fn verify<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        self.check(ctx)
    }

    /// True when `act` may be interrupted at any instant without harm
    /// (waits, manual gates): a first Ctrl-C then stops it at once instead
    /// of letting it finish.
    fn interruptible(&self) -> bool {
        false
    }
}

/// Maps an action to its kind: one `match` on [`ActionKind`] in
/// `cutover-steps`, so adding a kind is one line there.
pub trait KindRegistry: Send + Sync {
    /// The kind that runs `action`, or an error naming a kind this build
    /// cannot run.
    fn kind_for(&self, action: &ActionKind) -> anyhow::Result<&'static dyn StepKind>;
}

/// Which line of its step an action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionRole {
    /// The step's kind line.
    Main,
    /// A `verify` line: only its `check` is called, as a probe (an `exec`
    /// verify line runs its command there).
    Verify,
    /// The `undo` line, run by rollback like a step.
    Undo,
}

/// Everything a kind gets for one call.
pub struct StepContext<'a> {
    pub runbook: &'a Runbook,
    /// The step this action belongs to.
    pub step: StepId,
    /// The action being run: the step's kind line, one of its `verify`
    /// lines, or its `undo` line (see `role`).
    pub action: &'a Action,
    pub role: ActionRole,
    /// T0 of this run (window start or `--t0`), when known.
    pub t0: Option<DateTime<Utc>>,
    pub options: &'a RunOptions,
    /// Cancelled when the kind must stop now (second Ctrl-C; first Ctrl-C
    /// too for interruptible kinds).
    pub cancel: CancellationToken,
    /// Cancelled at the first Ctrl-C (or SIGTERM/SIGHUP): no new side
    /// effect may start after it. [`StepContext::sleep`] ends at it, and
    /// [`StepContext::may_start_effect`] refuses after it.
    pub(crate) stopping: CancellationToken,
    /// Asks the person at the terminal (manual gates).
    pub prompter: &'a dyn Prompter,
    pub(crate) reporter: &'a dyn Reporter,
    pub(crate) state: &'a SharedState,
    /// This is the check right before the step's act (see
    /// [`StepContext::act_follows`]).
    pub(crate) act_follows: bool,
}

impl<'a> StepContext<'a> {
    /// True in the `check` the engine makes right before acting: if it is
    /// not satisfied, `act` runs next in this process. A kind whose act
    /// finds out for itself whether anything needs doing (a delta copy
    /// compares before it writes) may then leave the question to the act
    /// instead of answering it twice. False when the check stands alone (a
    /// resume re-checking done steps, rollback).
    pub fn act_follows(&self) -> bool {
        self.act_follows
    }

    /// The step being run.
    pub fn step_def(&self) -> &'a Step {
        self.runbook.step(self.step)
    }

    /// The step's name.
    pub fn step_name(&self) -> &'a str {
        &self.step_def().name
    }

    /// Progress of a long act, e.g. bytes copied of a total. Call it as
    /// often as is convenient: the terminal sees every report, the event
    /// log (and so the dashboard) the first, then at most one a second per
    /// step, and the one reaching the total.
    pub fn progress(&self, done: u64, total: Option<u64>, unit: &'static str) {
        self.progress_with_eta(done, total, unit, None);
    }

    /// [`StepContext::progress`] with the step's own estimate of its time
    /// left (a copy's, from its recent rate), shown instead of one guessed
    /// from `done` alone.
    pub fn progress_with_eta(
        &self,
        done: u64,
        total: Option<u64>,
        unit: &'static str,
        eta: Option<Duration>,
    ) {
        let step = self.step_name();
        self.reporter.event(&RunEvent::Progress {
            step: step.to_owned(),
            done,
            total,
            unit,
            eta,
        });
        if self.state.progress_due(step, done, total) {
            let message = match total {
                Some(total) => format!("{done} of {total} {unit}"),
                None => format!("{done} {unit}"),
            };
            let mut data = serde_json::json!({ "done": done, "total": total, "unit": unit });
            if let Some(eta) = eta {
                data["eta_ms"] = serde_json::json!(eta.as_millis() as u64);
            }
            self.log_advisory("progress", &message, &data);
        }
    }

    /// A countdown to `until` (waits, `at` times, TTL expiry) starts; the
    /// page and the terminal count down themselves. A new countdown is
    /// logged (the dashboard shows the latest); repeating the step's last
    /// one, e.g. from every verification, logs nothing.
    pub fn countdown(&self, until: DateTime<Utc>, label: &str) {
        let step = self.step_name();
        self.reporter.event(&RunEvent::Countdown {
            step: step.to_owned(),
            until,
            label: label.to_owned(),
        });
        if self.state.countdown_is_new(step, until, label) {
            let message = format!("{label} until {}", until.format("%H:%M:%S UTC"));
            let data = serde_json::json!({ "until": until, "label": label });
            self.log_advisory("countdown", &message, &data);
        }
    }

    /// Logs an event the step does not depend on (progress, countdowns):
    /// a failed write is a warning, not a failure of the step (the next
    /// transition's commit fails if the store is really gone).
    fn log_advisory(&self, kind: &str, message: &str, data: &serde_json::Value) {
        if let Err(err) = self
            .state
            .append_event(Some(self.step_name()), kind, message, Some(data))
        {
            self.reporter.event(&RunEvent::Warning {
                text: format!("could not log the {kind} of `{}`: {err}", self.step_name()),
            });
        }
    }

    /// A line of information for the coordinator (also logged as an event).
    /// Known secrets are masked in the log and on the terminal.
    pub fn message(&self, text: &str) -> anyhow::Result<()> {
        let text = self.state.mask(text);
        self.state
            .append_event(Some(self.step_name()), "message", &text, None)?;
        self.reporter.event(&RunEvent::Message {
            step: Some(self.step_name().to_owned()),
            text,
        });
        Ok(())
    }

    /// `text` with every secret of the runbook's keys masked as
    /// `[secret KEYNAME]` (see `cutover_engine::secrets`). Events and
    /// evidence are masked when stored anyway; mask before cutting text
    /// short, so no part of a secret survives a cut.
    pub fn mask(&self, text: &str) -> String {
        self.state.mask(text)
    }

    /// Command output or similar text, kept in the event log, bounded to
    /// [`OUTPUT_LIMIT`] bytes (the rest is cut with a note). Known secrets
    /// are masked before it is cut.
    pub fn log_output(&self, label: &str, text: &str) -> anyhow::Result<()> {
        let text = &self.state.mask(text);
        let kept = bounded(text, OUTPUT_LIMIT);
        self.state.append_event(
            Some(self.step_name()),
            "output",
            label,
            Some(&serde_json::json!({ "text": kept, "bytes": text.len() })),
        )
    }

    /// A manual gate starts waiting: logged as a `gate` event with its
    /// instructions, so `status` and the dashboard say "waiting for
    /// confirmation: TEXT", and shown to the coordinator.
    pub fn waiting_for_confirmation(&self, instructions: &str) -> anyhow::Result<()> {
        let text = format!("waiting for confirmation: {instructions}");
        self.state.append_event(
            Some(self.step_name()),
            "gate",
            &text,
            Some(&serde_json::json!({ "instructions": instructions })),
        )?;
        self.reporter.event(&RunEvent::Gate {
            step: self.step_name().to_owned(),
            instructions: instructions.to_owned(),
        });
        Ok(())
    }

    /// The state of another step of this run (e.g. to check it is done).
    pub fn step_record(&self, step: StepId) -> anyhow::Result<Option<StepRecord>> {
        self.state.step_record(&self.runbook.step(step).name)
    }

    /// The latest evidence another step (or this one) recorded in `phase`
    /// (`dns.switch` reads the verification of the `dns.ttl` that lowered
    /// its record: the TTL seen before and when it finished).
    pub fn evidence_of(
        &self,
        step: StepId,
        phase: Phase,
    ) -> anyhow::Result<Option<EvidenceRecord>> {
        self.state.evidence_of(&self.runbook.step(step).name, phase)
    }

    /// When this step's first act started (kept across resumes), e.g. a
    /// `wait 5m` counts from here.
    pub fn first_act_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(self
            .state
            .step_record(self.step_name())?
            .and_then(|r| r.first_act_at))
    }

    /// The latest confirmation of this (manual) step.
    pub fn confirmation(&self) -> anyhow::Result<Option<Confirmation>> {
        self.state.confirmation(self.step_name())
    }

    /// Records a confirmation given at this terminal.
    pub fn record_confirmation(&self, note: Option<&str>) -> anyhow::Result<()> {
        self.state
            .confirm(self.step_name(), &cutover_store::current_user(), note)
    }

    /// Sleeps, returning [`Interrupted`] if the kind is cancelled or a
    /// stop is requested first: a sleep is always a safe point, so a
    /// countdown before a change (the old TTL of a `dns.switch`) never ends
    /// in the change after a Ctrl-C.
    pub async fn sleep(&self, duration: Duration) -> anyhow::Result<()> {
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = self.cancel.cancelled() => Err(Interrupted.into()),
            () = self.stopping.cancelled() => Err(Interrupted.into()),
        }
    }

    /// Call right before starting a side effect: [`Interrupted`] once a
    /// stop was requested, so nothing new starts after a Ctrl-C even when
    /// the request came in while the kind was preparing.
    pub fn may_start_effect(&self) -> anyhow::Result<()> {
        if self.stopping.is_cancelled() || self.cancel.is_cancelled() {
            return Err(Interrupted.into());
        }
        Ok(())
    }

    /// The folder runbook-relative paths (`file:` secrets, `via local`
    /// roots) are resolved against.
    pub fn runbook_dir(&self) -> &'a Path {
        &self.options.runbook_dir
    }

    /// The text of a key's secret (`env:VAR` or `file:PATH`, trimmed). The
    /// caller decodes it; it must never be printed, logged or stored.
    pub fn secret_text(&self, key: KeyId) -> anyhow::Result<String> {
        crate::secrets::read_secret(self.runbook, self.runbook_dir(), key)
    }
}

/// Why a kind's call failed. The engine decides from it whether another
/// attempt (`retry N`) can help and what to tell the coordinator; `host`
/// names the runbook host (or server) the failure concerns.
///
/// `?` turns an `anyhow::Error` into [`StepError::Retryable`] without a
/// host (an [`Interrupted`] anywhere in its chain into
/// [`StepError::Interrupted`]);
/// kinds say [`StepError::fatal`] where no attempt can succeed and add the
/// host with [`StepError::on`].
#[derive(Debug)]
pub enum StepError {
    /// Stopped on request (Ctrl-C, SIGTERM, SIGHUP): not a failure; the
    /// step is resumable.
    Interrupted,
    /// This attempt failed; another may succeed: a far end that did not
    /// answer, a refused connection, a command that exited non-zero.
    Retryable {
        host: Option<String>,
        error: anyhow::Error,
    },
    /// No attempt can succeed until something is changed: a missing secret,
    /// a key the server refuses, an action this kind cannot run. The step
    /// fails at once, without further attempts or polling.
    Fatal {
        host: Option<String>,
        error: anyhow::Error,
    },
}

impl StepError {
    /// A failure that another attempt cannot mend.
    pub fn fatal(error: impl Into<anyhow::Error>) -> StepError {
        match StepError::from(error.into()) {
            StepError::Retryable { host, error } => StepError::Fatal { host, error },
            other => other,
        }
    }

    /// The same failure, concerning `host`.
    pub fn on(self, host: impl Into<String>) -> StepError {
        match self {
            StepError::Retryable { error, .. } => StepError::Retryable {
                host: Some(host.into()),
                error,
            },
            StepError::Fatal { error, .. } => StepError::Fatal {
                host: Some(host.into()),
                error,
            },
            StepError::Interrupted => StepError::Interrupted,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StepError::Retryable { .. })
    }

    /// The host the failure concerns, when known.
    pub fn host(&self) -> Option<&str> {
        match self {
            StepError::Retryable { host, .. } | StepError::Fatal { host, .. } => host.as_deref(),
            StepError::Interrupted => None,
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Interrupted => f.write_str("interrupted"),
            StepError::Retryable { host, error } | StepError::Fatal { host, error } => {
                let text = format!("{error:#}");
                match host {
                    // Kinds often name the host already; say it once.
                    Some(host) if !text.contains(host.as_str()) => write!(f, "on {host}: {text}"),
                    _ => f.write_str(&text),
                }
            }
        }
    }
}

impl From<anyhow::Error> for StepError {
    fn from(error: anyhow::Error) -> StepError {
        if is_interrupted(&error) {
            return StepError::Interrupted;
        }
        StepError::Retryable { host: None, error }
    }
}

impl From<Interrupted> for StepError {
    fn from(_: Interrupted) -> StepError {
        StepError::Interrupted
    }
}

/// What a kind's method returns.
pub type StepResult<T> = Result<T, StepError>;

/// A kind stopped because the coordinator asked it to (Ctrl-C, SIGTERM,
/// SIGHUP): not a failure of the step. Return it (through `anyhow`, or as
/// [`StepError::Interrupted`]) from any method; the engine records the step
/// as interrupted, resumable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Whether `err` is (or wraps) an [`Interrupted`].
fn is_interrupted(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<Interrupted>())
}

/// How much output of one command is kept in the event log.
pub const OUTPUT_LIMIT: usize = 16 * 1024;

/// The first `limit` bytes of `text` (on a character boundary), with a note
/// of how much was cut.
pub fn bounded(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[... {} more bytes cut]",
        &text[..end],
        text.len() - end
    )
}
