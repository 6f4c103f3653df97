//! The product's end-to-end tests: each lab runbook of `fixtures/lab/` (and the demo's) runs to completion
//! against its lab, with the real binary, the way a coordinator works: `cutover lab up`, then
//! `cutover run --t0 now` while manual gates are confirmed with `cutover confirm` from another
//! process, then `cutover export`. Where the machine allows, each lab is in network namespaces
//! of its own with shaped links, and the copies cross them: no copy takes less than half its
//! time over its link (unshaped, one takes a tenth or less).
//! Each run prints its planned-vs-actual table (`--nocapture` shows it). Every lab chooses its
//! own addresses, so these run at once, and beside a second lab of the same runbook; every lab
//! and run started here stops by itself. The lab runbooks' databases are real PostgreSQL and
//! MariaDB servers, written to until the freeze: those tests are `#[ignore]`d, `.ci/run` runs
//! them; the demo's runbook (SQLite) runs everywhere.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use assert_cmd::cargo::CommandCargoExt;

/// The longest a lab run may take here (the runbooks take well under a minute).
const RUN_LIMIT: Duration = Duration::from_secs(240);

fn cutover(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("cutover")
        .unwrap()
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

/// Stops the lab and kills the run, should the test fail midway.
struct Cleanup {
    dir: PathBuf,
    run: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut run) = self.run.take() {
            let _ = run.kill();
            let _ = run.wait();
        }
        let _ = cutover(&["lab", "down", "--dir", self.dir.to_str().unwrap()]);
    }
}

/// The manual steps of a runbook: their names.
fn manual_steps(text: &str) -> Vec<String> {
    let mut gates = Vec::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("step ") {
            current = rest.split_whitespace().next().map(str::to_string);
        } else if line.trim_start().starts_with("manual ") {
            gates.extend(current.clone());
        }
    }
    gates
}

/// One step of an export, planned against actual.
struct Row {
    step: String,
    kind: String,
    /// Planned seconds and where the figure comes from.
    planned: Option<f64>,
    source: String,
    actual: Option<f64>,
    /// Bytes a copy sent.
    sent: Option<u64>,
}

/// The steps of an export, planned against actual.
fn planned_vs_actual(export: &serde_json::Value) -> Vec<Row> {
    let instant = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    export["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            let actual = match (
                instant(&step["actual"]["start"]["utc"]),
                instant(&step["actual"]["end"]["utc"]),
            ) {
                (Some(start), Some(end)) => Some((end - start).num_milliseconds() as f64 / 1000.0),
                _ => None,
            };
            let sent = step["evidence"].as_array().and_then(|evidence| {
                evidence
                    .iter()
                    .filter(|e| e["phase"] == "act")
                    .find_map(|e| e["data"]["bytes_sent"].as_u64())
            });
            Row {
                step: step["name"].as_str().unwrap().to_string(),
                kind: step["kind"].as_str().unwrap().to_string(),
                planned: step["planned"]["duration_s"].as_f64(),
                source: step["planned"]["source"].as_str().unwrap_or("").to_string(),
                actual,
                sent,
            }
        })
        .collect()
}

/// Runs `fixtures/FOLDER/NAME.runbook` in a lab of its own; returns the lab's log (what its
/// database writers said) and the run's JSON export.
fn run_in_the_lab(folder: &str, name: &str) -> (String, serde_json::Value) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(folder)
        .join(format!("{name}.runbook"));
    let text = std::fs::read_to_string(&fixture).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("lab");
    let dir_text = dir.to_str().unwrap().to_string();
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        run: None,
    };

    let up = cutover(&[
        "lab",
        "up",
        fixture.to_str().unwrap(),
        "--dir",
        &dir_text,
        "--lag",
        "2s",
        "--fresh",
        "--stop-after",
        "10m",
    ]);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let network: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("network.json")).unwrap()).unwrap();
    let namespaced = network["mode"] == "namespaces";
    if std::env::var_os("CI").is_some() {
        assert!(
            namespaced,
            "CI runs the lab runbooks over shaped links: {network}"
        );
    }
    let runbook = dir.join(format!("{name}.runbook"));
    let runbook_text = runbook.to_str().unwrap().to_string();

    let started = Instant::now();
    let mut run = StdCommand::cargo_bin("cutover")
        .unwrap()
        .args(["run", &runbook_text, "--t0", "now"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = run.stdout.take().unwrap();
    let stderr = run.stderr.take().unwrap();
    cleanup.run = Some(run);
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());

    // The coordinator confirms each manual gate from another terminal once the run has
    // opened its state (its first progress line).
    let mut pending = manual_steps(&text);
    assert!(!pending.is_empty(), "{name} has manual gates");
    let mut output = Vec::new();
    let status = loop {
        output.extend(received.try_iter());
        let run = cleanup.run.as_mut().unwrap();
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < RUN_LIMIT,
            "{name}: the run took more than {RUN_LIMIT:?}"
        );
        if output.iter().any(|line| line.contains(" run: ")) {
            pending.retain(|gate| {
                !cutover(&["confirm", gate, &runbook_text, "--note", "lab test"])
                    .status
                    .success()
            });
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    cleanup.run = None;
    reader.join().unwrap();
    output.extend(received.try_iter());
    let stdout = output.join("\n");
    let stderr = errors.join().unwrap();
    assert!(
        status.success(),
        "{name}: run failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("run complete"), "{stdout}");
    assert!(
        pending.is_empty(),
        "{name}: gates never confirmed: {pending:?}"
    );

    let export = cutover(&["export", &runbook_text, "--format", "markdown"]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let report = String::from_utf8_lossy(&export.stdout);
    let json = cutover(&["export", &runbook_text, "--format", "json"]);
    assert!(json.status.success());
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let rows = planned_vs_actual(&json);
    let mut table = format!(
        "{name} ({}, {}):\n| step | kind | planned s | actual s | sent |\n|---|---|---:|---:|---:|\n",
        network["mode"].as_str().unwrap_or_default(),
        network["sites"]
            .as_array()
            .map(|sites| sites
                .iter()
                .filter_map(|s| s["rate_bits"].as_u64())
                .map(|b| format!("{} Mbit", b / 1_000_000))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    for Row {
        step,
        kind,
        planned,
        source,
        actual,
        sent,
    } in &rows
    {
        table.push_str(&format!(
            "| {step} | {kind} | {} | {} | {} |\n",
            planned.map_or_else(|| "?".to_string(), |p| format!("{p:.1} ({source})")),
            actual.map_or_else(|| "-".to_string(), |a| format!("{a:.1}")),
            sent.map_or_else(String::new, |b| format!("{:.1} MiB", b as f64 / 1048576.0))
        ));
    }
    println!("{table}");
    if namespaced {
        // A copy with an end behind an agent sends its bytes over that end's link, shaped to
        // the runbook's bandwidth: it cannot take less than bits / rate (10 % allowed for the
        // token bucket's burst and timing).
        let rate = network["sites"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["rate_bits"].as_u64())
            .max()
            .unwrap();
        let crossing: Vec<&str> = network["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["host"].as_str().unwrap())
            .collect();
        let mut checked = 0;
        for Row {
            step,
            kind,
            actual,
            sent,
            ..
        } in &rows
        {
            let (Some(actual), Some(sent)) = (actual, sent) else {
                continue;
            };
            let line = text
                .lines()
                .skip_while(|l| !l.starts_with(&format!("step {step}")))
                .nth(1)
                .unwrap_or_default();
            let over_an_agent = line
                .split_whitespace()
                .filter(|w| w.contains(':'))
                .any(|w| crossing.contains(&w.split(':').next().unwrap()));
            if kind == "image.copy" && over_an_agent && *sent > 4 << 20 {
                // Shaping is in effect: unshaped, such a copy takes a tenth
                // of its link time or less. How close a copy comes to the
                // link's rate is measured by `cargo bench --bench lab_link`,
                // not here (a token bucket's burst and the timing of a
                // sub-second copy move it by a fifth).
                let least = (*sent as f64 * 8.0 / rate as f64) * 0.5;
                assert!(
                    *actual >= least,
                    "{name}: step {step} sent {sent} bytes in {actual}s, faster than the link allows ({least:.2}s)\n{table}"
                );
                checked += 1;
            }
        }
        assert!(
            checked > 0 || !rows.iter().any(|r| r.kind == "image.copy"),
            "{name}: no copy crossed a shaped link\n{table}"
        );
    }
    let steps = text.lines().filter(|l| l.starts_with("step ")).count();
    assert!(
        report.contains(&format!("completed: {steps} of {steps} steps done")),
        "{report}"
    );
    assert!(
        report.contains(" | lab test |"),
        "the confirmations are in the report"
    );
    let down = cutover(&["lab", "down", "--dir", &dir_text]);
    assert!(down.status.success());
    assert!(
        !dir.join(".lab/databases").exists(),
        "lab down removes the database servers' data"
    );
    let log = std::fs::read_to_string(dir.join(".lab/lab.log")).unwrap_or_default();
    (log, json)
}

/// A lab runbook whose `db.sync` replicates real servers: each source was written to while
/// it replicated, until its freeze step; the step's evidence shows equal tables compared at
/// the end and the replication removed (and, where its `undo` replicates back, the
/// replication back set up); `lab down` removed the servers' data.
fn run_with_databases(name: &str) {
    let (log, export) = run_in_the_lab("lab", name);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/lab")
        .join(format!("{name}.runbook"));
    let fallbacks = std::fs::read_to_string(fixture)
        .unwrap()
        .matches("  undo db.sync ")
        .count();
    let writers: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("lab writer "))
        .collect();
    assert!(!writers.is_empty(), "{name}: no writer ran:\n{log}");
    for line in &writers {
        let writes: u64 = line
            .split("stopped after ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(writes > 0, "{name}: {line}");
        assert!(line.ends_with("its freeze step is done"), "{name}: {line}");
    }
    let steps = export["steps"].as_array().unwrap();
    let syncs: Vec<&serde_json::Value> = steps
        .iter()
        .filter(|s| {
            s["kind"] == "db.sync"
                && s["evidence"].as_array().is_some_and(|e| {
                    e.iter()
                        .any(|e| e["data"]["replication_removed"].is_string())
                })
        })
        .collect();
    assert!(
        !syncs.is_empty(),
        "{name}: no db.sync verified with its replication removed"
    );
    for step in syncs {
        let verified = step["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["data"]["replication_removed"].is_string())
            .unwrap();
        let summary = verified["summary"].as_str().unwrap();
        assert!(
            summary.contains("match by row count and checksum"),
            "{name}: {summary}"
        );
        let tables = verified["data"]["tables"].as_array().unwrap();
        assert!(tables.len() >= 2, "{name}: {summary}");
        let edits = tables
            .iter()
            .find(|t| t["table"].as_str().unwrap().ends_with("edits"))
            .unwrap();
        assert!(
            edits["source_rows"].as_u64().unwrap() > 0,
            "the writer's rows were compared"
        );
    }
    let backs = steps
        .iter()
        .filter(|s| {
            s["evidence"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["data"]["replication_back"].is_string()))
        })
        .count();
    assert_eq!(
        backs, fallbacks,
        "{name}: each undo replicating back opened its fallback window"
    );
}

/// The demo's runbook: its database is a SQLite file, so it needs no server.
#[test]
fn the_demo_runbook_runs_to_completion_in_the_lab() {
    run_in_the_lab("demo", "maemo-2013");
}

// The lab runbooks replicate PostgreSQL and MariaDB servers (Debian's `postgresql` and
// `mariadb-server`): `.ci/run` runs them.

#[test]
#[ignore = "needs mariadb-server"]
fn maemo_2013_runs_to_completion_in_the_lab() {
    run_with_databases("maemo-2013");
}

#[test]
#[ignore = "needs mariadb-server"]
fn colo_2009_runs_to_completion_in_the_lab() {
    run_with_databases("colo-2009");
}

#[test]
#[ignore = "needs postgresql"]
fn evacuation_2015_runs_to_completion_in_the_lab() {
    run_with_databases("evacuation-2015");
}

#[test]
#[ignore = "needs mariadb-server"]
fn cloud_2013_runs_to_completion_in_the_lab() {
    run_with_databases("cloud-2013");
}

/// Two labs of one runbook, each with its own addresses and database servers, run it at the
/// same time.
#[test]
#[ignore = "needs mariadb-server"]
fn two_labs_of_colo_2009_run_it_at_the_same_time() {
    let other = std::thread::spawn(|| run_with_databases("colo-2009"));
    run_with_databases("colo-2009");
    other.join().unwrap();
}
