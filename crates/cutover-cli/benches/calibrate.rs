//! Calibration against a rehearsal: how close `cutover plan --calibrate` comes to what the
//! next rehearsal takes. Two lab rehearsals of `fixtures/lab/maemo-2013.runbook`, each a
//! fresh lab (`cutover lab up FILE --lag 2s --fresh --link-scale 0.01`: network namespaces,
//! each site's link shaped to 10 Mbit, the public secondary 2 s behind the primary) run with
//! `cutover run --t0 now`, its `freeze` gate confirmed 10 s after it began to wait. The
//! second rehearsal is planned first with `cutover plan --calibrate FIRST.db`.
//!
//! Prints per step: the runbook's own figure, the calibrated one, what the second rehearsal
//! took (first act to done, the measure calibration takes) and the difference; then whether
//! every copy, DNS and gate step is within ±25 %. Steps under a second are listed apart (their
//! difference is noise). Needs root for the namespaces; elsewhere it says so and stops.
//! `cargo bench -p cutover-cli --bench calibrate` (`CUTOVER_BENCH_KEEP=DIR` keeps both state
//! files in DIR).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNBOOK: &str = "maemo-2013.runbook";
const GATE: &str = "freeze";
/// How long the operator takes to confirm the gate.
const CONFIRM_AFTER: Duration = Duration::from_secs(10);
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn cutover(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run cutover")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/lab")
        .join(RUNBOOK)
}

/// Per step: its name, kind, planned seconds and their source.
type Planned = Vec<(String, String, f64, String)>;

/// Each step's planned seconds and source, from `cutover plan --format json`.
fn planned(runbook: &Path, calibrate: Option<&Path>) -> Planned {
    let mut args = vec![
        "plan".to_string(),
        runbook.display().to_string(),
        "--format".into(),
        "json".into(),
    ];
    if let Some(state) = calibrate {
        args.extend(["--calibrate".into(), state.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cutover(&args);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("plan: {}", String::from_utf8_lossy(&out.stderr));
    });
    json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["kind"].as_str().unwrap().to_owned(),
                s["duration"]["seconds"].as_f64().unwrap_or(f64::NAN),
                s["duration"]["source"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Each done step's time from its first act to done, as calibration measures it.
fn measured(state: &Path) -> Vec<(String, f64)> {
    let store = cutover_store::Store::open_read_only(state).expect("the state file");
    store
        .read(|tx| {
            let run = tx.latest_run()?.expect("a run");
            tx.steps(run.id)
        })
        .expect("the steps")
        .into_iter()
        .filter_map(|s| {
            let secs = (s.finished_at? - s.first_act_at?).num_milliseconds() as f64 / 1000.0;
            Some((s.name, secs))
        })
        .collect()
}

/// Whether the run waits at the gate now, from its export.
fn gate_waiting(runbook: &Path) -> bool {
    let out = cutover(&["export", runbook.to_str().unwrap(), "--format", "json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|json| {
            json["steps"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == GATE)
                .map(|s| s.get("waiting_for_confirmation").is_some())
        })
        .unwrap_or(false)
}

/// One rehearsal in a fresh lab; returns the run's state file, copied to `keep`, and the
/// plan made just before it (calibrated from `calibrate` when given) and the runbook's own.
fn rehearsal(keep: &Path, calibrate: Option<&Path>) -> (PathBuf, Planned, Planned) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("lab");
    let dir_text = dir.to_str().unwrap();
    let fixture = fixture();
    let up = cutover(&[
        "lab",
        "up",
        fixture.to_str().unwrap(),
        "--dir",
        dir_text,
        "--lag",
        "2s",
        "--fresh",
        "--link-scale",
        "0.01",
        "--stop-after",
        "15m",
    ]);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let network: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("network.json")).unwrap()).unwrap();
    let runbook = dir.join(RUNBOOK);
    let own = planned(&runbook, None);
    let plan = calibrate.map_or_else(|| own.clone(), |state| planned(&runbook, Some(state)));
    let started = Instant::now();
    let mut run = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["run", runbook.to_str().unwrap(), "--t0", "now"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut confirmed = false;
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = run.kill();
            let _ = cutover(&["lab", "down", "--dir", dir_text]);
            panic!("the rehearsal did not finish in {RUN_LIMIT:?}");
        }
        if !confirmed && gate_waiting(&runbook) {
            std::thread::sleep(CONFIRM_AFTER);
            let confirm = cutover(&["confirm", GATE, runbook.to_str().unwrap()]);
            assert!(
                confirm.status.success(),
                "confirm: {}",
                String::from_utf8_lossy(&confirm.stderr)
            );
            confirmed = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr);
    let _ = cutover(&["lab", "down", "--dir", dir_text]);
    assert!(status.success(), "run: {stderr}");
    let name = if calibrate.is_some() {
        "second.db"
    } else {
        "first.db"
    };
    let state = keep.join(name);
    std::fs::copy(dir.join(".cutover/maemo-2013.db"), &state).unwrap();
    println!(
        "  rehearsal {name}: {} lab, {:.0} s",
        network["mode"].as_str().unwrap_or("?"),
        started.elapsed().as_secs_f64()
    );
    (state, own, plan)
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("calibrate: needs root (network namespaces and tc); nothing measured");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("CUTOVER_BENCH_KEEP")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&keep).unwrap();
    println!(
        "calibrate: two rehearsals of {RUNBOOK} (10 Mbit links, secondary 2 s behind, gate confirmed after {CONFIRM_AFTER:?})"
    );
    let (first, _, _) = rehearsal(&keep, None);
    let (second, own, calibrated) = rehearsal(&keep, Some(&first));
    let actual = measured(&second);
    println!(
        "\n| step | kind | runbook alone | calibrated | 2nd rehearsal | calibrated vs actual |\n|---|---|---:|---:|---:|---:|"
    );
    let mut judged = Vec::new();
    let mut small = Vec::new();
    for ((name, kind, secs, source), (_, _, own_secs, own_source)) in calibrated.iter().zip(&own) {
        let Some((_, took)) = actual.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let diff = (secs - took) / took * 100.0;
        let figure = |secs: f64, source: &str| {
            if secs.is_nan() {
                source.to_owned()
            } else {
                format!("{secs:.2} s ({source})")
            }
        };
        println!(
            "| {name} | {kind} | {} | {} | {took:.2} s | {diff:+.0} % |",
            figure(*own_secs, own_source),
            figure(*secs, source),
        );
        let counted = kind.starts_with("dns.")
            || kind == "image.copy"
            || kind == "db.sync"
            || kind == "manual";
        if counted && *took < 1.0 {
            small.push(name.as_str());
        } else if counted {
            judged.push((name.as_str(), diff));
        }
    }
    let outside: Vec<String> = judged
        .iter()
        // A step without a calibrated figure (NaN) is outside too.
        .filter(|(_, d)| d.is_nan() || d.abs() > 25.0)
        .map(|(n, d)| format!("{n} {d:+.0} %"))
        .collect();
    println!(
        "\ncopy, DNS and gate steps of a second or more: {} of {} within ±25 %{}",
        judged.len() - outside.len(),
        judged.len(),
        if outside.is_empty() {
            String::new()
        } else {
            format!(" (outside: {})", outside.join(", "))
        }
    );
    if !small.is_empty() {
        println!(
            "under a second in the 2nd rehearsal (differences there are noise): {}",
            small.join(", ")
        );
    }
    println!(
        "load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
