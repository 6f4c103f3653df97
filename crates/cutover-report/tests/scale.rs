//! How the report scales with the size of a run: a synthetic run of 10,000
//! steps with about five events and two pieces of evidence each, built
//! into a real state file, then read and turned into a report (what
//! `cutover export` and every `/api/run` poll of the dashboard do).
//!
//! A measurement, not a pass/fail test: it prints its timings.
//! `cargo test -p cutover-report --test scale -- --ignored --nocapture`
//! (`CUTOVER_SCALE_STEPS` sets another size).

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use cutover_report::{Format, PlannedRunbook, Report, live, read_snapshot, render};
use rusqlite::params;
use std::path::Path;
use std::time::Instant;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 17, 0, 0)
        .single()
        .expect("valid time")
        + TimeDelta::seconds(seconds)
}

/// A run of `steps` wait steps: all done but the last few (running, one
/// of them in its second attempt), each with its phase, progress, message
/// and done events and an act and a verify evidence.
fn synthetic_run(path: &Path, steps: usize) -> String {
    drop(cutover_store::Store::open(path).expect("create state file"));
    let mut conn = rusqlite::Connection::open(path).expect("open state file");
    let tx = conn.transaction().expect("transaction");
    tx.execute(
        "INSERT INTO runs (runbook_name, runbook_path, content_hash, operator, t0, started_at, status)
         VALUES ('scale', 'scale.runbook', 'h', 'ops', ?1, ?1, 'running')",
        params![t(0)],
    )
    .expect("run");
    let mut runbook = String::from("runbook scale\n\n");
    for i in 0..steps {
        let name = format!("s{i:05}");
        let after = if i == 0 {
            String::new()
        } else {
            format!(" after s{:05}", i - 1)
        };
        let definition = format!("step {name}{after}\n  wait 1s");
        runbook.push_str(&definition);
        runbook.push_str("\n\n");
        let at = i as i64;
        let running = i + 3 >= steps;
        let (status, phase, finished) = if running {
            ("running", "act", None)
        } else {
            ("done", "verify", Some(t(at + 1)))
        };
        tx.execute(
            "INSERT INTO steps (run_id, name, position, definition, status, phase, attempts,
                                planned_start, started_at, first_act_at, finished_at)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7, ?8)",
            params![
                name,
                i as i64,
                definition,
                status,
                phase,
                if i + 1 == steps { 2 } else { 1 },
                t(at),
                finished
            ],
        )
        .expect("step");
        let event = |at: i64, kind: &str, message: &str, data: Option<String>| {
            tx.execute(
                "INSERT INTO events (run_id, at, step, kind, message, data) VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                params![t(at), name, kind, message, data],
            )
            .expect("event");
        };
        event(at, "phase", "acting (attempt 1 of 1)", None);
        event(
            at,
            "countdown",
            "waiting until later",
            Some(format!(
                "{{\"until\":\"{}\",\"label\":\"wait\"}}",
                t(at + 86_400).to_rfc3339()
            )),
        );
        event(
            at,
            "progress",
            "0 of 1 s",
            Some("{\"done\":0,\"total\":1,\"unit\":\"s\"}".to_owned()),
        );
        event(at, "message", "waiting 1s", None);
        if !running {
            event(at + 1, "done", "verified: waited 1s", None);
        }
        for (phase, summary) in [("act", "started waiting"), ("verify", "waited 1s")] {
            tx.execute(
                "INSERT INTO evidence (run_id, at, step, phase, attempt, summary, data)
                 VALUES (1, ?1, ?2, ?3, 1, ?4, '{\"waited_s\":1}')",
                params![t(at), name, phase, summary],
            )
            .expect("evidence");
        }
    }
    tx.commit().expect("commit");
    runbook
}

fn seconds(since: Instant) -> String {
    format!("{:.3} s", since.elapsed().as_secs_f64())
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn a_report_of_ten_thousand_steps() {
    let steps = std::env::var("CUTOVER_SCALE_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scale.db");
    let started = Instant::now();
    let text = synthetic_run(&path, steps);
    println!("{steps} steps: state file written in {}", seconds(started));

    let started = Instant::now();
    let snapshot = read_snapshot(&path).expect("snapshot");
    println!(
        "read: {} ({} events, {} evidence)",
        seconds(started),
        snapshot.events.len(),
        snapshot.evidence.len()
    );
    let started = Instant::now();
    let report = Report::build(&snapshot, None);
    println!("Report::build without the runbook: {}", seconds(started));
    assert_eq!(report.steps.len(), steps);
    assert!(report.steps.iter().all(|s| s.evidence.len() == 2));

    let loaded = cutover_lang::parse_source("scale.runbook", text);
    let runbook = loaded.runbook.expect("runbook parses");
    let started = Instant::now();
    let report = Report::build(&snapshot, Some(&runbook));
    println!("Report::build with the runbook: {}", seconds(started));
    let mut digest = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(
        &render(&Report::build(&snapshot, None), Format::Json),
        &mut digest,
    );
    println!(
        "JSON without the runbook: digest {:016x}",
        std::hash::Hasher::finish(&digest)
    );
    let started = Instant::now();
    let live = live::live_state(&snapshot, Some(&runbook), t(steps as i64));
    println!(
        "dashboard live state (build, gantt, countdowns): {}",
        seconds(started)
    );
    assert_eq!(live.countdowns.len(), 3);
    let mut digest = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&serde_json::to_string(&live).expect("json"), &mut digest);
    println!(
        "live state JSON: digest {:016x}",
        std::hash::Hasher::finish(&digest)
    );
    for format in [Format::Json, Format::Csv, Format::Markdown, Format::Html] {
        let started = Instant::now();
        let text = render(&report, format);
        // A digest to compare outputs across versions of the report code.
        let mut digest = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&text, &mut digest);
        println!(
            "render {format:?}: {} ({} bytes, digest {:016x})",
            seconds(started),
            text.len(),
            std::hash::Hasher::finish(&digest)
        );
    }
}

/// The stages of one `/api/run` answer, timed on a state file of your own
/// (`CUTOVER_SCALE_STATE=PATH`, e.g. the fleet bench's, with
/// `CUTOVER_SCALE_RUNBOOK=PATH`) or on the synthetic run.
#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn the_stages_of_an_api_run_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, runbook_text) = match std::env::var_os("CUTOVER_SCALE_STATE") {
        Some(state) => {
            let runbook = std::env::var_os("CUTOVER_SCALE_RUNBOOK").expect("CUTOVER_SCALE_RUNBOOK");
            (
                state.into(),
                std::fs::read_to_string(runbook).expect("runbook"),
            )
        }
        None => {
            let path = dir.path().join("scale.db");
            let text = synthetic_run(&path, 10_000);
            (path, text)
        }
    };
    let path: std::path::PathBuf = path;
    for round in 0..3 {
        println!("round {round}");
        let started = Instant::now();
        let loaded = cutover_lang::parse_source("scale.runbook", runbook_text.clone());
        let runbook = loaded.runbook.expect("runbook parses");
        println!("  parse the runbook: {}", seconds(started));
        let started = Instant::now();
        let planned = PlannedRunbook::new(runbook.clone());
        println!(
            "  plan and index it: {} ({} steps)",
            seconds(started),
            runbook.steps.len()
        );
        let started = Instant::now();
        let snapshot = read_snapshot(&path).expect("snapshot");
        println!(
            "  read_snapshot: {} ({} steps, {} events, {} evidence)",
            seconds(started),
            snapshot.steps.len(),
            snapshot.events.len(),
            snapshot.evidence.len()
        );
        let started = Instant::now();
        let report = Report::build_planned(&snapshot, Some(&planned));
        println!("  Report::build_planned: {}", seconds(started));
        let started = Instant::now();
        let json = serde_json::to_vec(&report).expect("json");
        println!(
            "  serde_json of the whole report: {} ({} bytes)",
            seconds(started),
            json.len()
        );
        let started = Instant::now();
        let svg = cutover_report::gantt_svg(&report, Some(t(0)));
        println!("  gantt: {} ({} bytes)", seconds(started), svg.len());
        let started = Instant::now();
        let live = live::live_state(&snapshot, Some(&runbook), t(0));
        println!(
            "  live_state (clone, plan, build, gantt): {}",
            seconds(started)
        );
        let started = Instant::now();
        let json = serde_json::to_vec(&live).expect("json");
        println!(
            "  serde_json of the live state: {} ({} bytes)",
            seconds(started),
            json.len()
        );
        let source = live::Source::new(path.clone(), Some(runbook));
        let started = Instant::now();
        let first = source.api_run_json(t(0)).expect("answer");
        println!(
            "  /api/run body, first (read, build, serialise): {} ({} bytes)",
            seconds(started),
            first.len()
        );
        let mut times: Vec<f64> = (0..9)
            .map(|i| {
                let started = Instant::now();
                let kept = source.api_run_json(t(1 + i)).expect("answer");
                assert_eq!(kept.len(), first.len());
                started.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "  /api/run body, state unchanged (kept): median {:.3} s, min {:.3} s of 9",
            times[4], times[0]
        );
        // Changed states, as while the engine writes: each answer follows
        // a new event and a step's transition (with evidence).
        let store = cutover_store::Store::open_existing(&path).expect("open for writing");
        let run = store.latest_run().expect("run").expect("a run").id;
        let running = store
            .steps(run)
            .expect("steps")
            .into_iter()
            .rev()
            .find(|s| s.status == cutover_store::StepStatus::Running)
            .map(|s| s.name);
        let read_only = cutover_store::Store::open_read_only(&path).expect("read-only");
        let started = Instant::now();
        let steps = read_only.read(|tx| tx.steps(run)).expect("steps").len();
        println!(
            "  read every steps row: {} ({steps} rows)",
            seconds(started)
        );
        let started = Instant::now();
        let steps = read_only
            .read(|tx| tx.steps_without_evidence(run))
            .expect("steps")
            .len();
        println!(
            "  read every steps row without its latest evidence: {} ({steps} rows)",
            seconds(started)
        );
        let mut full_times = Vec::new();
        let mut times: Vec<f64> = (0..9)
            .map(|i| {
                store
                    .append_event(
                        run,
                        running.as_deref(),
                        "message",
                        &format!("note {i}"),
                        None,
                    )
                    .expect("event");
                if let Some(step) = &running {
                    store
                        .transition(
                            run,
                            &cutover_store::Transition {
                                step,
                                status: cutover_store::StepStatus::Running,
                                phase: Some(cutover_store::Phase::Act),
                                new_attempt: false,
                                event_kind: "progress",
                                message: format!("progress {i}"),
                                evidence: Some((
                                    cutover_store::Phase::Act,
                                    format!("evidence {i}"),
                                    serde_json::json!({ "i": i }),
                                )),
                            },
                        )
                        .expect("transition");
                }
                let started = Instant::now();
                let body = source.api_run_json(t(20 + i)).expect("answer");
                let took = started.elapsed().as_secs_f64();
                // What the answer cost before it was read incrementally: a
                // full read (a new source keeps nothing).
                let fresh = live::Source::new(path.clone(), Some(planned.runbook().clone()));
                let started = Instant::now();
                let full = fresh.api_run_json(t(20 + i)).expect("answer");
                full_times.push(started.elapsed().as_secs_f64());
                assert_eq!(body, full, "the incremental answer is the full read's");
                took
            })
            .collect();
        times.sort_by(f64::total_cmp);
        full_times.sort_by(f64::total_cmp);
        println!(
            "  /api/run body, state changed, full read (as before): median {:.3} s, min {:.3} s of 9",
            full_times[4], full_times[0]
        );
        println!(
            "  /api/run body, state changed (incremental read): median {:.3} s, min {:.3} s of 9",
            times[4], times[0]
        );
    }
}
