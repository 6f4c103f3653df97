//! `port.open` / `port.closed`: a TCP connect to each `host:port` succeeds,
//! or is refused or times out. They change nothing: acting is a no-op and
//! verification polls until the ports are as expected (e.g. a service
//! coming up) or the step's timeout.

use crate::wrong_action;
use cutover_engine::{BoxFuture, Check, Evidence, Interrupted, StepContext, StepKind, StepResult};
use cutover_lang::{ActionKind, PortTarget, PortTargets};
use futures_util::future::join_all;
use std::net::SocketAddr;
use std::time::Duration;

pub struct PortOpen;
pub struct PortClosed;

/// How long one connect may take before the port counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// At most this many connects of one step are in flight at once: a group
/// of unreachable hosts costs about one connect timeout, not one each.
const CONCURRENT_CONNECTS: usize = 64;

/// One connect: the target's label, its address, and whether it accepted.
async fn probe_one(
    ctx: &StepContext<'_>,
    target: &PortTarget,
) -> (String, SocketAddr, Result<(), String>) {
    let host = ctx.runbook.host(target.host);
    let addr = SocketAddr::new(host.addr, target.port);
    let label = format!("{}:{}", host.name, target.port);
    let result =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
        };
    (label, addr, result)
}

/// Connects to every target (groups expanded), [`CONCURRENT_CONNECTS`] at
/// a time; for each, in the targets' order, whether it accepted.
async fn probe(
    ctx: &StepContext<'_>,
    targets: &PortTargets,
) -> Vec<(String, SocketAddr, Result<(), String>)> {
    let mut results = Vec::with_capacity(targets.len());
    let mut targets = targets.iter();
    loop {
        let chunk: Vec<PortTarget> = targets.by_ref().take(CONCURRENT_CONNECTS).collect();
        if chunk.is_empty() {
            break;
        }
        results.extend(join_all(chunk.iter().map(|t| probe_one(ctx, t))).await);
    }
    results
}

async fn observe(ctx: &StepContext<'_>, want_open: bool) -> anyhow::Result<Check> {
    let targets = match (&ctx.action.kind, want_open) {
        (ActionKind::PortOpen { targets }, true) | (ActionKind::PortClosed { targets }, false) => {
            targets
        }
        (other, _) => {
            return Err(wrong_action(
                if want_open {
                    "port.open"
                } else {
                    "port.closed"
                },
                other,
            ));
        }
    };
    let results = tokio::select! {
        r = probe(ctx, targets) => r,
        () = ctx.cancel.cancelled() => return Err(Interrupted.into()),
    };
    let data: Vec<serde_json::Value> = results
        .iter()
        .map(|(label, addr, r)| {
            serde_json::json!({
                "target": label,
                "addr": addr.to_string(),
                "open": r.is_ok(),
                "error": r.as_ref().err(),
            })
        })
        .collect();
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, _, r)| r.is_ok() != want_open)
        .map(|(label, _, r)| match r {
            Ok(()) => format!("{label} open"),
            Err(e) => format!("{label} closed ({e})"),
        })
        .collect();
    let data = serde_json::Value::Array(data);
    let all: Vec<&str> = results.iter().map(|(l, _, _)| l.as_str()).collect();
    Ok(if wrong.is_empty() {
        let state = if want_open { "open" } else { "closed" };
        Check::Satisfied(Evidence::new(format!("{state}: {}", all.join(", ")), data))
    } else {
        Check::NotYet(Evidence::new(wrong.join(", "), data))
    })
}

fn nothing_to_do() -> Evidence {
    Evidence::new("nothing to do (a check)", serde_json::Value::Null)
}

impl StepKind for PortOpen {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move { Ok(observe(ctx, true).await?) })
    }

    fn act<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async { Ok(nothing_to_do()) })
    }
}

impl StepKind for PortClosed {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move { Ok(observe(ctx, false).await?) })
    }

    fn act<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async { Ok(nothing_to_do()) })
    }
}
