//! `cutover run`, `status`, `confirm` and `rollback` driven through the real
//! binary: the coordinator lock, a runbook changed under a run, skips and
//! their dependents, rollback, and `--step` through a pseudo-terminal; in
//! the modules, what must never surprise a coordinator: gates, signals,
//! rollback of what acted.

mod dns_values;
mod errors;
mod gates;
mod rollback;
mod signals;
mod terminal;

use cutover_store::{StepStatus, Store};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cutover(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .env("USER", "tester");
    cmd
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Each step's status; none before the run is registered in the file.
fn statuses(dir: &Path, runbook: &str) -> Vec<(String, StepStatus)> {
    let Ok(store) = Store::open_existing(&dir.join(format!(".cutover/{runbook}.db"))) else {
        return Vec::new();
    };
    let Some(run) = store.latest_run().unwrap() else {
        return Vec::new();
    };
    store
        .steps(run.id)
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.status))
        .collect()
}

/// A step's status (pending until the run registers it).
fn status_of(dir: &Path, runbook: &str, step: &str) -> StepStatus {
    statuses(dir, runbook)
        .into_iter()
        .find(|(n, _)| n == step)
        .map_or(StepStatus::Pending, |(_, status)| status)
}

fn journal(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("j")).unwrap_or_default()
}

/// An exec step appending its name to the journal `j`, verified by grep.
fn exec_step(name: &str, after: &str, undo: bool) -> String {
    let mut s = format!(
        "step {name}{after}\n  exec \"echo {name} >> j\"\n  verify exec \"grep -qx {name} j\"\n"
    );
    if undo {
        s.push_str(&format!("  undo exec \"echo undo-{name} >> j\"\n"));
    }
    s.push('\n');
    s
}

/// Kills a child run if a test ends early, so none is left waiting.
struct Reap(std::process::Child);

impl Reap {
    /// Waits for the child and returns its status and (piped) stdout.
    fn finish(&mut self) -> (std::process::ExitStatus, String) {
        let mut stdout = String::new();
        if let Some(mut pipe) = self.0.stdout.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stdout).unwrap();
        }
        (self.0.wait().unwrap(), stdout)
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until `f` holds, for at most 20 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_coordinator_is_refused_and_a_stale_lock_needs_take_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "gate.runbook",
        "runbook gate\n\nstep freeze\n  manual \"stop the services\"\n",
    );
    let mut first = Reap(
        cutover(d)
            .args(["run", "gate.runbook"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("the first run to wait at the manual gate", || {
        d.join(".cutover/gate.db").exists() && status_of(d, "gate", "freeze") == StepStatus::Running
    });

    let (code, _, err) = output(cutover(d).args(["run", "gate.runbook"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("in use by another coordinator: tester@"),
        "{err}"
    );
    assert!(err.contains(&format!("(pid {})", first.0.id())), "{err}");

    // The coordinator dies: its lock is stale.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let (code, _, err) = output(cutover(d).args(["run", "gate.runbook"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("whose process is gone; re-run with --take-over"),
        "{err}"
    );

    // Take over, confirm from "another terminal", and the run completes.
    let mut taken = Reap(
        cutover(d)
            .args(["run", "gate.runbook", "--take-over"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = taken.0.id();
    eventually("the taken-over run to hold the lock", || {
        let store = Store::open_existing(&d.join(".cutover/gate.db")).unwrap();
        store.lock_holder().unwrap().is_some_and(|h| h.pid == pid)
    });
    let (code, out, err) =
        output(cutover(d).args(["confirm", "freeze", "gate.runbook", "--note", "all stopped"]));
    assert_eq!(code, 0, "{out}{err}");
    let done = taken.0.wait().unwrap();
    assert!(done.success(), "the taken-over run ended {done}");
    let (code, out, _) = output(cutover(d).args(["status", "gate.runbook"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("confirmed by tester at") && out.contains("all stopped"),
        "{out}"
    );
    assert!(out.contains("coordinator: none"), "{out}");
}

#[test]
fn a_changed_runbook_is_shown_and_runs_only_when_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = format!(
        "runbook change\n\n{}{}",
        exec_step("a", "", false),
        exec_step("b", " after a", false)
    );
    write(d, "change.runbook", &text);
    let (code, out, err) = output(cutover(d).args(["run", "change.runbook"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(journal(d), "a\nb\n");

    let changed = text.replace("echo b >> j", "echo b >> j; echo b2 >> j");
    write(d, "change.runbook", &changed);
    let (code, _, err) = output(cutover(d).args(["run", "change.runbook"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("changed step `b`"), "{err}");
    assert!(
        err.contains("-   exec \"echo b >> j\"")
            && err.contains("+   exec \"echo b >> j; echo b2 >> j\""),
        "{err}"
    );
    assert!(!err.contains("step `a`"), "{err}");
    assert_eq!(
        journal(d),
        "a\nb\n",
        "nothing may run before the change is accepted"
    );

    // Accepted: the changed step is pending again and its check decides.
    let (code, out, err) = output(cutover(d).args(["run", "change.runbook", "--accept-changes"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("b: already satisfied"), "{out}");
    assert_eq!(status_of(d, "change", "b"), StepStatus::Done);
}

#[test]
fn dependents_of_a_skipped_step_stop_the_run_until_skipped_or_forced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = format!(
        "runbook skips\n\n{}{}{}{}",
        exec_step("a", "", false),
        exec_step("b", " after a", false),
        exec_step("c", " after b", false),
        exec_step("d", " after c", false)
    );
    write(d, "skips.runbook", &text);
    let (code, out, _) =
        output(cutover(d).args(["run", "skips.runbook", "--skip", "b", "--parallel", "1"]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("step `c` depends on skipped step `b` and was not run"),
        "{out}"
    );
    assert_eq!(journal(d), "a\n");
    assert_eq!(status_of(d, "skips", "b"), StepStatus::Skipped);
    assert_eq!(status_of(d, "skips", "c"), StepStatus::Pending);

    // The skip is a recorded deviation.
    let store = Store::open_existing(&d.join(".cutover/skips.db")).unwrap();
    let events = store
        .events(store.latest_run().unwrap().unwrap().id)
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "deviation" && e.step.as_deref() == Some("b"))
    );
    drop(store);

    // Forcing c runs it (a deviation too); d depends on c, which is done.
    let (code, out, _) = output(cutover(d).args(["run", "skips.runbook", "--force", "c"]));
    assert_eq!(code, 0, "{out}");
    assert_eq!(journal(d), "a\nc\nd\n");
    assert_eq!(status_of(d, "skips", "b"), StepStatus::Skipped);
}

#[test]
fn rollback_undoes_done_steps_newest_first_and_stops_at_to() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = port.local_addr().unwrap().port();
    drop(port);
    let text = format!(
        "runbook undo\n\nhost lab addr 127.0.0.1 via local .\n\n{}{}step check after b\n  port.closed lab:{closed}\n\n{}{}",
        exec_step("a", "", true),
        exec_step("b", " after a", true),
        exec_step("c", " after check", true),
        exec_step("d", " after c", false)
    );
    write(d, "undo.runbook", &text);
    let (code, out, _) = output(cutover(d).args(["run", "undo.runbook"]));
    assert_eq!(code, 0, "{out}");

    // Without a terminal and without --yes, rollback shows its plan and acts on nothing.
    let (code, out, err) = output(cutover(d).args(["rollback", "undo.runbook", "--to", "a"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("rollback will undo, in this order:"), "{out}");
    assert!(err.contains("nothing was undone"), "{err}");
    assert_eq!(journal(d), "a\nb\nc\nd\n");

    // `d` has no undo line: the rollback is not complete, and says so.
    let (code, out, err) =
        output(cutover(d).args(["rollback", "undo.runbook", "--to", "a", "--yes"]));
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(journal(d), "a\nb\nc\nd\nundo-c\nundo-b\n");
    assert!(out.contains("NOT rolled back completely"), "{out}");
    assert!(out.contains("no undo line, left as they are: d"), "{out}");
    assert_eq!(status_of(d, "undo", "a"), StepStatus::Done);
    assert_eq!(status_of(d, "undo", "b"), StepStatus::Undone);
    assert_eq!(status_of(d, "undo", "check"), StepStatus::Undone);
    assert_eq!(status_of(d, "undo", "d"), StepStatus::Done);

    let (code, out, err) = output(cutover(d).args(["rollback", "undo.runbook", "--yes"]));
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(journal(d), "a\nb\nc\nd\nundo-c\nundo-b\nundo-a\n");
    assert_eq!(status_of(d, "undo", "a"), StepStatus::Undone);
    assert!(out.contains("no undo line, left as they are: d"), "{out}");
}

#[test]
fn step_mode_answers_run_skip_and_stop_through_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = format!(
        "runbook walk\n\n{}{}{}{}",
        exec_step("one", "", false),
        exec_step("two", "", false),
        exec_step("three", "", false),
        exec_step("four", "", false)
    );
    let file = write(d, "walk.runbook", &text);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.current_dir(d).arg("run").arg(&file).arg("--step");
    let mut pty = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    pty.exp_string("exec \"echo one >> j\"").unwrap();
    pty.exp_string("`one`: type run, skip or stop").unwrap();
    pty.send_line("run").unwrap();
    pty.exp_string("one: verified").unwrap();
    pty.exp_string("`two`: type run, skip or stop").unwrap();
    pty.send_line("skip").unwrap();
    pty.exp_string("two: skipped").unwrap();
    pty.exp_string("`three`: type run, skip or stop").unwrap();
    pty.send_line("r").unwrap();
    pty.exp_string("`r` is not an answer: type run, skip or stop (the whole word)")
        .unwrap();
    pty.send_line("run").unwrap();
    pty.exp_string("three: verified").unwrap();
    pty.exp_string("`four`: type run, skip or stop").unwrap();
    pty.send_line("stop").unwrap();
    pty.exp_string("run stopped").unwrap();
    pty.exp_eof().unwrap();

    assert_eq!(journal(d), "one\nthree\n");
    assert_eq!(status_of(d, "walk", "two"), StepStatus::Skipped);
    assert_eq!(status_of(d, "walk", "four"), StepStatus::Pending);

    // A plain run resumes with what is left.
    let (code, out, _) = output(cutover(d).args(["run", "walk.runbook"]));
    assert_eq!(code, 0, "{out}");
    assert_eq!(journal(d), "one\nthree\nfour\n");
}
