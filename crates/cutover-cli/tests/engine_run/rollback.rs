//! Rollback covers every step that may have acted, never reports success
//! while one is not undone, and retries a failed undo.

use super::signals::DnsLab;
use super::{cutover, journal, output, status_of, write};
use cutover_store::{RunStatus, StepStatus, Store};
use std::path::Path;

fn run_status(dir: &Path, runbook: &str) -> RunStatus {
    let store = Store::open_existing(&dir.join(format!(".cutover/{runbook}.db"))).unwrap();
    store.latest_run().unwrap().unwrap().status
}

#[test]
fn rollback_undoes_a_switch_that_acted_but_failed_its_verification() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lab = DnsLab::start(d, "www 60 IN A 192.0.2.1\n");
    // The switch lands at the primary, but its extra check never passes.
    let text = format!(
        "{}step switch\n  dns.switch lab.test www A 192.0.2.1 -> 192.0.2.2\n  undo dns.switch lab.test www A 192.0.2.2 -> 192.0.2.1\n  verify exec \"test -f never\"\n  timeout 1s\n",
        lab.header("failed-switch")
    );
    write(d, "failed-switch.runbook", &text);
    let (code, out, err) = output(cutover(d).args(["run", "failed-switch.runbook"]));
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(status_of(d, "failed-switch", "switch"), StepStatus::Failed);
    assert_eq!(
        lab.a("www"),
        vec!["192.0.2.2".to_owned()],
        "the update landed"
    );

    let (code, out, err) = output(cutover(d).args(["rollback", "failed-switch.runbook", "--yes"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("switch (failed in verify)"), "{out}");
    assert!(out.contains("now: "), "the live value is shown: {out}");
    assert!(out.contains("rolled back: 1 step(s) undone"), "{out}");
    assert_eq!(lab.a("www"), vec!["192.0.2.1".to_owned()], "switched back");
    assert_eq!(status_of(d, "failed-switch", "switch"), StepStatus::Undone);
    assert_eq!(run_status(d, "failed-switch"), RunStatus::RolledBack);
}

#[test]
fn a_failed_undo_stays_failed_and_the_next_rollback_retries_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "undo-fails.runbook",
        "runbook undo-fails

step first
  exec \"echo first >> j\"
  verify exec \"grep -qx first j\"
  undo exec \"echo undo-first >> j\"

step second after first
  exec \"echo second >> j\"
  verify exec \"grep -qx second j\"
  undo exec \"test -f may-undo && echo undo-second >> j\"
",
    );
    let (code, out, _) = output(cutover(d).args(["run", "undo-fails.runbook"]));
    assert_eq!(code, 0, "{out}");

    let (code, out, err) = output(cutover(d).args(["rollback", "undo-fails.runbook", "--yes"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("NOT rolled back completely"), "{out}");
    assert!(out.contains("FAILED: second"), "{out}");
    assert!(out.contains("not reached: first"), "{out}");
    assert_eq!(
        journal(d),
        "first\nsecond\n",
        "nothing older undone past a failure"
    );
    assert_eq!(status_of(d, "undo-fails", "second"), StepStatus::Failed);
    assert_ne!(run_status(d, "undo-fails"), RunStatus::RolledBack);

    // The next rollback tries the failed undo again, then goes on.
    std::fs::write(d.join("may-undo"), "").unwrap();
    let (code, out, err) = output(cutover(d).args(["rollback", "undo-fails.runbook", "--yes"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("second (its undo failed)"), "{out}");
    assert_eq!(journal(d), "first\nsecond\nundo-second\nundo-first\n");
    assert_eq!(run_status(d, "undo-fails"), RunStatus::RolledBack);
}
