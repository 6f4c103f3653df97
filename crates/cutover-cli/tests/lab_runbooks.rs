//! The product's end-to-end tests: each lab runbook of `fixtures/lab/` runs to completion
//! against its lab, with the real binary, the way a coordinator works: `cutover lab up`, then
//! `cutover run --t0 now` while manual gates are confirmed with `cutover confirm` from another
//! process, then `cutover export`. Every fixture uses its own loopback addresses; every lab
//! and run started here stops by itself.

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

fn run_in_the_lab(name: &str) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/lab")
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
    let steps = text.lines().filter(|l| l.starts_with("step ")).count();
    assert!(
        report.contains(&format!("completed: {steps} of {steps} steps done")),
        "{report}"
    );
    assert!(
        report.contains(" | lab test |"),
        "the confirmations are in the report"
    );
}

#[test]
fn maemo_2013_runs_to_completion_in_the_lab() {
    run_in_the_lab("maemo-2013");
}

#[test]
fn colo_2009_runs_to_completion_in_the_lab() {
    run_in_the_lab("colo-2009");
}

#[test]
fn evacuation_2015_runs_to_completion_in_the_lab() {
    run_in_the_lab("evacuation-2015");
}

#[test]
fn cloud_2013_runs_to_completion_in_the_lab() {
    run_in_the_lab("cloud-2013");
}
