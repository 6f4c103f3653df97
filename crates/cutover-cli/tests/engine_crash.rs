//! The crash test: a runbook of 30 steps (exec steps appending to a journal
//! with idempotent checks, waits, port checks against loopback listeners)
//! run by the real binary, killed with SIGKILL at random instants and
//! resumed each time. At the end every step is done, no step's action is in
//! the journal after its verification had succeeded (each exactly once),
//! and the state file passes `PRAGMA integrity_check`.
//!
//! `CUTOVER_CRASH_KILLS=N` sets the number of kills (default 100);
//! `CUTOVER_CRASH_SEED` replays a sequence of kill instants.

use chrono::{DateTime, Utc};
use cutover_store::{StepStatus, Store};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const STEPS: usize = 30;

/// A loopback listener that accepts and drops connections until stopped
/// or for at most five minutes.
fn listener(stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => drop(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    port
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn runbook(open: &[u16], closed: u16) -> (String, Vec<String>) {
    let mut text = String::from("runbook crash\n\nhost lab addr 127.0.0.1 via local .\n\n");
    let mut execs = Vec::new();
    for i in 0..STEPS {
        let name = format!("s{i:02}");
        // A chain with some fan-out: every step waits for one before it.
        let after = match i {
            0 => String::new(),
            i if i % 4 == 0 => format!(" after s{:02}", i - 2),
            i => format!(" after s{:02}", i - 1),
        };
        text.push_str(&format!("step {name}{after}\n"));
        match i % 10 {
            3 => text.push_str(&format!("  port.open lab:{}\n", open[i % open.len()])),
            6 => text.push_str("  wait 4s\n"),
            8 => text.push_str(&format!("  port.closed lab:{closed}\n")),
            _ => {
                text.push_str(&format!(
                    "  exec on lab \"echo {name} $(date +%s%N) >> journal\"\n  verify exec on lab \"grep -q '^{name} ' journal\"\n"
                ));
                execs.push(name);
            }
        }
        text.push('\n');
    }
    (text, execs)
}

/// A small xorshift generator: reproducible kill instants from a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn run_command(file: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.arg("run")
        .arg(file)
        .args(["--take-over", "--parallel", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so a kill takes its commands with it, as
        // a crash of the coordinator's machine would.
        .process_group(0);
    cmd
}

#[test]
fn resume_after_sigkill_at_random_instants() {
    let kills: usize = std::env::var("CUTOVER_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("CUTOVER_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or(1).unsigned_abs() | 1);
    eprintln!("crash test: {kills} kills, seed {seed} (CUTOVER_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);

    let stop = Arc::new(AtomicBool::new(false));
    let open: Vec<u16> = (0..3).map(|_| listener(stop.clone())).collect();
    let dir = tempfile::tempdir().unwrap();
    let (text, execs) = runbook(&open, closed_port());
    let file = dir.path().join("crash.runbook");
    std::fs::write(&file, text).unwrap();

    // Kill until `kills` runs were killed before the run was complete;
    // bounded by the run's own length (three 4 s waits in a chain).
    let db = dir.path().join(".cutover/crash.db");
    let complete = || {
        Store::open_existing(&db)
            .ok()
            .and_then(|s| s.latest_run().ok().flatten())
            .is_some_and(|r| r.status == cutover_store::RunStatus::Completed)
    };
    let started = Instant::now();
    let mut killed = 0;
    while killed < kills && !complete() {
        let mut child = run_command(&file).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        let pgid = i32::try_from(child.id()).unwrap();
        // SAFETY: sends SIGKILL to the process group of a child we started.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        if !child.wait().unwrap().success() {
            killed += 1;
        }
    }
    let status = run_command(&file)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "crash test: {killed} runs killed before the run was complete, in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        killed >= kills,
        "only {killed} of {kills} kills landed before the run finished"
    );
    assert!(
        status.success(),
        "the final resume did not complete: {status}"
    );

    let store = Store::open_existing(&dir.path().join(".cutover/crash.db")).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let run = store.latest_run().unwrap().unwrap();
    let steps = store.steps(run.id).unwrap();
    assert_eq!(steps.len(), STEPS);
    for step in &steps {
        assert_eq!(
            step.status,
            StepStatus::Done,
            "step {} is {:?}",
            step.name,
            step.status
        );
    }

    let journal = std::fs::read_to_string(dir.path().join("journal")).unwrap();
    for name in &execs {
        let step = steps.iter().find(|s| &s.name == name).unwrap();
        let verified: DateTime<Utc> = step.finished_at.unwrap();
        let entries: Vec<DateTime<Utc>> = journal
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(|ns| DateTime::from_timestamp_nanos(ns.trim().parse::<i64>().unwrap()))
            .collect();
        assert_eq!(
            entries.len(),
            1,
            "step {name} acted {} times: {journal}",
            entries.len()
        );
        for at in entries {
            assert!(
                at <= verified,
                "step {name} acted at {at}, after its verification at {verified}"
            );
        }
    }
}
