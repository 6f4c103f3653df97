//! `cutover check` and `cutover fmt` driven through the real binary: the
//! reference runbooks, bad input of every sort, JSON output, and formatting
//! in place or as a check.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cutover() -> Command {
    let mut cmd = Command::cargo_bin("cutover").unwrap();
    cmd.current_dir(repo()).env("NO_COLOR", "1");
    cmd
}

fn reference_runbooks() -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(repo().join("runbooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "runbook"))
        .map(|p| format!("runbooks/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    found.sort();
    found
}

#[test]
fn reference_runbooks_check_clean() {
    let runbooks = reference_runbooks();
    assert_eq!(runbooks.len(), 4);
    let out = cutover().arg("check").args(&runbooks).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    for runbook in &runbooks {
        assert!(stderr.contains(&format!("ok: {runbook}")), "{stderr}");
    }
}

#[test]
fn reference_runbooks_are_formatted() {
    cutover()
        .arg("fmt")
        .arg("--check")
        .args(reference_runbooks())
        .assert()
        .success()
        .stdout("");
}

/// Runs `check` on `file` and returns its stderr; it must exit 1 without panicking.
fn check_fails(file: &Path) -> String {
    let out = cutover().arg("check").arg(file).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn empty_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.runbook");
    std::fs::write(&path, "").unwrap();
    let stderr = check_fails(&path);
    assert!(
        stderr.contains("empty-file") && stderr.contains("is empty"),
        "{stderr}"
    );
}

#[test]
fn non_utf8_bytes_are_an_error_pointing_at_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.runbook");
    std::fs::write(&path, b"runbook move\n\nstep s\n  manual \"Caf\xe9\"\n").unwrap();
    let stderr = check_fails(&path);
    assert!(stderr.contains("not UTF-8 text: byte 0xE9"), "{stderr}");
    assert!(stderr.contains("latin1.runbook:4:14"), "{stderr}");
}

#[test]
fn a_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = check_fails(dir.path());
    assert!(
        stderr.contains("is a directory, not a runbook file"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = check_fails(&dir.path().join("nope.runbook"));
    assert!(
        stderr.contains("cannot read") && stderr.contains("nope.runbook"),
        "{stderr}"
    );
}

#[test]
fn a_ten_megabyte_line_is_an_error_and_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.runbook");
    std::fs::write(&path, "x".repeat(10 * 1024 * 1024)).unwrap();
    let stderr = check_fails(&path);
    assert!(
        stderr.contains("line-too-long") && stderr.contains("long.runbook:1:1"),
        "{stderr}"
    );
    assert!(
        stderr.len() < 10_000,
        "the long line was echoed: {} bytes",
        stderr.len()
    );
    cutover()
        .arg("fmt")
        .arg("--check")
        .arg(&path)
        .assert()
        .code(1);
}

#[test]
fn json_output_has_positions_and_codes() {
    let out = cutover()
        .args([
            "check",
            "--format",
            "json",
            "fixtures/syntax/invalid/several-errors.runbook",
        ])
        .assert()
        .code(1);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["errors"], 3);
    let first = &report["diagnostics"][0];
    assert_eq!(first["code"], "unknown-name");
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(16), Some(16))
    );
    assert_eq!(
        first["file"],
        "fixtures/syntax/invalid/several-errors.runbook"
    );
    let codes: Vec<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["unknown-name", "bad-kind-args", "bad-value"]);
}

#[test]
fn human_output_of_several_errors() {
    let out = cutover()
        .args(["check", "fixtures/syntax/invalid/several-errors.runbook"])
        .assert()
        .code(1);
    insta::assert_snapshot!(String::from_utf8_lossy(&out.get_output().stderr));
}

#[test]
fn fmt_rewrites_in_place_and_check_shows_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messy.runbook");
    let messy = std::fs::read_to_string(repo().join("fixtures/fmt/input/messy.runbook")).unwrap();
    let expected =
        std::fs::read_to_string(repo().join("fixtures/fmt/expected/messy.runbook")).unwrap();
    std::fs::write(&path, &messy).unwrap();

    let out = cutover()
        .arg("fmt")
        .arg("--check")
        .arg(&path)
        .assert()
        .code(1);
    let diff = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        diff.contains("-runbook   messy") && diff.contains("+runbook messy"),
        "{diff}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        messy,
        "--check changed the file"
    );

    cutover().arg("fmt").arg(&path).assert().success();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary files left behind: {leftovers:?}"
    );
    cutover()
        .arg("fmt")
        .arg("--check")
        .arg(&path)
        .assert()
        .success();
}

#[test]
fn fmt_refuses_text_it_cannot_tokenise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.runbook");
    std::fs::write(&path, "runbook x\n\nstep s\n  manual \"not closed\n").unwrap();
    let out = cutover().arg("fmt").arg(&path).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("unterminated-string") && stderr.contains("open.runbook:4:10"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "runbook x\n\nstep s\n  manual \"not closed\n"
    );
}

/// `check` finds what `plan` finds: a planner error fails it, a warning
/// fails it only with `--deny-warnings`, and JSON says the same.
#[test]
fn check_fails_on_what_the_planner_rejects() {
    let stderr = check_fails(Path::new("fixtures/lint/ttl-not-lowered.runbook"));
    assert!(stderr.contains("ttl-not-lowered"), "{stderr}");
    assert!(stderr.contains("\n3 errors, "), "{stderr}");
    assert!(!stderr.contains("ok: "), "{stderr}");
    cutover()
        .args(["check", "fixtures/lint/ttl-not-lowered.pass.runbook"])
        .assert()
        .success();

    let out = cutover()
        .args([
            "check",
            "fixtures/lint/ttl-not-lowered.runbook",
            "--format",
            "json",
        ])
        .assert()
        .code(1);
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["files"][0]["ok"], false, "{json}");
    assert!(
        json["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["code"] == "ttl-not-lowered"),
        "{json}"
    );

    let warned = "fixtures/lint/unverifiable-step.runbook";
    let out = cutover().args(["check", warned]).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("unverifiable-step"), "{stderr}");
    assert!(stderr.contains("0 errors, 1 warning\n"), "{stderr}");
    cutover()
        .args(["check", warned, "--deny-warnings"])
        .assert()
        .code(1);
}

/// `--format short`: one line per finding, `FILE:LINE:COL: SEVERITY[CODE]:
/// MESSAGE`, language and planner findings alike.
#[test]
fn short_format_is_one_line_per_finding() {
    let out = cutover()
        .args([
            "check",
            "--format",
            "short",
            "fixtures/syntax/invalid/several-errors.runbook",
            "fixtures/lint/ttl-not-lowered.runbook",
            "fixtures/lint/unverifiable-step.runbook",
        ])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    insta::assert_snapshot!(stderr);
}
