//! `manual "INSTRUCTIONS"`: a person does it and confirms, at the prompt of
//! the running `cutover run` or with `cutover confirm STEP` from another
//! terminal. Who confirmed, when and their note are the evidence.
//!
//! A confirmation belongs to a gate that is waiting: `cutover confirm`
//! refuses one for a gate the run has not reached, unless given with
//! `--ahead`. A confirmation given ahead does not pass the gate unseen:
//! the run still reaches it, shows its instructions, and records that it
//! was confirmed ahead, by whom and when.

use crate::wrong_action;
use cutover_engine::{BoxFuture, Check, Evidence, Interrupted, StepContext, StepKind, StepResult};
use cutover_lang::ActionKind;
use std::time::Duration;

pub struct Manual;

/// How often the state file is read for a confirmation from elsewhere.
const POLL: Duration = Duration::from_millis(250);

/// The gate's confirmation as evidence, with whether it was given ahead.
fn confirmed(ctx: &StepContext<'_>) -> anyhow::Result<Option<(Evidence, bool)>> {
    Ok(ctx.confirmation()?.map(|c| {
        let mut summary = format!(
            "confirmed {}by {} at {}",
            if c.ahead { "ahead " } else { "" },
            c.user,
            c.at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        if let Some(note) = c.note.as_deref().filter(|n| !n.is_empty()) {
            summary.push_str(": ");
            summary.push_str(note);
        }
        let data =
            serde_json::json!({ "user": c.user, "at": c.at, "note": c.note, "ahead": c.ahead });
        (Evidence::new(summary, data), c.ahead)
    }))
}

impl StepKind for Manual {
    /// Satisfied only by a confirmation given while the gate waited (a run
    /// resumed after a crash at the gate); one given ahead leaves the gate
    /// to be reached and shown.
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            Ok(match confirmed(ctx)? {
                Some((e, false)) => Check::Satisfied(e),
                Some((e, true)) => Check::NotYet(e),
                None => Check::NotYet(Evidence::new("not confirmed", serde_json::Value::Null)),
            })
        })
    }

    /// After the gate was shown, any confirmation of it passes it.
    fn verify<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            Ok(match confirmed(ctx)? {
                Some((e, _)) => Check::Satisfied(e),
                None => Check::NotYet(Evidence::new("not confirmed", serde_json::Value::Null)),
            })
        })
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async move {
            let ActionKind::Manual { instructions } = &ctx.action.kind else {
                return Err(wrong_action("manual", &ctx.action.kind).into());
            };
            if let Some((e, true)) = confirmed(ctx)? {
                ctx.message(&format!(
                    "{instructions} — passed: {} (before the gate was reached)",
                    e.summary
                ))?;
                return Ok(e);
            }
            ctx.waiting_for_confirmation(instructions)?;
            let mut prompt = Some(ctx.prompter.confirm_manual(ctx.step_def(), instructions));
            loop {
                if let Some((e, _)) = confirmed(ctx)? {
                    return Ok(e);
                }
                let answer = tokio::select! {
                    note = async {
                        match prompt.as_mut() {
                            Some(asking) => asking.await,
                            None => std::future::pending().await,
                        }
                    } => Some(note),
                    () = tokio::time::sleep(POLL) => None,
                    () = ctx.cancel.cancelled() => return Err(Interrupted.into()),
                };
                if let Some(note) = answer {
                    // The terminal answered (a note) or went away (None):
                    // either way it is not asked again.
                    prompt = None;
                    if let Some(note) = note {
                        ctx.record_confirmation(Some(note.as_str()).filter(|n| !n.is_empty()))?;
                    }
                }
            }
        })
    }

    fn interruptible(&self) -> bool {
        true
    }
}
