//! `cutover export` end to end: a run recorded through the state store,
//! exported by the binary in every format, to stdout and atomically to a
//! file; bad input gives a clear error; no secret leaks.

use assert_cmd::Command;
use cutover_store::{NewRun, NewStep, Phase, RunStatus, StepStatus, Store, Transition};
use std::path::{Path, PathBuf};

const SECRET: &str = "dGhlLXRzaWctc2VjcmV0LW9mLXRoZS1leHBvcnQtdGVzdA==";

const RUNBOOK: &str = r#"runbook lab
  title "Export test"

key lab-key hmac-sha256 env:CUTOVER_EXPORT_TEST_TSIG

zone lab.test
  primary 127.0.0.1:5353 key lab-key
  verify  127.0.0.1:5353

step freeze
  manual "Put the wiki into read-only mode"
  expect 1m

step settle after freeze
  wait 30s
"#;

/// A runbook in a temporary folder and a run of it in the default state
/// file: `freeze` confirmed and done, `settle` pending.
fn recorded_run(dir: &Path) -> PathBuf {
    let runbook = dir.join("lab.runbook");
    std::fs::write(&runbook, RUNBOOK).unwrap();
    let store = Store::open(&dir.join(".cutover").join("lab.db")).unwrap();
    let run = store
        .create_run(&NewRun {
            runbook_name: "lab".into(),
            runbook_path: runbook.display().to_string(),
            content_hash: "0123456789abcdef0123456789abcdef".into(),
            operator: "tester".into(),
            t0: None,
            steps: ["freeze", "settle"]
                .iter()
                .map(|name| NewStep {
                    name: (*name).into(),
                    definition: format!("step {name}"),
                    planned_start: None,
                })
                .collect(),
        })
        .unwrap();
    store.set_run_status(run, RunStatus::Running).unwrap();
    let step = |status, phase, new_attempt, kind, message: &str, evidence| Transition {
        step: "freeze",
        status,
        phase,
        new_attempt,
        event_kind: kind,
        message: message.into(),
        evidence,
    };
    store
        .transition(
            run,
            &step(
                StepStatus::Running,
                Some(Phase::Act),
                true,
                "phase",
                "acting (attempt 1 of 1)",
                None,
            ),
        )
        .unwrap();
    store
        .confirm(run, "freeze", "bob", Some("read-only since 17:02"))
        .unwrap();
    let evidence = (
        Phase::Verify,
        "confirmed by bob".to_owned(),
        serde_json::json!({ "user": "bob" }),
    );
    store
        .transition(
            run,
            &step(
                StepStatus::Done,
                Some(Phase::Verify),
                false,
                "done",
                "verified: confirmed by bob",
                Some(evidence),
            ),
        )
        .unwrap();
    runbook
}

fn cutover() -> Command {
    let mut cmd = Command::cargo_bin("cutover").unwrap();
    cmd.env("CUTOVER_EXPORT_TEST_TSIG", SECRET);
    cmd
}

fn export(runbook: &Path, format: &str) -> String {
    let out = cutover()
        .args(["export", &runbook.display().to_string(), "--format", format])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_format_exports_the_recorded_run() {
    let dir = tempfile::tempdir().unwrap();
    let runbook = recorded_run(dir.path());

    let markdown = export(&runbook, "markdown");
    assert!(
        markdown.starts_with("# Cutover report: lab\n"),
        "{markdown}"
    );
    assert!(markdown.contains("| `freeze` | bob |"), "{markdown}");
    assert!(markdown.contains("read-only since 17:02"));
    assert!(
        markdown.contains("| `settle` | wait | pending |"),
        "{markdown}"
    );

    let json: serde_json::Value = serde_json::from_str(&export(&runbook, "json")).unwrap();
    assert_eq!(json["schema"], "cutover-report/1");
    assert_eq!(json["steps"][0]["status"], "done");
    assert_eq!(json["steps"][0]["planned"]["source"], "declared");
    assert_eq!(json["confirmations"][0]["user"], "bob");

    let csv = export(&runbook, "csv");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("freeze,manual,done,1,"),
        "{csv}"
    );
    let events = export(&runbook, "csv-events");
    assert!(
        events
            .lines()
            .any(|l| l.contains("confirmed by bob: read-only since 17:02")),
        "{events}"
    );

    let html = export(&runbook, "html");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg") && html.contains("data-step=\"freeze\""));
    assert!(!html.contains("<script"), "the export is a static page");

    for text in [markdown, json.to_string(), csv, events, html] {
        assert!(
            !text.contains(SECRET) && !text.contains("dGhlLXRzaWct"),
            "a secret leaked"
        );
    }
}

#[test]
fn output_is_written_atomically_and_state_can_be_named() {
    let dir = tempfile::tempdir().unwrap();
    recorded_run(dir.path());
    let out_dir = dir.path().join("reports");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("report.md");
    std::fs::write(&target, "an older report").unwrap();
    let state = dir.path().join(".cutover").join("lab.db");
    let out = cutover()
        .args([
            "export",
            "--state",
            &state.display().to_string(),
            "--output",
            &target.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let written = std::fs::read_to_string(&target).unwrap();
    assert!(written.starts_with("# Cutover report: lab"));
    // The runbook was found from the path the run recorded.
    assert!(written.contains("Export test"), "{written}");
    let names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["report.md"], "no temporary file is left behind");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.db");
    let out = cutover()
        .args(["export", "--state", &missing.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");

    let not_db = dir.path().join("notes.txt");
    std::fs::write(&not_db, "not a state file").unwrap();
    let out = cutover()
        .args(["export", "--state", &not_db.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("notes.txt"));

    recorded_run(dir.path());
    let other = dir.path().join("other.runbook");
    std::fs::write(&other, "runbook other\n\nstep one\n  wait 1s\n").unwrap();
    let state = dir.path().join(".cutover").join("lab.db");
    let out = cutover()
        .args([
            "export",
            &other.display().to_string(),
            "--state",
            &state.display().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a run of runbook `lab`, not `other`")
    );

    let out = cutover().args(["export"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap usage error");
}
