//! `manual "INSTRUCTIONS"`: a person does it and confirms, at the prompt of
//! the running `cutover run` or with `cutover confirm STEP` from another
//! terminal. Who confirmed, when and their note are the evidence.

use crate::wrong_action;
use cutover_engine::{BoxFuture, Check, Evidence, StepContext, StepKind};
use cutover_lang::ActionKind;
use std::time::Duration;

pub struct Manual;

/// How often the state file is read for a confirmation from elsewhere.
const POLL: Duration = Duration::from_millis(250);

fn confirmed(ctx: &StepContext<'_>) -> anyhow::Result<Option<Evidence>> {
    Ok(ctx.confirmation()?.map(|c| {
        let mut summary = format!(
            "confirmed by {} at {}",
            c.user,
            c.at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        if let Some(note) = c.note.as_deref().filter(|n| !n.is_empty()) {
            summary.push_str(": ");
            summary.push_str(note);
        }
        Evidence::new(
            summary,
            serde_json::json!({ "user": c.user, "at": c.at, "note": c.note }),
        )
    }))
}

impl StepKind for Manual {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, anyhow::Result<Check>> {
        Box::pin(async move {
            Ok(match confirmed(ctx)? {
                Some(e) => Check::Satisfied(e),
                None => Check::NotYet(Evidence::new("not confirmed", serde_json::Value::Null)),
            })
        })
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, anyhow::Result<Evidence>> {
        Box::pin(async move {
            let ActionKind::Manual { instructions } = &ctx.action.kind else {
                return Err(wrong_action("manual", &ctx.action.kind));
            };
            ctx.message(&format!(
                "{instructions} — confirm here, or with `cutover confirm {}`",
                ctx.step_name()
            ))?;
            let mut prompt = Some(ctx.prompter.confirm_manual(ctx.step_def(), instructions));
            loop {
                if let Some(e) = confirmed(ctx)? {
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
                    () = ctx.cancel.cancelled() => anyhow::bail!("interrupted"),
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
