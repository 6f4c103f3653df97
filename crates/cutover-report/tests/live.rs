//! `/api/run` of the dashboard, as [`live::Source`] answers it: a
//! waiting manual gate says so, and the answer it keeps between polls is
//! the live state of the run after every write of the engine, every change
//! of the runbook's file, a replaced state file and a coordinator's death.

#[allow(dead_code)]
mod fixture;

use chrono::{DateTime, Utc};
use cutover_report::live::{self, LATEST_EVENTS, Source};
use cutover_report::{Format, Report, read_snapshot, render};
use fixture::{Builder, RUNBOOK, at, first_session};
use serde_json::{Value, json};
use std::path::Path;

const INSTRUCTIONS: &str = "Put the wiki into read-only mode";

fn runbook() -> cutover_lang::Runbook {
    cutover_lang::parse_source("lab-move.runbook", RUNBOOK.to_owned())
        .runbook
        .expect("fixture runbook parses")
}

fn answer(source: &Source, now: DateTime<Utc>) -> Value {
    let body = source.api_run_json(now).expect("an answer");
    serde_json::from_slice(&body).expect("the answer is JSON")
}

fn step<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["report"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

/// `lower-ttl` done and `freeze` running its act, as the engine records
/// it, with the `gate` event it logs when the manual gate starts waiting.
fn waiting_gate(path: &Path) -> Builder {
    let b = Builder::new(path, "lab-move.runbook", at(16, 49, 58));
    b.event(at(16, 49, 58), None, "run", "run started by alice", None)
        .event(at(16, 49, 58), None, "run", "run running", None)
        .step(
            "lower-ttl",
            "done",
            Some("verify"),
            1,
            Some(at(16, 50, 0)),
            Some(at(16, 50, 0)),
            Some(at(16, 50, 3)),
        )
        .event(
            at(17, 0, 0),
            Some("freeze"),
            "phase",
            "acting (attempt 1 of 1)",
            None,
        )
        .event(
            at(17, 0, 0),
            Some("freeze"),
            "gate",
            &format!("waiting for confirmation: {INSTRUCTIONS}"),
            Some(json!({ "instructions": INSTRUCTIONS })),
        )
        .step(
            "freeze",
            "running",
            Some("act"),
            1,
            Some(at(17, 0, 0)),
            Some(at(17, 0, 0)),
            None,
        );
    b
}

#[test]
fn a_waiting_gate_says_so_in_the_api_and_the_html_export() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("gate.db");
    let b = waiting_gate(&state);
    let source = Source::new(state.clone(), Some(runbook()));

    let live = answer(&source, at(17, 1, 0));
    let freeze = step(&live, "freeze");
    assert_eq!(freeze["status"], "running");
    assert_eq!(freeze["waiting_for_confirmation"], INSTRUCTIONS);
    assert!(
        step(&live, "lower-ttl")
            .get("waiting_for_confirmation")
            .is_none(),
        "only a waiting gate has it"
    );
    let report = Report::build(&read_snapshot(&state).unwrap(), Some(&runbook()));
    let html = render(&report, Format::Html);
    assert!(
        html.contains(&format!(
            "\">waiting for confirmation: {INSTRUCTIONS}</span>"
        )),
        "the HTML export's state of the step says the gate waits"
    );

    // Something logged after the gate event (here a message of the step):
    // the gate no longer waits, as `cutover status` says.
    b.event(at(17, 1, 5), Some("freeze"), "message", "still here", None);
    let live = answer(&source, at(17, 1, 10));
    assert!(
        step(&live, "freeze")
            .get("waiting_for_confirmation")
            .is_none()
    );

    // The gate waits again; then it is confirmed and done.
    b.event(
        at(17, 1, 20),
        Some("freeze"),
        "gate",
        &format!("waiting for confirmation: {INSTRUCTIONS}"),
        Some(json!({ "instructions": INSTRUCTIONS })),
    );
    let live = answer(&source, at(17, 1, 30));
    assert_eq!(
        step(&live, "freeze")["waiting_for_confirmation"],
        INSTRUCTIONS
    );
    b.confirm(at(17, 2, 0), "freeze", "bob", "read-only").step(
        "freeze",
        "done",
        Some("verify"),
        1,
        Some(at(17, 0, 0)),
        Some(at(17, 0, 0)),
        Some(at(17, 2, 0)),
    );
    let live = answer(&source, at(17, 2, 5));
    assert_eq!(step(&live, "freeze")["status"], "done");
    assert!(
        step(&live, "freeze")
            .get("waiting_for_confirmation")
            .is_none()
    );
    let report = Report::build(&read_snapshot(&state).unwrap(), Some(&runbook()));
    assert!(!render(&report, Format::Html).contains("\">waiting for confirmation: "));
}

#[test]
fn a_gate_event_of_a_step_not_acting_is_no_waiting_gate() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("gate.db");
    let b = waiting_gate(&state);
    b.step(
        "freeze",
        "running",
        Some("verify"),
        1,
        Some(at(17, 0, 0)),
        Some(at(17, 0, 0)),
        None,
    );
    let live = answer(&Source::new(state, Some(runbook())), at(17, 1, 0));
    assert!(
        step(&live, "freeze")
            .get("waiting_for_confirmation")
            .is_none()
    );
}

#[test]
fn the_kept_answer_is_the_live_state_after_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.db");
    let b = first_session(&state, "lab-move.runbook");
    let source = Source::new(state.clone(), Some(runbook()));
    let now = at(17, 6, 0);
    let same = |now: DateTime<Utc>| {
        let kept = answer(&source, now);
        let fresh = serde_json::to_value(live::live_state(
            &read_snapshot(&state).unwrap(),
            Some(&runbook()),
            now,
        ))
        .unwrap();
        assert_eq!(kept, fresh, "the kept answer is what a fresh read gives");
        kept
    };
    let first = same(now);
    assert_eq!(
        answer(&source, now),
        first,
        "nothing written: the same answer"
    );
    let later = same(at(17, 6, 30));
    assert_eq!(later["now"], json!(at(17, 6, 30)));

    // Writes in quick succession, each answered right after it.
    for i in 0..40 {
        let message = format!("copy note {i}");
        b.event(at(17, 7, 0), Some("final-sync"), "message", &message, None);
        let live = answer(&source, now);
        let events = live["report"]["events"].as_array().unwrap();
        assert_eq!(
            events.last().unwrap()["message"],
            message,
            "write {i} is in the next answer"
        );
        assert!(events.len() <= LATEST_EVENTS);
        assert_eq!(step(&live, "final-sync")["last_message"], message);
    }
    b.step(
        "final-sync",
        "done",
        Some("verify"),
        2,
        Some(at(17, 2, 0)),
        Some(at(17, 2, 0)),
        Some(at(17, 8, 0)),
    );
    let live = same(at(17, 9, 0));
    assert_eq!(step(&live, "final-sync")["status"], "done");
    // Nothing runs now: the chart is kept and only its "now" line moves.
    let a = same(at(17, 9, 0));
    let b = same(at(17, 9, 30));
    assert_ne!(a["gantt_svg"], b["gantt_svg"]);
}

#[test]
fn a_replaced_or_removed_state_file_is_read_anew() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.db");
    let source = Source::new(state.clone(), Some(runbook()));
    assert!(source.api_run_json(at(17, 0, 0)).is_err(), "no file yet");

    let b = waiting_gate(&state);
    let live = answer(&source, at(17, 1, 0));
    assert_eq!(step(&live, "freeze")["status"], "running");
    drop(b);

    std::fs::remove_file(&state).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("run.db{suffix}")));
    }
    assert!(
        source.api_run_json(at(17, 1, 0)).is_err(),
        "the file is gone"
    );

    let b = Builder::new(&state, "lab-move.runbook", at(16, 49, 58));
    b.step("freeze", "skipped", None, 0, None, None, None);
    let live = answer(&source, at(17, 1, 0));
    assert_eq!(step(&live, "freeze")["status"], "skipped");
}

#[test]
fn the_runbook_file_is_read_again_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture::write_runbook(dir.path());
    let state = dir.path().join("run.db");
    waiting_gate(&state);
    let source = Source::with_runbook_file(state, file.clone());
    let title = |source: &Source| answer(source, at(17, 1, 0))["report"]["run"]["title"].clone();
    assert_eq!(title(&source), "Lab move: the wiki to its new host");

    let renamed = RUNBOOK.replace("Lab move: the wiki to its new host", "Lab move, second try");
    std::fs::write(&file, &renamed).unwrap();
    assert_eq!(title(&source), "Lab move, second try");
    let planned = |source: &Source| {
        step(&answer(source, at(17, 1, 0)), "freeze")["planned"]["duration_s"].clone()
    };
    assert_eq!(planned(&source), 120);
    std::fs::write(&file, renamed.replace("expect 2m", "expect 5m")).unwrap();
    assert_eq!(planned(&source), 300, "the plan is made again");

    // While the file has errors, the last runbook without any is shown.
    std::fs::write(
        &file,
        "runbook lab-move\n\nstep broken after nothing\n  wait\n",
    )
    .unwrap();
    assert_eq!(title(&source), "Lab move, second try");
    assert_eq!(planned(&source), 300);
}

#[test]
fn a_runbook_found_beside_the_state_file_is_read_again_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.db");
    waiting_gate(&state);
    let source = Source::new(state, None);
    let title = |source: &Source| answer(source, at(17, 1, 0))["report"]["run"]["title"].clone();
    assert_eq!(title(&source), Value::Null, "no runbook beside it yet");

    let file = fixture::write_runbook(dir.path());
    assert_eq!(title(&source), "Lab move: the wiki to its new host");
    std::fs::write(
        &file,
        RUNBOOK.replace("Lab move: the wiki to its new host", "Lab move, again"),
    )
    .unwrap();
    assert_eq!(title(&source), "Lab move, again");
}

#[test]
fn the_death_of_the_coordinator_shows_without_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.db");
    let me = cutover_store::LockHolder::current();
    let mut coordinator = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    first_session(&state, "lab-move.runbook").lock(
        &me.user,
        &me.host,
        coordinator.id(),
        at(16, 49, 58),
    );
    let source = Source::new(state, Some(runbook()));
    let sessions = |source: &Source| answer(source, at(17, 6, 0))["report"]["sessions"].clone();
    assert_eq!(sessions(&source)[0]["end"], "running");
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    assert_eq!(sessions(&source)[0]["end"], "crashed_not_resumed");
}
