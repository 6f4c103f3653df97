//! `cutover plan --probe` against a real authoritative server on loopback:
//! the live diff tells a change from a no-op and from drift.

use std::process::Command;
use std::time::Duration;

use cutover_dns::{ServeConfig, ZoneSource, serve};

const ZONE: &str = "$ORIGIN probe.test.
$TTL 3600
@     IN SOA ns1.probe.test. hostmaster.probe.test. 7 60 60 600 5
@     IN NS  ns1.probe.test.
ns1   IN A   127.0.0.1
www   IN A   192.0.2.1
wiki  IN A   192.0.2.9
done  300 IN A 192.0.2.40
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_shows_changes_no_ops_and_drift() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.zone"), ZONE).unwrap();
    let server = serve(ServeConfig {
        zones: vec![ZoneSource {
            name: "probe.test".into(),
            file: dir.path().join("probe.zone"),
        }],
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        keys: Vec::new(),
        state_dir: dir.path().join("state"),
        allow_transfer: Vec::new(),
    })
    .await
    .unwrap();
    let addr = server.addresses()[0];
    let runbook = dir.path().join("probe.runbook");
    std::fs::write(
        &runbook,
        format!(
            "runbook probe
  window 2026-01-01 00:00 UTC for 1h

zone probe.test
  primary {addr}
  verify  {addr}

step lower at T-2h
  dns.ttl probe.test www A 300 was 1h

step restore-done at T-2h
  dns.ttl probe.test done A 300

step switch-www at T0
  dns.switch probe.test www A 192.0.2.1 -> 192.0.2.2
  undo dns.switch probe.test www A 192.0.2.2 -> 192.0.2.1

step switch-wiki at T0
  dns.switch probe.test wiki A 192.0.2.5 -> 192.0.2.6
  undo dns.switch probe.test wiki A 192.0.2.6 -> 192.0.2.5
"
        ),
    )
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_cutover");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            Command::new(binary)
                .arg("plan")
                .arg("--probe")
                .arg(&runbook)
                .output()
                .unwrap()
        }),
    )
    .await
    .expect("plan --probe ends within a minute")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("~ www.probe.test A TTL 3600s -> 300s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("= done.probe.test A TTL already 300s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("~ www.probe.test A 192.0.2.1 -> 192.0.2.2"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "! wiki.probe.test A: expected 192.0.2.5, but {addr} serves 192.0.2.9"
        )),
        "{stderr}"
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "drift makes the plan fail: {stderr}"
    );
    server.shutdown().await.unwrap();
}
