//! `exec` through the real engine: a cancelled command dies with its whole
//! process group, a command over its step's `timeout` is killed and fails
//! naming the host, and printed secrets are masked in the state file.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use cutover_engine::{Controls, Engine, NoPrompter, NoReporter, Opened, RunOptions, open_run};
use cutover_steps::Kinds;
use cutover_store::Store;

/// Loads `text` as `test.runbook` in `dir` and runs it to its end (at most
/// a minute) under `controls`.
async fn run(dir: &Path, text: &str, controls: &Controls) -> anyhow::Result<()> {
    let path = dir.join("test.runbook");
    std::fs::write(&path, text)?;
    let loaded = cutover_lang::load_file(&path);
    let Some(runbook) = loaded.runbook else {
        anyhow::bail!(
            "{}",
            cutover_lang::render_human(&loaded.sources, &loaded.diagnostics, false)
        );
    };
    let store = Store::open(&dir.join(".cutover/test.db"))?;
    let state = match open_run(store, &runbook, "test.runbook", "hash", Some(Utc::now()))? {
        Opened::New(state) | Opened::Resumed(state) => state,
        Opened::Changed { .. } => anyhow::bail!("a fresh state file holds a changed run"),
    };
    let options = RunOptions {
        runbook_dir: dir.to_path_buf(),
        default_timeout: Duration::from_secs(20),
        ..RunOptions::default()
    };
    let engine = Engine {
        runbook: &runbook,
        kinds: &Kinds,
        reporter: &NoReporter,
        prompter: &NoPrompter,
        options: &options,
    };
    tokio::time::timeout(Duration::from_secs(60), engine.run(&state, controls))
        .await
        .map_err(|_| anyhow::anyhow!("the run did not end within a minute"))??;
    Ok(())
}

/// Whether process `pid` is gone (or a zombie waiting to be reaped).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn all_events(dir: &Path) -> String {
    let store = Store::open(&dir.join(".cutover/test.db")).unwrap();
    let run = store.latest_run().unwrap().unwrap();
    let mut text = String::new();
    for e in store.events(run.id).unwrap() {
        text.push_str(&format!("{} {} {:?}\n", e.kind, e.message, e.data));
    }
    for e in store.evidence(run.id).unwrap() {
        text.push_str(&format!("evidence {} {}\n", e.summary, e.data));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_command_dies_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let controls = Controls::default();
    let runner = {
        let controls = controls.clone();
        let d = d.clone();
        tokio::spawn(async move {
            run(
                &d,
                "runbook grp\n\nstep hang\n  exec \"sleep 300 & echo $! > pid; wait\"\n",
                &controls,
            )
            .await
        })
    };
    let pid_file = d.join("pid");
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && !text.trim().is_empty()
        {
            break text.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!gone(&pid), "the grandchild is not running");
    let aborted = Instant::now();
    controls.abort();
    let mut dead = false;
    for _ in 0..100 {
        if gone(&pid) {
            dead = true;
            break;
        }
        if aborted.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dead, "sleep {pid} outlived the cancel by 2 s");
    let ended = tokio::time::timeout(Duration::from_secs(10), runner).await;
    assert!(ended.is_ok(), "the run did not end after the abort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_its_timeout_is_killed_and_fails_naming_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("web")).unwrap();
    let started = Instant::now();
    run(
        d,
        "runbook slow\n\nhost web addr 127.0.0.1 via local web\n\nstep hang\n  exec on web \"sleep 300 & echo $! > pid; wait\"\n  timeout 1s\n",
        &Controls::default(),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let events = all_events(d);
    assert!(
        events.contains("`sleep 300 & echo $! > pid; wait` on web did not finish within 1s"),
        "{events}"
    );
    let pid = std::fs::read_to_string(d.join("web/pid")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !gone(pid.trim()) {
        assert!(
            Instant::now() < deadline,
            "the timed-out command's child lives on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_secrets_are_masked_in_output_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=";
    std::fs::write(d.join("k.key"), format!("{secret}\n")).unwrap();
    run(
        d,
        "runbook sec\n\nkey k hmac-sha256 file:k.key\n\nstep show\n  exec \"cat k.key; echo; base64 -d k.key; echo; cat k.key >&2; exit 3\"\n",
        &Controls::default(),
    )
    .await
    .unwrap();
    let events = all_events(d);
    assert!(!events.contains(secret), "{events}");
    assert!(
        !events.contains("secret-secret-secret-secret-1234"),
        "{events}"
    );
    assert!(events.contains("[secret k]"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_get_a_scrubbed_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(
        d,
        "runbook envs\n\nstep show\n  exec \"env > seen; test -n \\\"$PATH\\\"\"\n",
        &Controls::default(),
    )
    .await
    .unwrap();
    let seen = std::fs::read_to_string(d.join("seen")).unwrap();
    for line in seen.lines() {
        let name = line.split('=').next().unwrap_or("");
        assert!(
            [
                "PATH", "HOME", "LANG", "LC_ALL", "TERM", "PWD", "SHLVL", "_", "OLDPWD"
            ]
            .contains(&name)
                || name.starts_with("LC_"),
            "the command saw {name}"
        );
    }
}
