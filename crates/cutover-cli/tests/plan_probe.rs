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
    let drift = format!("! wiki.probe.test A: expected 192.0.2.5, but {addr} serves 192.0.2.9");
    // Every format carries the live diff: text and Markdown as lines, JSON
    // as entries.
    for format in ["text", "markdown"] {
        let output = plan_probe(&runbook, format, 60).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in [
            "~ www.probe.test A TTL 3600s -> 300s",
            "= done.probe.test A TTL already 300s",
            "~ www.probe.test A 192.0.2.1 -> 192.0.2.2",
            drift.as_str(),
        ] {
            assert!(stdout.contains(line), "{format}: {line}\n{stdout}");
        }
        assert_eq!(
            output.status.code(),
            Some(1),
            "drift makes the plan fail: {stderr}"
        );
    }
    let output = plan_probe(&runbook, "json", 60).await;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let live = json["live"].as_array().unwrap();
    let entry = |kind: &str, text: &str| {
        live.iter()
            .any(|l| l["kind"] == kind && l["text"].as_str().is_some_and(|t| t.contains(text)))
    };
    assert!(
        entry("change", "www.probe.test A TTL 3600s -> 300s"),
        "{json}"
    );
    assert!(
        entry("no-op", "done.probe.test A TTL already 300s"),
        "{json}"
    );
    assert!(
        entry("drift", "wiki.probe.test A: expected 192.0.2.5"),
        "{json}"
    );
    assert!(
        live.iter()
            .any(|l| l["step"] == "switch-wiki" && l["kind"] == "drift"),
        "{json}"
    );
    server.shutdown().await.unwrap();
}

/// `cutover plan --probe RUNBOOK --format FORMAT`, bounded.
async fn plan_probe(runbook: &std::path::Path, format: &str, secs: u64) -> std::process::Output {
    let binary = env!("CARGO_BIN_EXE_cutover");
    let (runbook, format) = (runbook.to_owned(), format.to_owned());
    tokio::time::timeout(
        Duration::from_secs(secs),
        tokio::task::spawn_blocking(move || {
            Command::new(binary)
                .arg("plan")
                .arg("--probe")
                .arg(&runbook)
                .args(["--format", &format])
                .output()
                .unwrap()
        }),
    )
    .await
    .expect("plan --probe ends in time")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_answer_is_a_warning_and_fails_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    // A free port with nothing behind it: no answer.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let runbook = dir.path().join("silent.runbook");
    std::fs::write(
        &runbook,
        format!(
            "runbook silent
  window 2026-01-01 00:00 UTC for 1h

zone silent.test
  primary {silent}
  verify  {silent}

step lower at T-2h
  dns.ttl silent.test www A 300 was 1h

step switch at T0
  dns.switch silent.test www A 192.0.2.1 -> 192.0.2.2
  undo dns.switch silent.test www A 192.0.2.2 -> 192.0.2.1
"
        ),
    )
    .unwrap();
    let output = plan_probe(&runbook, "json", 120).await;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let warnings: Vec<&serde_json::Value> = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "probe-failed")
        .collect();
    assert!(!warnings.is_empty(), "{json}");
    assert!(
        warnings.iter().all(|d| d["severity"] == "warning"),
        "{json}"
    );
    assert_eq!(output.status.code(), Some(1), "a failed probe fails");
}
