//! Manual gates: a confirmation belongs to a gate that is waiting, and
//! nothing typed before a question answers it.

use super::{Reap, cutover, eventually, journal, output, status_of, write};
use cutover_store::{StepStatus, Store};
use std::process::Stdio;
use std::time::{Duration, Instant};

const GATED: &str = "runbook gated

step settle
  wait 2s

step freeze after settle
  manual \"stop the writers on db1 and db2\"

step after-freeze after freeze
  exec \"echo after >> j\"
  verify exec \"grep -qx after j\"
";

#[test]
fn an_early_confirmation_is_refused_and_one_given_ahead_is_shown_at_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "gated.runbook", GATED);
    let mut run = Reap(
        cutover(d)
            .args(["run", "gated.runbook"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    eventually("the run to start its wait", || {
        d.join(".cutover/gated.db").exists()
            && status_of(d, "gated", "settle") == StepStatus::Running
    });

    // The run has not reached the gate: a plain confirmation is refused.
    let (code, out, err) = output(cutover(d).args(["confirm", "freeze", "gated.runbook"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("`freeze` was not confirmed"), "{err}");
    assert!(err.contains("pending (not reached yet)"), "{err}");
    assert!(err.contains("--ahead"), "{err}");

    // With --ahead it is recorded as given ahead; the gate is still shown.
    let (code, out, err) = output(cutover(d).args([
        "confirm",
        "freeze",
        "gated.runbook",
        "--ahead",
        "--note",
        "writers off",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let (status, stdout) = run.finish();
    assert!(status.success(), "{stdout}");
    assert!(
        stdout.contains("stop the writers on db1 and db2 — passed: confirmed ahead by tester"),
        "{stdout}"
    );
    assert_eq!(journal(d), "after\n");

    // The evidence says it was given ahead.
    let store = Store::open_existing(&d.join(".cutover/gated.db")).unwrap();
    let run_id = store.latest_run().unwrap().unwrap().id;
    let freeze = store.step(run_id, "freeze").unwrap().unwrap();
    assert!(
        freeze
            .last_evidence
            .as_deref()
            .is_some_and(|e| e.contains("confirmed ahead by tester") && e.contains("writers off")),
        "{freeze:?}"
    );
    drop(store);

    // A done gate, a finished run: never confirmed again, not even ahead.
    for extra in [&[][..], &["--ahead"][..]] {
        let (code, _, err) = output(
            cutover(d)
                .args(["confirm", "freeze", "gated.runbook"])
                .args(extra),
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("the run is finished (completed)"), "{err}");
    }
}

#[test]
fn a_stopped_run_refuses_a_confirmation_of_its_gate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "gated.runbook", GATED);
    let mut run = Reap(
        cutover(d)
            .args(["run", "gated.runbook"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("the run to wait at the gate", || {
        d.join(".cutover/gated.db").exists()
            && status_of(d, "gated", "freeze") == StepStatus::Running
    });
    // The coordinator is gone; the gate is not waiting for anyone.
    run.0.kill().unwrap();
    run.0.wait().unwrap();
    let (code, _, err) = output(cutover(d).args(["confirm", "freeze", "gated.runbook"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`freeze` was not confirmed"), "{err}");
    let (code, out, _) = output(cutover(d).args(["status", "gated.runbook"]));
    assert_eq!(code, 0);
    assert!(out.contains("its process is gone"), "{out}");
    // A mistyped step: the closest one is named.
    let (code, _, err) = output(cutover(d).args(["confirm", "frezee", "gated.runbook"]));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("has no step `frezee`; did you mean `freeze`?"),
        "{err}"
    );
}

#[test]
fn status_says_a_gate_waits_for_confirmation_with_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "gated.runbook", GATED);
    let _run = Reap(
        cutover(d)
            .args(["run", "gated.runbook"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut seen = String::new();
    eventually("status to show the waiting gate", || {
        let (_, out, _) = output(cutover(d).args(["status", "gated.runbook"]));
        seen = out;
        seen.contains("waiting for confirmation: stop the writers on db1 and db2")
    });
    assert!(!seen.contains("running (act)"), "{seen}");
    let (code, out, err) = output(cutover(d).args(["confirm", "freeze", "gated.runbook"]));
    assert_eq!(code, 0, "{out}{err}");
}

/// Waits until `pattern` shows in the terminal, then a little longer, so
/// that what is typed next lands while nothing asks.
fn settle(pty: &mut rexpect::session::PtySession, pattern: &str) {
    pty.exp_string(pattern).unwrap();
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn keys_typed_ahead_answer_no_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "two-gates.runbook",
        "runbook two-gates

step first
  manual \"detach the old array\"

step long after first
  exec \"sleep 2 && echo long >> j\"
  verify exec \"grep -qx long j\"

step second after long
  manual \"power off the old rack\"
",
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.current_dir(d)
        .env("USER", "tester")
        .env("NO_COLOR", "1")
        .args(["run", "two-gates.runbook"]);
    let mut pty = rexpect::session::spawn_command(cmd, Some(30_000)).unwrap();
    settle(&mut pty, "detach the old array");
    // A single key is no answer.
    pty.send_line("y").unwrap();
    pty.exp_string("not confirmed (`y`): type the word yes")
        .unwrap();
    pty.send_line("yes array detached").unwrap();
    eventually("`long` to run", || {
        status_of(d, "two-gates", "long") == StepStatus::Running
    });
    // Typed while `long` runs: meant for nothing, it must not pass `second`.
    pty.send_line("yes").unwrap();
    settle(&mut pty, "power off the old rack");
    let since = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        status_of(d, "two-gates", "second"),
        StepStatus::Running,
        "the gate still waits {:?} after it was shown",
        since.elapsed()
    );
    pty.send_line("yes").unwrap();
    pty.exp_string("run complete").unwrap();
    pty.exp_eof().unwrap();
    assert_eq!(status_of(d, "two-gates", "second"), StepStatus::Done);
}
