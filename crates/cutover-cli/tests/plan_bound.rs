//! A reviewed plan bound to the run (`cutover plan --probe --out PLAN`,
//! `cutover run --plan PLAN`), against an authoritative server on loopback
//! started here on a free port: an unchanged plan is accepted and recorded
//! (the export names it and plans from it), a plan is refused before
//! anything runs once the runbook changed, and once a probed record
//! changed at the server.

use assert_cmd::Command;
use std::path::Path;
use std::time::Duration;

const ZONE: &str = "bound.test";

/// An authoritative server for `bound.test` taking updates signed with
/// the key in `update.key`.
struct Dns {
    runtime: tokio::runtime::Runtime,
    server: Option<cutover_dns::ServerHandle>,
    addr: std::net::SocketAddr,
    key: cutover_dns::TsigKey,
}

impl Dns {
    fn start(dir: &Path) -> Dns {
        std::fs::write(
            dir.join("bound.zone"),
            "$ORIGIN bound.test.\n$TTL 60\n@ IN SOA ns1.bound.test. hostmaster.bound.test. 1 60 60 600 5\n@ IN NS ns1.bound.test.\nns1 IN A 127.0.0.1\nwww IN A 192.0.2.1\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("update.key"),
            "c2VjcmV0LWZvci10aGUtYm91bmQtem9uZQ==\n",
        )
        .unwrap();
        let key = cutover_dns::TsigKey::new(
            "update",
            cutover_dns::TsigAlgorithm::HmacSha256,
            b"secret-for-the-bound-zone".to_vec(),
        )
        .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime
            .block_on(cutover_dns::serve(cutover_dns::ServeConfig {
                zones: vec![cutover_dns::ZoneSource {
                    name: ZONE.into(),
                    file: dir.join("bound.zone"),
                }],
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                keys: vec![key.clone()],
                state_dir: dir.join("dns-state"),
                allow_transfer: Vec::new(),
            }))
            .unwrap();
        let addr = server.addresses()[0];
        Dns {
            runtime,
            server: Some(server),
            addr,
            key,
        }
    }

    /// Changes `www` A at the server behind the plan's back.
    fn change_www(&self, from: &str, to: &str) {
        let updater =
            cutover_dns::Updater::new(self.addr, Some(self.key.clone()), Duration::from_secs(2));
        self.runtime
            .block_on(updater.compare_and_swap(
                ZONE,
                "www",
                cutover_dns::RecordType::A,
                &[from],
                &[to],
                60,
            ))
            .unwrap();
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

fn runbook(dns: std::net::SocketAddr, prepare_expect: &str) -> String {
    format!(
        "runbook bound
  window 2026-01-01 00:00 UTC for 1h

key update hmac-sha256 file:update.key

zone {ZONE}
  primary {dns} key update
  verify {dns}

step prepare at T-2h
  exec \"touch prepared\"
  verify exec \"test -f prepared\"
  expect {prepare_expect}

step lower at T-1h
  dns.ttl {ZONE} www A 30 was 1m

step switch at T0
  dns.switch {ZONE} www A 192.0.2.1 -> 192.0.2.2
  undo dns.switch {ZONE} www A 192.0.2.2 -> 192.0.2.1
"
    )
}

/// `cutover ARGS` in `dir`, bounded: exit code, stdout, stderr.
fn cutover(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("cutover")
        .unwrap()
        .current_dir(dir)
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_reviewed_plan_is_refused_once_the_runbook_or_a_probed_record_changed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let dns = Dns::start(dir);
    let text = runbook(dns.addr, "1m");
    std::fs::write(dir.join("bound.runbook"), &text).unwrap();

    let (code, _, stderr) = cutover(
        dir,
        &["plan", "bound.runbook", "--probe", "--out", "bound.plan"],
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bound.plan")).unwrap()).unwrap();
    assert_eq!(doc["schema"], "cutover-reviewed-plan/1");
    assert_eq!(doc["runbook"]["name"], "bound");
    assert_eq!(doc["runbook"]["files"][0]["text"], text.as_str());
    assert_eq!(doc["plan"]["schema"], "cutover-plan/1");
    assert!(doc["probe"]["at"].is_string(), "{doc}");
    let www = doc["probe"]["facts"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["record"] == "www.bound.test A")
        .expect("the probed record is in the plan");
    assert_eq!(www["values"][0], "192.0.2.1");
    assert_eq!(www["server"], dns.addr.to_string());

    // Unchanged: accepted, recorded, and the export plans from it.
    let (code, _, stderr) = cutover(
        dir,
        &[
            "run",
            "bound.runbook",
            "--plan",
            "bound.plan",
            "--until",
            "prepare",
            "--state",
            "accepted.db",
        ],
    );
    assert_eq!(code, 0, "an unchanged plan is accepted: {stderr}");
    assert!(
        stderr.contains("holding to the reviewed plan bound.plan"),
        "{stderr}"
    );
    let (code, export, stderr) = cutover(
        dir,
        &["export", "--state", "accepted.db", "--format", "json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let export: serde_json::Value = serde_json::from_str(&export).unwrap();
    let plan = &export["run"]["plan"];
    assert_eq!(plan["rehearsal"], false, "{export}");
    assert_eq!(plan["reviewed"]["file"], "bound.plan", "{export}");
    assert_eq!(plan["reviewed"]["made_at"], doc["made_at"]);
    assert_eq!(plan["reviewed"]["probed_at"], doc["probe"]["at"]);
    let prepare = export["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "prepare")
        .unwrap();
    assert_eq!(prepare["planned"]["source"], "declared");
    assert_eq!(prepare["planned"]["start"]["offset_s"], -7200);
    assert_eq!(prepare["planned"]["duration_s"], 60);
    assert_eq!(prepare["status"], "done");

    // The runbook changed: refused before anything runs, the change shown.
    std::fs::write(dir.join("bound.runbook"), runbook(dns.addr, "2m")).unwrap();
    let (code, _, stderr) = cutover(
        dir,
        &[
            "run",
            "bound.runbook",
            "--plan",
            "bound.plan",
            "--state",
            "changed.db",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is stale"), "{stderr}");
    assert!(stderr.contains("the runbook changed since"), "{stderr}");
    assert!(stderr.contains("-   expect 1m"), "{stderr}");
    assert!(stderr.contains("+   expect 2m"), "{stderr}");
    assert!(stderr.contains("nothing was run"), "{stderr}");
    assert!(!dir.join("changed.db").exists(), "no run was started");
    std::fs::write(dir.join("bound.runbook"), &text).unwrap();

    // A probed record changed at the server: refused, the record named.
    dns.change_www("192.0.2.1", "192.0.2.7");
    let (code, _, stderr) = cutover(
        dir,
        &[
            "run",
            "bound.runbook",
            "--plan",
            "bound.plan",
            "--state",
            "drifted.db",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "~ www.bound.test A at {}: 192.0.2.1 TTL 60s -> 192.0.2.7 TTL 60s",
            dns.addr
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("the runbook changed"), "{stderr}");
    assert!(!dir.join("drifted.db").exists(), "no run was started");

    // Back as planned: accepted again.
    dns.change_www("192.0.2.7", "192.0.2.1");
    // A reviewed plan calibrated from the first run: the run records the
    // reviewed plan's figures, not the runbook's alone.
    let (code, _, stderr) = cutover(
        dir,
        &[
            "plan",
            "bound.runbook",
            "--probe",
            "--calibrate",
            "accepted.db",
            "--out",
            "calibrated.plan",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = cutover(
        dir,
        &[
            "run",
            "bound.runbook",
            "--plan",
            "calibrated.plan",
            "--until",
            "prepare",
            "--state",
            "calibrated.db",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let export = cutover(
        dir,
        &["export", "--state", "calibrated.db", "--format", "json"],
    )
    .1;
    let export: serde_json::Value = serde_json::from_str(&export).unwrap();
    let prepare = export["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "prepare")
        .unwrap();
    assert_eq!(prepare["planned"]["source"], "measured", "{prepare}");

    let (code, _, stderr) = cutover(
        dir,
        &[
            "run",
            "bound.runbook",
            "--plan",
            "bound.plan",
            "--until",
            "prepare",
            "--state",
            "again.db",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
}

/// A step an hour before T0, one at T0 after it, one at T+1s.
const REHEARSED: &str = "runbook rehearsed
  window 2027-06-01 00:00 UTC for 2h

step early at T-1h
  exec \"true\"
  verify exec \"true\"
  expect 1s

step main at T0 after early
  exec \"true\"
  verify exec \"true\"
  expect 1s
";

fn export_json(dir: &Path, state: &str) -> serde_json::Value {
    let (code, export, stderr) = cutover(dir, &["export", "--state", state, "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&export).unwrap()
}

fn late_steps(export: &serde_json::Value) -> Vec<String> {
    export["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "late")
        .map(|d| d["step"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn a_rehearsal_is_judged_against_its_plan_rebased_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("rehearsed.runbook"), REHEARSED).unwrap();

    let (code, _, stderr) = cutover(
        dir,
        &[
            "run",
            "rehearsed.runbook",
            "--t0",
            "now",
            "--state",
            "rehearsal.db",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let export = export_json(dir, "rehearsal.db");
    assert_eq!(export["run"]["plan"]["rehearsal"], true, "{export}");
    assert_eq!(export["run"]["plan"]["reviewed"], serde_json::Value::Null);
    let early = export["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "early")
        .unwrap();
    assert_eq!(early["planned"]["start"]["offset_s"], 0, "{early}");
    assert!(late_steps(&export).is_empty(), "{export}");
    assert!(
        export["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("a rehearsal")),
        "{export}"
    );

    // The same run with T0 given as a time (not a rehearsal): the step an
    // hour before T0 is an hour late.
    let t0 = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let (code, _, stderr) = cutover(
        dir,
        &[
            "run",
            "rehearsed.runbook",
            "--t0",
            &t0,
            "--state",
            "real.db",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let export = export_json(dir, "real.db");
    assert_eq!(export["run"]["plan"], serde_json::Value::Null, "{export}");
    assert_eq!(late_steps(&export), ["early"], "{export}");
}
