//! Engine overhead per step: a generated runbook of 10,000 `port.open`
//! steps against a loopback listener, all already satisfied, run to
//! completion with a durable checkpoint (one WAL commit, synchronous=FULL)
//! per step. Prints steps/s and the engine's own time per step (wall time
//! minus the time spent in the TCP checks), median of 3 runs.
//!
//! `cargo bench -p cutover-engine` (set `CUTOVER_BENCH_STEPS` for another size).

use cutover_engine::{
    BoxFuture, Check, Controls, Engine, Evidence, KindRegistry, NoPrompter, NoReporter, Opened,
    RunOptions, RunOutcome, StepContext, StepKind, StepResult, open_run,
};
use cutover_lang::{
    Action, ActionKind, FileId, Host, HostId, PortTarget, Runbook, Span, Step, Transport,
};
use cutover_store::Store;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A real `port.open` check: one TCP connect to loopback per step.
struct ConnectCheck {
    nanos: AtomicU64,
}

impl StepKind for ConnectCheck {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            let started = Instant::now();
            let ActionKind::PortOpen { targets, .. } = &ctx.action.kind else {
                return Err(anyhow::anyhow!("not a port.open step").into());
            };
            let Some(target) = targets.iter().next() else {
                return Err(anyhow::anyhow!("a port.open step without targets").into());
            };
            let addr = SocketAddr::new(ctx.runbook.host(target.host).addr, target.port);
            tokio::net::TcpStream::connect(addr)
                .await
                .map_err(anyhow::Error::from)?;
            self.nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            Ok(Check::Satisfied(Evidence::new(
                format!("open: {addr}"),
                serde_json::json!({ "addr": addr.to_string() }),
            )))
        })
    }

    fn act<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async { Ok(Evidence::new("nothing to do", serde_json::Value::Null)) })
    }
}

struct Registry(&'static ConnectCheck);

impl KindRegistry for Registry {
    fn kind_for(&self, _action: &ActionKind) -> anyhow::Result<&'static dyn StepKind> {
        Ok(self.0)
    }
}

fn runbook(steps: usize, port: u16) -> Runbook {
    let span = Span::new(FileId(0), 0, 0);
    let host = Host {
        name: "lab".into(),
        site: None,
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        transport: Transport::Local { root: ".".into() },
        span,
    };
    let steps = (0..steps)
        .map(|i| Step {
            name: format!("port-{i}"),
            at: None,
            after: Vec::new(),
            action: Action {
                kind: ActionKind::PortOpen {
                    targets: vec![PortTarget {
                        host: HostId(0),
                        port,
                    }]
                    .into(),
                    from: None,
                },
                span,
            },
            undo: None,
            verify: Vec::new(),
            timeout: None,
            retry: 0,
            expect: None,
            span,
        })
        .collect();
    Runbook {
        name: "bench".into(),
        title: None,
        window: None,
        links: Vec::new(),
        keys: Vec::new(),
        zones: Vec::new(),
        hosts: vec![host],
        groups: Vec::new(),
        steps,
        span,
    }
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("CUTOVER_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Runtime::new()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let runbook = runbook(n, port);
    let mut figures = Vec::new();
    for _ in 0..3 {
        let kind: &'static ConnectCheck = Box::leak(Box::new(ConnectCheck {
            nanos: AtomicU64::new(0),
        }));
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("bench.db"))?;
        let Opened::New(state) = open_run(store, &runbook, "bench.runbook", "hash", None)? else {
            anyhow::bail!("a fresh state file should start a new run");
        };
        let options = RunOptions::default();
        let registry = Registry(kind);
        let engine = Engine {
            runbook: &runbook,
            kinds: &registry,
            reporter: &NoReporter,
            prompter: &NoPrompter,
            options: &options,
        };
        let started = Instant::now();
        let outcome = runtime.block_on(engine.run(&state, &Controls::default()))?;
        let wall = started.elapsed();
        anyhow::ensure!(outcome == RunOutcome::Completed, "run ended {outcome:?}");
        let done = state
            .store()
            .steps(state.run_id())?
            .iter()
            .filter(|s| s.status == cutover_store::StepStatus::Done)
            .count();
        anyhow::ensure!(done == n, "{done} of {n} steps done");
        let checks = Duration::from_nanos(kind.nanos.load(Ordering::Relaxed));
        figures.push((wall, checks));
    }
    figures.sort();
    let (wall, checks) = figures[1];
    let per_step = wall.as_secs_f64() * 1e3 / n as f64;
    let overhead = (wall.saturating_sub(checks)).as_secs_f64() * 1e3 / n as f64;
    println!(
        "satisfied_steps: {n} steps in {:.2}s (median of 3)",
        wall.as_secs_f64()
    );
    println!(
        "satisfied_steps: {:.0} steps/s, {per_step:.3} ms/step",
        n as f64 / wall.as_secs_f64()
    );
    println!(
        "satisfied_steps: engine overhead {overhead:.3} ms/step (checks took {:.3} ms/step; goal <= 0.5 ms)",
        checks.as_secs_f64() * 1e3 / n as f64
    );
    Ok(())
}
