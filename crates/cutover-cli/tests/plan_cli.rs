//! `cutover plan` as a user runs it: exit codes, findings on stderr, the
//! plan on stdout in each format, and the terminal output for the
//! real-world runbooks.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs `cutover plan ARGS` from the workspace root; returns exit code,
/// stdout and stderr.
fn plan(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("cutover")
        .unwrap()
        .current_dir(workspace())
        .env("NO_COLOR", "1")
        .arg("plan")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_plan_without_errors_exits_0() {
    let (code, stdout, stderr) = plan(&["fixtures/plan/late-lowering.runbook"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.contains("TTL wait"));
    assert!(
        !stdout.contains('\x1b'),
        "no colours when stdout is not a terminal"
    );
    insta::assert_snapshot!("late-lowering-text", stdout);
}

#[test]
fn errors_exit_1_with_findings_on_stderr() {
    let (code, stdout, stderr) = plan(&["fixtures/plan/overflow.runbook"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("overflows by 4m30s"), "{stdout}");
    insta::assert_snapshot!("overflow-stderr", stderr);
}

#[test]
fn warnings_are_printed_and_exit_0() {
    let (code, _, stderr) = plan(&["fixtures/lint/switch-without-undo.runbook"]);
    assert_eq!(code, 0);
    assert!(stderr.contains("switch-without-undo"), "{stderr}");
}

#[test]
fn every_format() {
    let file = "fixtures/plan/late-lowering.runbook";
    let (code, json, _) = plan(&[file, "--format", "json"]);
    assert_eq!(code, 0);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["schema"], "cutover-plan/1");
    let (_, markdown, _) = plan(&[file, "--format", "markdown"]);
    assert!(
        markdown.starts_with("## Plan: `late-lowering`"),
        "{markdown}"
    );
    let (_, svg, _) = plan(&[file, "--format", "svg"]);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches(r#"class="bar"#).count(), 9);
}

#[test]
fn an_unreadable_file_exits_2() {
    let (code, stdout, stderr) = plan(&["fixtures/plan/no-such.runbook"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("no-such.runbook"), "{stderr}");
}

#[test]
fn a_runbook_with_errors_exits_1_without_a_plan() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.runbook");
    std::fs::write(&path, "runbook broken\n\nstep a after nowhere\n  wait 5m\n").unwrap();
    let (code, stdout, stderr) = plan(&[path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("nowhere"), "{stderr}");
}

/// What a terminal shows for each real-world runbook: the plan, then the
/// findings.
#[test]
fn real_world_runbooks_in_the_terminal() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join("runbooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "runbook"))
        .collect();
    files.sort();
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let relative = format!("runbooks/{name}.runbook");
        let (code, stdout, stderr) = plan(&[&relative]);
        assert!(code == 0 || code == 1, "{name}: exit {code}\n{stderr}");
        insta::assert_snapshot!(
            format!("{name}-terminal"),
            format!("{stdout}\n--- stderr ---\n{stderr}")
        );
    }
}

/// `cutover plan … | head -1` and the like: the reader goes away before the
/// plan is printed; the command ends by SIGPIPE, as other tools do, and
/// does not panic.
#[test]
fn a_closed_output_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("cutover"))
        .current_dir(workspace())
        .args(["plan", "runbooks/maemo-2013.runbook"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}
