//! `cutover plan FILE --calibrate STATE` through the real binary, from a
//! state file whose durations are written here (so nothing depends on how
//! fast this machine is): each calibrated figure is what the run measured,
//! labelled `measured` with the run it came from, and the plan points out
//! where the rehearsal contradicts the runbook.

use assert_cmd::Command;
use cutover_store::{NewRun, NewStep, Store};
use std::path::Path;
use std::time::Duration;

const RUNBOOK: &str = r#"runbook calibrated
  window 2026-01-01 00:00 UTC for 4h
  link old-dc -> new-dc 1Gbit

zone example.test
  primary 127.0.0.1:5353
  verify  127.0.0.1:5353, 127.0.0.2:5353

host old site old-dc addr 127.0.0.1 via local "/srv"
host new site new-dc addr 127.0.0.1 via local "/srv"

step build
  exec "true"
  verify exec "true"
  expect 10m

step approve after build
  manual "Approve the window"

step copy after approve
  image.copy old:/srv/a.img -> new:/srv/a.img size 4G

step copy-b after approve
  image.copy old:/srv/b.img -> new:/srv/b.img size 2G

step lower after copy
  dns.ttl example.test www A 60 was 5m

step settle after lower
  wait 5m
"#;

/// A finished rehearsal of `calibrated`: (step, milliseconds from first
/// act to done), a 1 GB copy of `copy` that took 40 s, and both verify
/// servers' lags for `lower`.
fn rehearsal(path: &Path, runbook_name: &str) {
    let steps = [
        ("build", 120_000),
        ("approve", 300_000),
        ("copy", 41_000),
        ("lower", 3_190),
    ];
    let store = Store::open(path).unwrap();
    let run = store
        .create_run(&NewRun {
            runbook_name: runbook_name.into(),
            runbook_path: "calibrated.runbook".into(),
            content_hash: "h".into(),
            operator: "ops".into(),
            t0: None,
            steps: steps
                .iter()
                .map(|(name, _)| NewStep {
                    name: (*name).into(),
                    definition: format!("step {name}"),
                    planned_start: None,
                })
                .collect(),
        })
        .unwrap();
    drop(store);
    let db = rusqlite::Connection::open(path).unwrap();
    for (name, ms) in steps {
        db.execute(
            "UPDATE steps SET status = 'done', started_at = ?2, first_act_at = ?2, finished_at = ?3
             WHERE run_id = ?1 AND name = ?4",
            rusqlite::params![
                run,
                "2026-12-01 10:00:00.000+00:00",
                format!(
                    "2026-12-01 10:{:02}:{:02}.{:03}+00:00",
                    ms / 60_000,
                    ms / 1000 % 60,
                    ms % 1000
                ),
                name
            ],
        )
        .unwrap();
    }
    let evidence = |step: &str, phase: &str, data: serde_json::Value| {
        db.execute(
            "INSERT INTO evidence (run_id, at, step, phase, attempt, summary, data)
             VALUES (?1, '2026-12-01 10:01:00.000+00:00', ?2, ?3, 1, 'recorded', ?4)",
            rusqlite::params![run, step, phase, data.to_string()],
        )
        .unwrap();
    };
    evidence(
        "copy",
        "act",
        serde_json::json!({ "size": 1_000_000_000u64, "duration": { "secs": 40, "nanos": 0 }, "bytes_reused": 0 }),
    );
    evidence(
        "lower",
        "verify",
        serde_json::json!({ "servers": [
            { "server": "127.0.0.1:5353", "lag_seconds": 0.5 },
            { "server": "127.0.0.2:5353", "lag_seconds": 9.5 }
        ] }),
    );
}

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

fn duration<'a>(plan: &'a serde_json::Value, step: &str) -> &'a serde_json::Value {
    &plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("step {step} in {plan}"))["duration"]
}

#[test]
fn calibrated_figures_are_what_the_rehearsal_measured() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("calibrated.runbook"), RUNBOOK).unwrap();
    rehearsal(&dir.join("rehearsal.db"), "calibrated");

    let (code, stdout, stderr) = cutover(dir, &["plan", "calibrated.runbook", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let before: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(duration(&before, "build")["source"], "declared");
    assert_eq!(duration(&before, "copy")["seconds"], 32, "4 GB at 1 Gbit/s");

    let (code, stdout, stderr) = cutover(
        dir,
        &[
            "plan",
            "calibrated.runbook",
            "--calibrate",
            "rehearsal.db",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let run = "rehearsal.db run 1";
    // exec and gate: what the same step took.
    for (step, secs) in [("build", 120), ("approve", 300)] {
        let d = duration(&plan, step);
        assert_eq!(d["seconds"], secs, "{step}: {d}");
        assert_eq!(d["source"], "measured", "{step}: {d}");
        assert!(d["basis"].as_str().unwrap().contains(run), "{d}");
    }
    // Copies: the copy measured takes what it took; the one never
    // measured, its size over the throughput measured between the same
    // hosts (1 GB in 40 s): 2 GB in 80 s.
    let copy = duration(&plan, "copy");
    assert_eq!(copy["seconds"], 41, "{copy}");
    assert_eq!(copy["source"], "measured");
    let copy_b = duration(&plan, "copy-b");
    assert_eq!(copy_b["seconds"], 80, "{copy_b}");
    assert_eq!(copy_b["source"], "measured");
    assert!(
        copy_b["basis"]
            .as_str()
            .unwrap()
            .contains("from old to new"),
        "{copy_b}"
    );
    // DNS: the zone's update-to-verified time, to the millisecond, each
    // server's lag named.
    let lower = duration(&plan, "lower");
    assert_eq!(lower["seconds"], 3.19, "{lower}");
    let basis = lower["basis"].as_str().unwrap();
    assert!(basis.contains("127.0.0.2:5353 9.5s"), "{basis}");
    // The terminal shows it as it is: 3.2s, not 4s.
    let (code, text, stderr) = cutover(
        dir,
        &["plan", "calibrated.runbook", "--calibrate", "rehearsal.db"],
    );
    assert_eq!(code, 0, "{stderr}");
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("lower"))
        .unwrap_or_else(|| panic!("no row of `lower`:\n{text}"));
    assert!(row.contains(" 3.2s "), "{row}");
    // Declared waits are not measured.
    assert_eq!(duration(&plan, "settle")["source"], "declared");
    let notes: Vec<&str> = plan["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains(
            "rehearsal vs plan: `build` took 2m where the runbook alone gives 10m (declared)"
        )),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains(
            "rehearsal vs plan: `copy-b` took 1m20s where the runbook alone gives 16s (estimated)"
        )),
        "{notes:?}"
    );

    // A state file of another runbook is refused, naming both.
    rehearsal(&dir.join("other.db"), "other");
    let (code, _, stderr) = cutover(
        dir,
        &["plan", "calibrated.runbook", "--calibrate", "other.db"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("a run of runbook `other`, not `calibrated`"),
        "{stderr}"
    );
}
