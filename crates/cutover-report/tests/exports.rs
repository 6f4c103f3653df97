//! Exports of state files with pinned times: golden files for every format,
//! and the crash/resume, stop and live cases.

mod fixture;

use cutover_report::{
    DeviationKind, Format, Report, SessionEnd, find_runbook, live, read_snapshot, render,
};
use fixture::{RUNBOOK, at, crashed_and_resumed, first_session};

fn runbook() -> cutover_lang::Runbook {
    let loaded = cutover_lang::parse_source("lab-move.runbook", RUNBOOK.to_owned());
    assert!(
        loaded
            .diagnostics
            .iter()
            .all(|d| d.severity != cutover_lang::Severity::Error),
        "{:?}",
        loaded.diagnostics
    );
    loaded.runbook.expect("fixture runbook parses")
}

fn crashed_report() -> Report {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.db");
    crashed_and_resumed(&state, "lab-move.runbook");
    Report::build(&read_snapshot(&state).unwrap(), Some(&runbook()))
}

#[test]
fn markdown_of_a_crashed_and_resumed_run() {
    insta::assert_snapshot!(
        "crashed_resumed.md",
        render(&crashed_report(), Format::Markdown)
    );
}

#[test]
fn json_of_a_crashed_and_resumed_run() {
    insta::assert_snapshot!(
        "crashed_resumed.json",
        render(&crashed_report(), Format::Json)
    );
}

#[test]
fn csv_of_a_crashed_and_resumed_run() {
    insta::assert_snapshot!(
        "crashed_resumed.csv",
        render(&crashed_report(), Format::Csv)
    );
}

#[test]
fn csv_events_of_a_crashed_and_resumed_run() {
    insta::assert_snapshot!(
        "crashed_resumed_events.csv",
        render(&crashed_report(), Format::CsvEvents)
    );
}

#[test]
fn html_of_a_crashed_and_resumed_run() {
    insta::assert_snapshot!(
        "crashed_resumed.html",
        render(&crashed_report(), Format::Html)
    );
}

#[test]
fn the_crash_and_the_resume_are_visible() {
    let report = crashed_report();
    let ends: Vec<SessionEnd> = report.sessions.iter().map(|s| s.end).collect();
    assert_eq!(ends, [SessionEnd::Crashed, SessionEnd::Completed]);
    let crash = &report.sessions[0];
    // Its last sign of life: the copy's progress, a second after its last phase.
    assert_eq!(crash.last_record_at.utc, at(17, 5, 2));
    assert_eq!(crash.caught_mid_flight.len(), 1);
    assert_eq!(crash.caught_mid_flight[0].step, "final-sync");
    assert_eq!(
        crash.caught_mid_flight[0].phase,
        Some(cutover_store::Phase::Act)
    );
    assert!(
        report.sessions[1]
            .took_over
            .as_deref()
            .unwrap_or("")
            .contains("stale lock")
    );
    assert!(
        report.run.outcome.contains("1 crash"),
        "{}",
        report.run.outcome
    );
    assert!(
        report.run.outcome.contains("resumed 1 time"),
        "{}",
        report.run.outcome
    );

    let kinds: Vec<(Option<&str>, DeviationKind)> = report
        .deviations
        .iter()
        .map(|d| (d.step.as_deref(), d.kind))
        .collect();
    for expected in [
        (Some("final-sync"), DeviationKind::Late),
        (Some("final-sync"), DeviationKind::Overrun),
        (Some("final-sync"), DeviationKind::Retried),
        (Some("final-sync"), DeviationKind::Interrupted),
        (Some("cleanup"), DeviationKind::Skipped),
    ] {
        assert!(
            kinds.contains(&expected),
            "{expected:?} missing from {kinds:?}"
        );
    }
    assert!(
        !kinds.iter().any(|(s, _)| *s == Some("lower-ttl")),
        "{kinds:?}"
    );

    let markdown = render(&report, Format::Markdown);
    assert!(markdown.contains("## Crashes and resumes"));
    assert!(markdown.contains("CRASHED (no end recorded; resumed later)"));
    assert!(markdown.contains("caught mid-flight: `final-sync` (in act)"));
    let csv = render(&report, Format::Csv);
    let final_sync = csv.lines().find(|l| l.starts_with("final-sync,")).unwrap();
    assert!(final_sync.contains("crash of session 1"), "{final_sync}");
    let json: serde_json::Value = serde_json::from_str(&render(&report, Format::Json)).unwrap();
    assert_eq!(json["sessions"][0]["end"], "crashed");
    assert_eq!(json["schema"], "cutover-report/1");
}

#[test]
fn a_crash_not_yet_resumed_is_told_apart_from_a_live_run() {
    let dir = tempfile::tempdir().unwrap();
    let me = cutover_store::LockHolder::current();

    let crashed = dir.path().join("crashed.db");
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    first_session(&crashed, "lab-move.runbook").lock(&me.user, &me.host, dead_pid, at(16, 49, 58));
    let report = Report::build(&read_snapshot(&crashed).unwrap(), Some(&runbook()));
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(report.sessions[0].end, SessionEnd::CrashedNotResumed);
    assert_eq!(report.sessions[0].caught_mid_flight[0].step, "final-sync");
    assert!(
        render(&report, Format::Markdown).contains("CRASHED (no end recorded; not resumed yet)")
    );

    let live = dir.path().join("live.db");
    first_session(&live, "lab-move.runbook").lock(&me.user, &me.host, me.pid, at(16, 49, 58));
    let snapshot = read_snapshot(&live).unwrap();
    let report = Report::build(&snapshot, Some(&runbook()));
    assert_eq!(report.sessions[0].end, SessionEnd::Running);
    assert!(report.sessions[0].caught_mid_flight.is_empty());
    assert!(
        !report
            .deviations
            .iter()
            .any(|d| d.kind == DeviationKind::Interrupted)
    );
    let running = report.step("final-sync").unwrap();
    assert_eq!(
        running.last_message.as_deref(),
        Some("acting (attempt 2 of 2)")
    );
    assert!(running.actual.end.is_none());
    let state = live::live_state(&snapshot, Some(&runbook()), at(17, 6, 0));
    assert!(
        state
            .coordinator
            .as_deref()
            .unwrap_or("")
            .contains(&format!("pid {}", me.pid))
    );
    assert!(state.gantt_svg.contains(">now</text>"));
}

#[test]
fn a_stop_lists_the_steps_it_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("stopped.db");
    first_session(&state, "lab-move.runbook").finish_run("stopped", at(17, 5, 2));
    let report = Report::build(&read_snapshot(&state).unwrap(), Some(&runbook()));
    assert_eq!(report.sessions[0].end, SessionEnd::Stopped);
    assert_eq!(report.sessions[0].caught_mid_flight[0].step, "final-sync");
    let interrupted = report
        .deviations
        .iter()
        .find(|d| d.kind == DeviationKind::Interrupted)
        .unwrap();
    assert_eq!(
        interrupted.detail,
        "caught in phase act by the stop of session 1"
    );
}

#[test]
fn a_running_step_shows_the_countdown_of_its_current_attempt_until_it_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("wait.db");
    let b = first_session(&state, "lab-move.runbook");
    b.event(
        at(17, 19, 0),
        Some("settle"),
        "phase",
        "acting (attempt 1 of 2)",
        None,
    )
    .countdown(at(17, 19, 0), "settle", at(17, 25, 0), "an earlier attempt")
    .event(
        at(17, 19, 30),
        Some("settle"),
        "failed",
        "act failed: interrupted",
        None,
    )
    .event(
        at(17, 20, 0),
        Some("settle"),
        "phase",
        "acting (attempt 2 of 2)",
        None,
    )
    .countdown(at(17, 20, 0), "settle", at(17, 21, 0), "waiting")
    .step(
        "settle",
        "running",
        Some("act"),
        2,
        Some(at(17, 19, 0)),
        Some(at(17, 19, 0)),
        None,
    );
    let snapshot = read_snapshot(&state).unwrap();
    let live = live::live_state(&snapshot, Some(&runbook()), at(17, 20, 15));
    assert_eq!(live.countdowns.len(), 1, "{:?}", live.countdowns);
    assert_eq!(live.countdowns[0].step, "settle");
    assert_eq!(live.countdowns[0].label, "waiting");
    assert_eq!(live.countdowns[0].until, at(17, 21, 0));
    assert_eq!(live.countdowns[0].left_s, 45);
    assert_eq!(
        live.report.step("settle").unwrap().last_message.as_deref(),
        Some("waiting until 17:21:00 UTC")
    );

    let later = live::live_state(&snapshot, Some(&runbook()), at(17, 21, 0));
    assert!(later.countdowns.is_empty(), "{:?}", later.countdowns);
}

#[test]
fn a_running_copy_shows_the_progress_of_its_current_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("copy.db");
    first_session(&state, "lab-move.runbook");
    let report = Report::build(&read_snapshot(&state).unwrap(), Some(&runbook()));
    let progress = report
        .step("final-sync")
        .unwrap()
        .progress
        .as_ref()
        .unwrap();
    assert_eq!(progress.at, at(17, 5, 2));
    assert_eq!(progress.done, 4_194_304, "attempt 2's, not attempt 1's");
    assert_eq!(progress.total, Some(67_108_864));
    assert_eq!(progress.unit, "bytes");
    assert!(
        report
            .steps
            .iter()
            .all(|s| s.name == "final-sync" || s.progress.is_none()),
        "only a running step has progress"
    );
}

#[test]
fn progress_events_are_left_out_of_every_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.db");
    crashed_and_resumed(&state, "lab-move.runbook");
    let snapshot = read_snapshot(&state).unwrap();
    let stored = snapshot
        .events
        .iter()
        .filter(|e| e.kind == "progress")
        .count();
    assert_eq!(stored, 5, "the state file keeps them");
    let report = Report::build(&snapshot, Some(&runbook()));
    assert!(report.events.iter().all(|e| e.kind != "progress"));
    assert_eq!(report.events.len(), snapshot.events.len() - stored);
    assert!(report.events.iter().any(|e| e.kind == "countdown"));
    assert!(
        report.steps.iter().all(|s| s.progress.is_none()),
        "nothing runs any more"
    );
    for format in [
        Format::Markdown,
        Format::CsvEvents,
        Format::Html,
        Format::Json,
    ] {
        let text = render(&report, format);
        assert!(!text.contains("of 67108864 bytes"), "{format:?}");
        assert!(text.contains("waiting until 17:13:11 UTC"), "{format:?}");
    }
}

#[test]
fn without_the_runbook_the_recorded_planned_starts_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.db");
    crashed_and_resumed(&state, "/nonexistent/lab-move.runbook");
    let snapshot = read_snapshot(&state).unwrap();
    assert!(find_runbook(&state, &snapshot).is_none());
    let report = Report::build(&snapshot, None);
    let step = report.step("final-sync").unwrap();
    assert_eq!(step.planned.source, "stored");
    assert_eq!(step.planned.span.start.map(|i| i.utc), Some(at(17, 2, 0)));
    assert_eq!(step.planned.span.duration_ms, None);
    assert_eq!(step.kind, "image.copy");
    assert!(report.notes[0].contains("could not be read"));
}

#[test]
fn the_runbook_is_found_beside_the_default_state_folder() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_runbook(dir.path());
    let state = dir.path().join(".cutover").join("lab-move.db");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    crashed_and_resumed(&state, "somewhere/else/lab-move.runbook");
    let snapshot = read_snapshot(&state).unwrap();
    let found = find_runbook(&state, &snapshot).expect("found one folder up");
    assert_eq!(found.name, "lab-move");
}

#[test]
fn reading_changes_nothing_and_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.db");
    crashed_and_resumed(&state, "lab-move.runbook");
    let before = std::fs::read(&state).unwrap();
    read_snapshot(&state).unwrap();
    assert_eq!(std::fs::read(&state).unwrap(), before);

    let missing = read_snapshot(&dir.path().join("nope.db"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("does not exist"), "{missing}");

    let conn = rusqlite::Connection::open(&state).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let newer = read_snapshot(&state).unwrap_err().to_string();
    assert!(newer.contains("schema version 99"), "{newer}");

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"not a database at all, just text").unwrap();
    assert!(read_snapshot(&garbage).is_err());
}

#[test]
fn no_format_shows_the_secret_of_a_key_the_runbook_references() {
    const SECRET: &str = "c2VjcmV0LXRzaWcta2V5LXZhbHVlLTEyMzQ1Njc4OTA=";
    // SAFETY: set_var is sound only while no other thread reads the
    // environment unsynchronised. Rust's own env functions (the only way the
    // code under test reads this variable) take the same lock as set_var;
    // this test binary changes no other variable. What it cannot exclude is
    // C code calling getenv on another test's thread at this instant
    // (SQLite looks up TMPDIR when it needs a temporary file).
    unsafe { std::env::set_var("CUTOVER_FIXTURE_TSIG", SECRET) };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.db");
    crashed_and_resumed(&state, "lab-move.runbook");
    let snapshot = read_snapshot(&state).unwrap();
    let report = Report::build(&snapshot, Some(&runbook()));
    for format in [
        Format::Markdown,
        Format::Json,
        Format::Csv,
        Format::CsvEvents,
        Format::Html,
    ] {
        let text = render(&report, format);
        assert!(!text.contains(SECRET), "{format:?} shows the secret");
        assert!(
            !text.contains("c2VjcmV0"),
            "{format:?} shows part of the secret"
        );
    }
    let live = serde_json::to_string(&live::live_state(
        &snapshot,
        Some(&runbook()),
        at(17, 20, 0),
    ))
    .unwrap();
    assert!(!live.contains(SECRET));
}

/// The evidence section of one step in a Markdown export.
fn markdown_evidence<'a>(markdown: &'a str, step: &str) -> &'a str {
    let start = markdown
        .find(&format!("### `{step}`"))
        .unwrap_or_else(|| panic!("no evidence of {step}"));
    let rest = &markdown[start..];
    let end = rest[4..].find("\n#").map_or(rest.len(), |e| e + 4);
    &rest[..end]
}

#[test]
fn dns_evidence_is_a_table_with_a_row_per_verify_server_in_markdown_and_html() {
    let report = crashed_report();
    let markdown = render(&report, Format::Markdown);
    let switch = markdown_evidence(&markdown, "switch");
    assert!(
        switch.contains(
            "  - wiki.lab.test. A at each verify server (expected 127.0.0.20, serial ≥ 2026031402; verified):\n\n    | Server | Value | TTL | Serial | Agrees | First seen agreeing |\n    |---|---|---|---|---|---|\n"
        ),
        "{switch}"
    );
    for row in [
        "| 127.0.0.1:5353 | 127.0.0.20 | 5 | 2026031402 | yes | 2026-03-14 17:11:43.4 UTC at serial 2026031402, 0.4s after the update |",
        "| 127.0.0.1:5354 | 127.0.0.20 | 5 | 2026031402 | yes | 2026-03-14 17:11:47.2 UTC at serial 2026031402, 4.2s after the update |",
        "| 127.0.0.1:5355 | 127.0.0.20 | 5 | 2026031403 | yes | 2026-03-14 17:12:09.9 UTC at serial 2026031403, 26.9s after the update |",
    ] {
        assert!(switch.contains(row), "{row} missing from {switch}");
    }
    // Evidence of older runs (no first sightings): the same table without
    // that column.
    let lowered = markdown_evidence(&markdown, "lower-ttl");
    assert!(
        lowered.contains("    | Server | Value | TTL | Serial | Agrees |\n"),
        "{lowered}"
    );
    assert_eq!(
        lowered
            .matches("| 127.0.0.10 | 5 | 2026031401 | yes |")
            .count(),
        3
    );

    let html = render(&report, Format::Html);
    assert!(
        html.contains("<tr><th>Server</th><th>Value</th><th>TTL</th><th>Serial</th><th>Agrees</th><th>First seen agreeing</th></tr>"),
        "{html}"
    );
    assert!(html.contains(
        "<tr><td>127.0.0.1:5355</td><td>127.0.0.20</td><td>5</td><td>2026031403</td><td>yes</td><td>2026-03-14 17:12:09.9 UTC at serial 2026031403, 26.9s after the update</td></tr>"
    ));
    // Nothing is cut, and no raw JSON reaches a reader.
    for text in [&markdown, &html] {
        assert!(!text.contains(" characters)"));
        assert!(
            !text.contains("{&quot;") && !text.contains("{\""),
            "raw JSON in an export"
        );
    }
    // The JSON export keeps the whole structure.
    let json: serde_json::Value = serde_json::from_str(&render(&report, Format::Json)).unwrap();
    let verify = &report.step("switch").unwrap().evidence[1].data;
    assert_eq!(verify["records"][0]["servers"].as_array().unwrap().len(), 3);
    assert_eq!(
        json["steps"][3]["evidence"][1]["data"]["servers"][2]["first_served_at"],
        "2026-03-14T17:12:09.900Z"
    );
}

#[test]
fn sizes_are_iec_in_text_and_exact_bytes_in_json() {
    let report = crashed_report();
    let markdown = render(&report, Format::Markdown);
    assert!(
        markdown.contains("bytes_sent: 9123840 (8.7 MiB)"),
        "{markdown}"
    );
    assert!(!markdown.contains(" MB)"), "{markdown}");
    let json: serde_json::Value = serde_json::from_str(&render(&report, Format::Json)).unwrap();
    let copy = &json["steps"][2]["evidence"][1]["data"];
    assert_eq!(copy["bytes_sent"], 9_123_840);
    // A Duration as older runs stored it ({secs, nanos}) is seconds.
    assert_eq!(copy["duration_s"], 128.4);
    assert!(copy.get("duration").is_none());
    assert!(!markdown.contains("nanos"));
}

#[test]
fn what_a_step_took_leaves_out_the_time_no_coordinator_ran() {
    let report = crashed_report();
    let step = report.step("final-sync").unwrap();
    // 17:03:11 to 17:11:42, less the crash (last record 17:05:02) to the
    // resume (17:09:30).
    assert_eq!(step.stopped_s, 268);
    assert_eq!(step.actual.duration_ms, Some((511 - 268) * 1000));
    // 64 MiB over the 100 Mbit/s link: 5.369 s planned.
    assert_eq!(step.duration_delta_ms, Some(243_000 - 5_369));
    assert_eq!(report.step("switch").unwrap().stopped_s, 0);
    let markdown = render(&report, Format::Markdown);
    assert!(markdown.contains("| 4m3s (+4m28s stopped) |"), "{markdown}");
    let overrun = report
        .deviations
        .iter()
        .find(|d| d.step.as_deref() == Some("final-sync") && d.kind == DeviationKind::Overrun)
        .unwrap();
    assert_eq!(overrun.detail, "took 4m3s (5.4s planned, estimated)");
}

#[test]
fn a_switch_that_did_not_wait_for_the_old_ttl_is_a_deviation() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("no-wait.db");
    let b = first_session(&state, "lab-move.runbook");
    b.evidence(
        at(17, 6, 0),
        "switch",
        "act",
        1,
        "wiki.lab.test. A 127.0.0.10 -> 127.0.0.20 at primary 127.0.0.1:5353, serial 2026031402",
        serde_json::json!({ "primary": "127.0.0.1:5353", "old": "127.0.0.10", "new": "127.0.0.20",
            "swapped": true, "ttl": 5, "serial": 2026031402,
            "ttl_wait": { "lowered_by": "lower-ttl", "old_ttl": 3600,
                "caches_expired_at": "2026-03-14T17:50:03+00:00", "waited_seconds": 0, "wait_skipped": true } }),
    )
    .step(
        "switch",
        "done",
        Some("verify"),
        1,
        Some(at(17, 6, 0)),
        Some(at(17, 6, 0)),
        Some(at(17, 6, 5)),
    );
    let report = Report::build(&read_snapshot(&state).unwrap(), Some(&runbook()));
    let skipped: Vec<&str> = report
        .deviations
        .iter()
        .filter(|d| d.kind == DeviationKind::TtlWaitSkipped)
        .map(|d| d.detail.as_str())
        .collect();
    assert_eq!(
        skipped,
        [
            "switched without waiting for the old TTL (1h, lowered by `lower-ttl`) to expire (--no-ttl-wait); caches could serve the old value until 2026-03-14 17:50:03 UTC"
        ]
    );
    assert!(render(&report, Format::Markdown).contains("| `switch` | TTL wait skipped |"));
    let json: serde_json::Value = serde_json::from_str(&render(&report, Format::Json)).unwrap();
    assert!(
        json["deviations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["kind"] == "ttl_wait_skipped")
    );
    // The same switch having waited is no deviation.
    let crashed = crashed_report();
    assert!(
        !crashed
            .deviations
            .iter()
            .any(|d| d.kind == DeviationKind::TtlWaitSkipped)
    );
}
