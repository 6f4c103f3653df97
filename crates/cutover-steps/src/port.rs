//! `port.open` / `port.closed`: a TCP connect to each `host:port` succeeds,
//! or is refused or times out. They change nothing: acting is a no-op and
//! verification polls until the ports are as expected (e.g. a service
//! coming up) or the step's timeout.

use crate::wrong_action;
use cutover_engine::{BoxFuture, Check, Evidence, StepContext, StepKind};
use cutover_lang::{ActionKind, PortTarget};
use std::net::SocketAddr;
use std::time::Duration;

pub struct PortOpen;
pub struct PortClosed;

/// How long one connect may take before the port counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to each target in turn; for each, whether it accepted.
async fn probe(
    ctx: &StepContext<'_>,
    targets: &[PortTarget],
) -> Vec<(String, SocketAddr, Result<(), String>)> {
    let probes = targets.iter().map(|t| {
        let host = ctx.runbook.host(t.host);
        let addr = SocketAddr::new(host.addr, t.port);
        let label = format!("{}:{}", host.name, t.port);
        async move {
            let result =
                match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                    .await
                {
                    Ok(Ok(_stream)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
                };
            (label, addr, result)
        }
    });
    let mut results = Vec::with_capacity(targets.len());
    for p in probes {
        results.push(p.await);
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
        () = ctx.cancel.cancelled() => anyhow::bail!("interrupted"),
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
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, anyhow::Result<Check>> {
        Box::pin(observe(ctx, true))
    }

    fn act<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, anyhow::Result<Evidence>> {
        Box::pin(async { Ok(nothing_to_do()) })
    }
}

impl StepKind for PortClosed {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, anyhow::Result<Check>> {
        Box::pin(observe(ctx, false))
    }

    fn act<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, anyhow::Result<Evidence>> {
        Box::pin(async { Ok(nothing_to_do()) })
    }
}
