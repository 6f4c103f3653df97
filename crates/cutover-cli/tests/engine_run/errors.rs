//! Step errors are typed: a failure no attempt can mend fails the step at
//! once, naming the server; one another attempt may mend is retried.

use super::signals::DnsLab;
use super::{cutover, output, write};
use cutover_store::{StepStatus, Store};
use std::time::{Duration, Instant};

fn attempts(dir: &std::path::Path, runbook: &str, step: &str) -> (StepStatus, i64) {
    let store = Store::open_existing(&dir.join(format!(".cutover/{runbook}.db"))).unwrap();
    let run = store.latest_run().unwrap().unwrap().id;
    let record = store.step(run, step).unwrap().unwrap();
    (record.status, record.attempts)
}

#[test]
fn a_refused_swap_fails_at_once_naming_the_server_and_a_failed_command_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lab = DnsLab::start(d, "www 60 IN A 192.0.2.1\n");
    // The record is not what the runbook expects: the compare-and-swap is
    // refused, and would be refused at every attempt.
    let text = lab.header("not-expected")
        + "step switch\n  dns.switch lab.test www A 192.0.2.9 -> 192.0.2.2\n  retry 3\n  timeout 1m\n";
    write(d, "not-expected.runbook", &text);
    let started = Instant::now();
    let (code, out, err) = output(cutover(d).args(["run", "not-expected.runbook"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no retries, no polling: {:?}",
        started.elapsed()
    );
    assert!(
        out.contains("record is not what the runbook expects"),
        "{out}"
    );
    assert!(
        out.contains(&lab.addr.to_string()),
        "names the server: {out}"
    );
    assert_eq!(
        attempts(d, "not-expected", "switch"),
        (StepStatus::Failed, 1)
    );
    assert_eq!(lab.a("www"), vec!["192.0.2.1".to_owned()]);

    // A command that exits non-zero may pass another time: retried.
    write(
        d,
        "flaky.runbook",
        "runbook flaky\n\nstep flaky\n  exec \"false\"\n  retry 2\n",
    );
    let (code, out, err) = output(cutover(d).args(["run", "flaky.runbook"]));
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(attempts(d, "flaky", "flaky"), (StepStatus::Failed, 3));
}

#[test]
fn an_unset_key_variable_or_a_wrong_key_fails_at_preflight_before_any_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lab = DnsLab::start(d, "www 60 IN A 192.0.2.1\n");
    let steps = "step first\n  exec \"echo first >> j\"\n\nstep switch after first\n  dns.switch lab.test www A 192.0.2.1 -> 192.0.2.2\n";

    // The key's variable is not set.
    let text = lab
        .header("unset-key")
        .replace("file:update.key", "env:CUTOVER_TEST_UNSET_KEY")
        + steps;
    write(d, "unset-key.runbook", &text);
    let (code, out, err) = output(
        cutover(d)
            .env_remove("CUTOVER_TEST_UNSET_KEY")
            .args(["run", "unset-key.runbook"]),
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("preflight: zone lab.test: key `update`"),
        "{err}"
    );
    assert!(err.contains(&lab.addr.to_string()), "{err}");
    assert!(
        err.contains("CUTOVER_TEST_UNSET_KEY, which is not set"),
        "{err}"
    );
    assert!(!d.join("j").exists(), "no step ran");
    assert!(
        !d.join(".cutover/unset-key.db").exists(),
        "no run was started"
    );

    // The key's secret is not the server's.
    std::fs::write(
        d.join("wrong.key"),
        "bm90LXRoZS1sYWItc2VjcmV0LWF0LWFsbA==\n",
    )
    .unwrap();
    let text = lab
        .header("wrong-key")
        .replace("file:update.key", "file:wrong.key")
        + steps;
    write(d, "wrong-key.runbook", &text);
    let (code, out, err) = output(cutover(d).args(["run", "wrong-key.runbook"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("preflight: zone lab.test: key `update`"),
        "{err}"
    );
    assert!(err.contains(&lab.addr.to_string()), "{err}");
    assert!(err.contains("refused the signature"), "{err}");
    assert!(
        !err.contains("file an issue"),
        "no text of the DNS library: {err}"
    );
    assert!(!d.join("j").exists(), "no step ran");
    assert_eq!(lab.a("www"), vec!["192.0.2.1".to_owned()]);

    // The key's secret is not base64 at all.
    std::fs::write(d.join("bad.key"), "not base64 at all!\n").unwrap();
    let text = lab
        .header("bad-key")
        .replace("file:update.key", "file:bad.key")
        + steps;
    write(d, "bad-key.runbook", &text);
    let (code, out, err) = output(cutover(d).args(["run", "bad-key.runbook"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("preflight: zone lab.test: key `update` at ")
            && err.contains("TSIG key `update` (file:bad.key): "),
        "{err}"
    );
    assert!(!err.contains("the secret of key"), "{err}");
    assert!(!d.join("j").exists(), "no step ran");
}

#[test]
fn preflight_leaves_out_zones_whose_steps_are_done() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lab = DnsLab::start(d, "www 60 IN A 192.0.2.1\n");
    let text = lab.header("done-zone")
        + "step switch\n  dns.switch lab.test www A 192.0.2.1 -> 192.0.2.2\n\nstep later after switch\n  exec \"echo later >> j\"\n  verify exec \"grep -qx later j\"\n";
    write(d, "done-zone.runbook", &text);
    let (code, out, err) =
        output(cutover(d).args(["run", "done-zone.runbook", "--until", "switch"]));
    assert_eq!(code, 0, "{out}{err}");
    // The primary is gone; the one step left does not need it.
    drop(lab);
    let (code, out, err) = output(cutover(d).args(["run", "done-zone.runbook"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("preflight"), "{err}");
    assert_eq!(attempts(d, "done-zone", "later"), (StepStatus::Done, 1));
}
