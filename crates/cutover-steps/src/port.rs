//! `port.open` / `port.closed`: a TCP connect to each `host:port` succeeds,
//! or is refused or times out. They change nothing: acting is a no-op and
//! verification polls until the ports are as expected (e.g. a service
//! coming up) or the step's timeout. With `from HOST` the connects are made
//! on that host ([`Vantage`]) and the evidence names it and its address.

use crate::vantage::Vantage;
use crate::wrong_action;
use cutover_engine::{BoxFuture, Check, Evidence, Interrupted, StepContext, StepKind, StepResult};
use cutover_lang::{ActionKind, PortTarget, PortTargets};
use std::net::SocketAddr;
use std::time::Duration;

pub struct PortOpen;
pub struct PortClosed;

/// How long one connect may take before the port counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// At most this many connects of one step are in flight at once: a group
/// of unreachable hosts costs about one connect timeout, not one each.
const CONCURRENT_CONNECTS: usize = 64;

/// Connects to every target (groups expanded) from `vantage`,
/// [`CONCURRENT_CONNECTS`] at a time; for each, in the targets' order, its
/// label, its address and whether it accepted (from an agent, with the
/// connection's address on that host).
async fn probe(
    ctx: &StepContext<'_>,
    targets: &PortTargets,
    vantage: &Vantage,
) -> StepResult<Vec<(String, SocketAddr, Result<Option<String>, String>)>> {
    let (labels, addrs): (Vec<String>, Vec<SocketAddr>) = targets
        .iter()
        .map(|target: PortTarget| {
            let host = ctx.runbook.host(target.host);
            (
                format!("{}:{}", host.name, target.port),
                SocketAddr::new(host.addr, target.port),
            )
        })
        .unzip();
    let results = vantage
        .connect_all(&addrs, CONNECT_TIMEOUT, CONCURRENT_CONNECTS)
        .await?;
    Ok(labels
        .into_iter()
        .zip(addrs)
        .zip(results)
        .map(|((label, addr), result)| (label, addr, result))
        .collect())
}

async fn observe(ctx: &StepContext<'_>, want_open: bool) -> StepResult<Check> {
    let (targets, from) = match (&ctx.action.kind, want_open) {
        (ActionKind::PortOpen { targets, from }, true)
        | (ActionKind::PortClosed { targets, from }, false) => (targets, *from),
        (other, _) => {
            return Err(wrong_action(
                if want_open {
                    "port.open"
                } else {
                    "port.closed"
                },
                other,
            )
            .into());
        }
    };
    let vantage = Vantage::of(ctx, from);
    let results = tokio::select! {
        r = probe(ctx, targets, &vantage) => r?,
        () = ctx.cancel.cancelled() => return Err(Interrupted.into()),
    };
    let data: Vec<serde_json::Value> = results
        .iter()
        .map(|(label, addr, r)| {
            let mut entry = serde_json::json!({
                "target": label,
                "addr": addr.to_string(),
                "open": r.is_ok(),
                "error": r.as_ref().err(),
            });
            if from.is_some() {
                entry["from"] = vantage.json();
                if let Ok(Some(local)) = r {
                    entry["local"] = local.clone().into();
                }
            }
            entry
        })
        .collect();
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, _, r)| r.is_ok() != want_open)
        .map(|(label, _, r)| match r {
            Ok(_) => format!("{label} open"),
            Err(e) => format!("{label} closed ({e})"),
        })
        .collect();
    let data = serde_json::Value::Array(data);
    let all: Vec<&str> = results.iter().map(|(l, _, _)| l.as_str()).collect();
    let place = vantage
        .place()
        .map_or_else(String::new, |from| format!(" {from}"));
    Ok(if wrong.is_empty() {
        let state = if want_open { "open" } else { "closed" };
        Check::Satisfied(Evidence::new(
            format!("{state}{place}: {}", all.join(", ")),
            data,
        ))
    } else {
        Check::NotYet(Evidence::new(format!("{}{place}", wrong.join(", ")), data))
    })
}

fn nothing_to_do() -> Evidence {
    Evidence::new("nothing to do (a check)", serde_json::Value::Null)
}

impl StepKind for PortOpen {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(observe(ctx, true))
    }

    fn act<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async { Ok(nothing_to_do()) })
    }
}

impl StepKind for PortClosed {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(observe(ctx, false))
    }

    fn act<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async { Ok(nothing_to_do()) })
    }
}
