//! `wait 5m` / `wait until T+2h`: done when the time has come. A duration
//! counts from the step's first act, kept across resumes, so a crash in the
//! middle of a wait does not restart it.

use crate::wrong_action;
use chrono::{DateTime, TimeDelta, Utc};
use cutover_engine::{BoxFuture, Check, Evidence, StepContext, StepKind, StepResult};
use cutover_lang::{ActionKind, WaitFor};

pub struct Wait;

fn deadline(ctx: &StepContext<'_>) -> anyhow::Result<Option<DateTime<Utc>>> {
    match &ctx.action.kind {
        ActionKind::Wait(WaitFor::Duration(d)) => Ok(ctx
            .first_act_at()?
            .map(|start| start + TimeDelta::from_std(*d).unwrap_or(TimeDelta::MAX))),
        ActionKind::Wait(WaitFor::Until(spec)) => spec.instant(ctx.t0).map(Some).ok_or_else(|| {
            anyhow::anyhow!("`wait until` a time relative to T0, but this run has no T0")
        }),
        other => Err(wrong_action("wait", other)),
    }
}

fn observe(ctx: &StepContext<'_>) -> anyhow::Result<Check> {
    let now = Utc::now();
    Ok(match deadline(ctx)? {
        Some(until) if now >= until => Check::Satisfied(Evidence::new(
            format!("waited until {}", until.format("%H:%M:%S UTC")),
            serde_json::json!({ "until": until }),
        )),
        Some(until) => Check::NotYet(Evidence::new(
            format!("{}s left", (until - now).num_seconds()),
            serde_json::json!({ "until": until }),
        )),
        None => Check::NotYet(Evidence::new("not started", serde_json::Value::Null)),
    })
}

impl StepKind for Wait {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move { Ok(observe(ctx)?) })
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async move {
            let until = deadline(ctx)?.unwrap_or_else(Utc::now);
            ctx.countdown(until, "waiting");
            let left = (until - Utc::now()).to_std().unwrap_or_default();
            ctx.sleep(left).await?;
            Ok(Evidence::new(
                format!("waited until {}", until.format("%H:%M:%S UTC")),
                serde_json::json!({ "until": until }),
            ))
        })
    }

    fn interruptible(&self) -> bool {
        true
    }
}
