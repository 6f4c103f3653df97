//! One plan everywhere: `cutover plan`, the planned starts a run records,
//! `status` and the export (from the runbook, and from the state file
//! alone) agree on every step's planned start and duration, steps before
//! T0 included, to the millisecond.

use assert_cmd::Command;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::path::Path;

/// Steps before T0 (by `at`, and by `after` alone), a root step with no
/// `at`, a step with `at` after its dependencies, declared durations, and
/// a copy estimated at 0.8 s (100 kB over 1 Mbit/s).
const RUNBOOK: &str = r#"runbook agree
  window 2026-01-01 00:00 UTC for 2h
  link here -> there 1Mbit

host old site here addr 127.0.0.10 via local old
host new site there addr 127.0.0.20 via local new

step early at T-1h
  exec "true"
  verify exec "true"
  expect 3m

step second after early
  exec "true"
  verify exec "true"
  expect 10m

step loose
  exec "true"
  verify exec "true"
  expect 1m

step settle after second
  wait 1s

step copy after settle
  image.copy old:/disk.img -> new:/disk.img size 100kB

step last at T-10m after copy, loose
  exec "true"
  verify exec "true"
  expect 2m
"#;

/// The window's start and the run's T0, in the past so that no step
/// waits for its `at`.
const T0: &str = "2026-01-01T00:00:00Z";

fn cutover(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("cutover").unwrap();
    cmd.current_dir(dir)
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// JSON seconds (`120`, `0.8`) as milliseconds.
fn ms(secs: &serde_json::Value) -> Option<i64> {
    secs.as_f64().map(|s| (s * 1000.0).round() as i64)
}

/// Planned (start, duration) per step, in milliseconds from T0, from a
/// plan's JSON.
fn from_plan(json: &serde_json::Value) -> HashMap<String, (i64, i64)> {
    json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let start = ms(&s["start"]["offset_s"]).unwrap();
            let end = ms(&s["end"]["offset_s"]).unwrap();
            (s["name"].as_str().unwrap().to_owned(), (start, end - start))
        })
        .collect()
}

/// Planned (start, duration) per step from an export's JSON (duration
/// None where the export does not know it).
fn from_export(json: &serde_json::Value) -> HashMap<String, (i64, Option<i64>)> {
    json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let planned = &s["planned"];
            (
                s["name"].as_str().unwrap().to_owned(),
                (
                    ms(&planned["start"]["offset_s"]).unwrap(),
                    ms(&planned["duration_s"]),
                ),
            )
        })
        .collect()
}

#[test]
fn plan_stored_starts_status_and_export_agree_on_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("agree.runbook"), RUNBOOK).unwrap();
    std::fs::create_dir_all(d.join("old")).unwrap();
    std::fs::create_dir_all(d.join("new")).unwrap();
    std::fs::write(d.join("old/disk.img"), vec![7u8; 100_000]).unwrap();

    let plan: serde_json::Value = serde_json::from_str(&stdout(cutover(d).args([
        "plan",
        "agree.runbook",
        "--format",
        "json",
    ])))
    .unwrap();
    let planned = from_plan(&plan);
    // The figures themselves: the run starts at the earliest `at`, and a
    // step with no `at` starts when its dependencies are done.
    let expected: HashMap<String, (i64, i64)> = [
        ("early", (-3600, 180)),
        ("loose", (-3600, 60)),
        ("second", (-3420, 600)),
        ("settle", (-2820, 1)),
        ("last", (-600, 120)),
    ]
    .into_iter()
    .map(|(n, (start, took))| (n.to_owned(), (start * 1000, took * 1000)))
    .chain([("copy".to_owned(), (-2_819_000, 800))])
    .collect();
    assert_eq!(planned, expected, "the plan");

    stdout(cutover(d).args(["run", "agree.runbook", "--t0", T0]));

    let export: serde_json::Value = serde_json::from_str(&stdout(cutover(d).args([
        "export",
        "agree.runbook",
        "--format",
        "json",
    ])))
    .unwrap();
    for (name, (start, duration)) in from_export(&export) {
        assert_eq!(
            (start, duration),
            (planned[&name].0, Some(planned[&name].1)),
            "the export's plan of `{name}`"
        );
    }

    let t0: DateTime<Utc> = T0.parse().unwrap();
    let status = stdout(cutover(d).args(["status", "agree.runbook"]));
    for (name, (start, _)) in &planned {
        let at = (t0 + TimeDelta::milliseconds(*start))
            .format("%m-%d %H:%M:%S")
            .to_string();
        let line = status
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for `{name}` in status:\n{status}"));
        assert!(
            line.contains(&at),
            "status plans `{name}` at {at}:\n{status}"
        );
    }

    // Without the runbook, the export reads the planned starts the run
    // recorded when it began.
    std::fs::rename(d.join("agree.runbook"), d.join("moved.runbook")).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stdout(cutover(d).args([
        "export",
        "--state",
        ".cutover/agree.db",
        "--format",
        "json",
    ])))
    .unwrap();
    for step in stored["steps"].as_array().unwrap() {
        assert_eq!(step["planned"]["source"], "stored");
    }
    for (name, (start, _)) in from_export(&stored) {
        assert_eq!(start, planned[&name].0, "the recorded start of `{name}`");
    }
}
