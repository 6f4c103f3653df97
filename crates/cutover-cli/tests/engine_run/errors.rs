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
fn a_refused_key_fails_at_once_naming_the_server_and_a_failed_command_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lab = DnsLab::start(d, "www 60 IN A 192.0.2.1\n");
    // The runbook's key file holds another secret than the server's key.
    let text = lab
        .header("wrong-key")
        .replace("file:update.key", "file:wrong.key")
        + "step switch\n  dns.switch lab.test www A 192.0.2.1 -> 192.0.2.2\n  retry 3\n  timeout 1m\n";
    std::fs::write(
        d.join("wrong.key"),
        "bm90LXRoZS1sYWItc2VjcmV0LWF0LWFsbA==\n",
    )
    .unwrap();
    write(d, "wrong-key.runbook", &text);
    let started = Instant::now();
    let (code, out, err) = output(cutover(d).args(["run", "wrong-key.runbook"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no retries, no polling: {:?}",
        started.elapsed()
    );
    assert!(out.contains("TSIG authentication failed"), "{out}");
    assert!(
        out.contains(&lab.addr.to_string()),
        "names the server: {out}"
    );
    assert_eq!(attempts(d, "wrong-key", "switch"), (StepStatus::Failed, 1));
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
