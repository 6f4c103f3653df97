//! One rule for the state file, as the real `cutover` binary follows it:
//! every command finds the run of a runbook at `.cutover/NAME.db` beside
//! it, NAME from its `runbook NAME` line, also when the file is named
//! otherwise; and `status`, `confirm`, `export` and `serve` without FILE
//! take the one runbook in the current folder, or say which ones they
//! could take.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The file is `move-2026.runbook`, the runbook `wiki`: its state file is
/// `.cutover/wiki.db`, and `.cutover/move-2026.db` is never made.
const RUNBOOK: &str = r#"runbook wiki
  title "State rule test"

step settle
  wait 1s

step freeze after settle
  manual "Put the wiki into read-only mode"
"#;

const FILE: &str = "move-2026.runbook";

fn cutover(dir: &Path, args: &[&str]) -> (i32, String, String) {
    support::cli::cutover(dir, args, &[("USER", Some("tester"))])
}

/// `move-2026.runbook` in `dir`, run until `settle` is done (`freeze`
/// stays pending).
fn ran(dir: &Path) {
    std::fs::write(dir.join(FILE), RUNBOOK).unwrap();
    let (code, out, err) = cutover(dir, &["run", FILE, "--until", "settle", "--t0", "now"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(".cutover/wiki.db"), "{out}");
    assert!(dir.join(".cutover/wiki.db").is_file());
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cutover serve ARGS` on a free loopback port: the child and the line it
/// printed first (`dashboard of STATE at http://ADDRESS/`).
fn serve(dir: &Path, args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(dir)
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--exit-after", "120"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    // The line comes once the port is bound; `--exit-after` bounds the read.
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    (running, line)
}

fn api_run(line: &str) -> serde_json::Value {
    let address = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.strip_suffix('/'))
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{address}/api/run"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    serde_json::from_str(&response.text().unwrap()).unwrap()
}

#[test]
fn export_and_serve_find_the_run_of_a_runbook_named_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ran(dir);

    let (code, out, err) = cutover(dir, &["export", FILE, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["run"]["runbook"], "wiki");
    assert_eq!(report["steps"][0]["name"], "settle");
    assert_eq!(report["steps"][0]["status"], "done");

    let (code, out, err) = cutover(dir, &["status", FILE, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["run"]["runbook_name"], "wiki");

    let (_server, line) = serve(dir, &[FILE]);
    assert!(line.contains(".cutover/wiki.db"), "{line}");
    let state = api_run(&line);
    assert_eq!(state["report"]["run"]["runbook"], "wiki");
    assert_eq!(state["report"]["steps"][0]["status"], "done");

    assert!(
        !dir.join(".cutover/move-2026.db").exists(),
        "no command made a state file named after the file"
    );
}

#[test]
fn without_file_the_one_runbook_here_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // An included file is part of the runbook, not a second one.
    std::fs::write(
        dir.join(FILE),
        format!("{RUNBOOK}\ninclude \"hosts.runbook\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("hosts.runbook"),
        "host old site a addr 127.0.0.10 via local old\n",
    )
    .unwrap();
    let (code, out, err) = cutover(dir, &["run", FILE, "--until", "settle", "--t0", "now"]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = cutover(dir, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("run of `wiki` (move-2026.runbook)"),
        "{out}"
    );

    let (code, out, err) = cutover(dir, &["export", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["run"]["runbook"], "wiki");

    // As the run's own prompt suggests: `cutover confirm STEP`.
    let (code, out, err) = cutover(dir, &["confirm", "freeze", "--ahead"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("confirmed `freeze` ahead as tester"),
        "{out}"
    );
    let (code, out, _) = cutover(dir, &["export", "--format", "json"]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["confirmations"][0]["step"], "freeze");
    assert_eq!(report["confirmations"][0]["user"], "tester");

    let (_server, line) = serve(dir, &[]);
    assert!(line.contains(".cutover/wiki.db"), "{line}");
    assert_eq!(api_run(&line)["report"]["run"]["runbook"], "wiki");
}

#[test]
fn without_file_none_or_several_runbooks_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    for command in ["status", "export", "serve"] {
        let (code, out, err) = cutover(dir, &[command]);
        assert_eq!(code, 2, "{command}: {out}");
        assert!(
            err.contains("no runbook FILE given and no `.runbook` file in")
                && err.contains("--state"),
            "{command}: {err}"
        );
    }

    std::fs::write(dir.join(FILE), RUNBOOK).unwrap();
    std::fs::write(
        dir.join("other.runbook"),
        "runbook other\n\nstep one\n  wait 1s\n",
    )
    .unwrap();
    for args in [&["status"][..], &["confirm", "freeze"], &["export"]] {
        let (code, out, err) = cutover(dir, args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(
            err.contains("no runbook FILE given and 2 runbooks in")
                && err.contains("move-2026.runbook, other.runbook; name one"),
            "{args:?}: {err}"
        );
    }

    // A FILE with errors: its state file cannot be known.
    std::fs::write(dir.join("broken.runbook"), "runbook\n").unwrap();
    let (code, _, err) = cutover(dir, &["status", "broken.runbook"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "runbook broken.runbook has errors (shown above), so its state file is unknown"
        ),
        "{err}"
    );
}
