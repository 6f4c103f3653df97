//! Progress and countdowns reach the state file, where the dashboard (a
//! separate process) reads them: a kind reporting progress hundreds of
//! times in a few seconds, run by the real engine, leaves one `progress`
//! event a second plus the final one, while the terminal's reporter sees
//! every report; a countdown is logged once, as it starts.

use chrono::{DateTime, Utc};
use cutover_engine::{
    BoxFuture, Check, Controls, Engine, Evidence, KindRegistry, NoPrompter, Opened, Reporter,
    RunEvent, RunOptions, RunOutcome, StepContext, StepKind, StepResult, open_run,
};
use cutover_lang::ActionKind;
use cutover_store::{EventRecord, Store};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TOTAL: u64 = 64 << 20;
const REPORTS: u64 = 250;
const EVERY: Duration = Duration::from_millis(10);

/// Copies nothing, but reports progress like a copy: `REPORTS` times, every
/// `EVERY`, then the total (twice); and starts one countdown (twice).
struct FakeCopy {
    acted: AtomicBool,
}

impl StepKind for FakeCopy {
    fn check<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            let evidence = Evidence::new("fake", serde_json::Value::Null);
            Ok(if self.acted.load(Ordering::SeqCst) {
                Check::Satisfied(evidence)
            } else {
                Check::NotYet(evidence)
            })
        })
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async move {
            ctx.countdown(until(), "settling");
            // Repeated, as a kind may from every verification.
            ctx.countdown(until(), "settling");
            for i in 0..REPORTS {
                ctx.progress(i * (TOTAL / REPORTS), Some(TOTAL), "bytes");
                ctx.sleep(EVERY).await?;
            }
            ctx.progress(TOTAL, Some(TOTAL), "bytes");
            ctx.progress(TOTAL, Some(TOTAL), "bytes");
            self.acted.store(true, Ordering::SeqCst);
            Ok(Evidence::new("copied", serde_json::Value::Null))
        })
    }
}

fn until() -> DateTime<Utc> {
    "2030-01-01T00:00:05Z".parse().unwrap()
}

struct Registry(&'static FakeCopy);

impl KindRegistry for Registry {
    fn kind_for(&self, _action: &ActionKind) -> anyhow::Result<&'static dyn StepKind> {
        Ok(self.0)
    }
}

/// Counts what the terminal would see.
#[derive(Default)]
struct Collect(Mutex<Vec<RunEvent>>);

impl Reporter for Collect {
    fn event(&self, event: &RunEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[tokio::test]
async fn progress_is_logged_at_most_once_a_second_and_at_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.runbook");
    let text = "runbook copy\n\nstep copy\n  exec \"true\"\n";
    let runbook = cutover_lang::parse_source(&path, text.to_owned())
        .runbook
        .expect("the runbook parses");
    let store = Store::open(&dir.path().join("copy.db")).unwrap();
    let Opened::New(state) = open_run(store, &runbook, "copy.runbook", "hash", None).unwrap()
    else {
        panic!("a new state file holds a new run");
    };
    static KIND: FakeCopy = FakeCopy {
        acted: AtomicBool::new(false),
    };
    let reporter = Collect::default();
    let options = RunOptions::default();
    let engine = Engine {
        runbook: &runbook,
        kinds: &Registry(&KIND),
        reporter: &reporter,
        prompter: &NoPrompter,
        options: &options,
    };
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        engine.run(&state, &Controls::default()),
    )
    .await
    .expect("the run ends within a minute")
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(outcome, RunOutcome::Completed);

    let reported = reporter
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, RunEvent::Progress { .. }))
        .count();
    assert_eq!(
        reported as u64,
        REPORTS + 2,
        "the terminal sees every report"
    );

    let events = state.store().events(state.run_id()).unwrap();
    let of =
        |kind: &str| -> Vec<&EventRecord> { events.iter().filter(|e| e.kind == kind).collect() };
    let progress = of("progress");
    let done: Vec<u64> = progress
        .iter()
        .map(|e| e.data.as_ref().unwrap()["done"].as_u64().unwrap())
        .collect();
    // One at the start, one per full second, the total: no more.
    let most = elapsed.as_secs() + 2;
    assert!(
        (3..=most as usize).contains(&progress.len()),
        "{} progress events in {elapsed:?}: {done:?}",
        progress.len()
    );
    assert_eq!(done.first(), Some(&0), "the first report is logged");
    assert_eq!(done.last(), Some(&TOTAL), "the total is logged, once");
    assert!(
        done[..done.len() - 1].iter().all(|d| *d < TOTAL),
        "{done:?}"
    );
    for pair in progress[..progress.len() - 1].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= chrono::TimeDelta::milliseconds(990),
            "logged {gap} apart: {done:?}"
        );
    }
    let data = progress[0].data.as_ref().unwrap();
    assert_eq!(data["total"], TOTAL);
    assert_eq!(data["unit"], "bytes");
    assert_eq!(progress[0].step.as_deref(), Some("copy"));

    let countdowns = of("countdown");
    assert_eq!(countdowns.len(), 1, "logged once, as it starts");
    let shown = reporter
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, RunEvent::Countdown { .. }))
        .count();
    assert_eq!(shown, 2, "the terminal sees both");
    let data = countdowns[0].data.as_ref().unwrap();
    assert_eq!(
        serde_json::from_value::<DateTime<Utc>>(data["until"].clone()).unwrap(),
        until()
    );
    assert_eq!(data["label"], "settling");
    assert_eq!(countdowns[0].message, "settling until 00:00:05 UTC");
}
