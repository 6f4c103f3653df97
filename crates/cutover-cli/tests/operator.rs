//! Who a run records as its operator, from the real `cutover` binary: the
//! login name, from the password database when `USER` (and `LOGNAME`,
//! `USERNAME`) is unset, or the name given with `--operator`, for the run,
//! a confirmation and the lock.

mod support;

use std::path::Path;
use std::process::Command;

const RUNBOOK: &str = r#"runbook wiki

step settle
  wait 1s

step freeze after settle
  manual "Put the wiki into read-only mode"
"#;

/// `cutover ARGS` in `dir` with no login name in the environment.
fn cutover(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let no_login = [("USER", None), ("LOGNAME", None), ("USERNAME", None)];
    support::cli::cutover(dir, args, &no_login)
}

fn export(dir: &Path) -> serde_json::Value {
    let (code, out, err) = cutover(dir, &["export", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The password database's name for this process's user, as `id -un`
/// reads it.
fn login_name() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn without_user_the_password_database_names_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("wiki.runbook"), RUNBOOK).unwrap();
    let (code, out, err) = cutover(
        dir,
        &["run", "wiki.runbook", "--until", "settle", "--t0", "now"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let name = login_name();
    assert_ne!(name, "unknown");
    assert_eq!(export(dir)["run"]["operator"], name.as_str());

    let (code, out, err) = cutover(dir, &["confirm", "freeze", "--ahead"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("confirmed `freeze` ahead as {name}:")),
        "{out}"
    );
    assert_eq!(export(dir)["confirmations"][0]["user"], name.as_str());
}

#[test]
fn operator_names_who_ran_and_who_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("wiki.runbook"), RUNBOOK).unwrap();
    let (code, out, err) = cutover(
        dir,
        &[
            "run",
            "wiki.runbook",
            "--until",
            "settle",
            "--t0",
            "now",
            "--operator",
            "alice",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, status, _) = cutover(dir, &["status"]);
    assert_eq!(code, 0);
    assert!(
        status.starts_with("run of `wiki` (wiki.runbook) by alice: "),
        "{status}"
    );

    let (code, out, err) = cutover(dir, &["confirm", "freeze", "--ahead", "--operator", "bob"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("confirmed `freeze` ahead as bob:"), "{out}");
    let report = export(dir);
    assert_eq!(report["run"]["operator"], "alice");
    assert_eq!(report["confirmations"][0]["user"], "bob");

    for bad in ["", "  ", "eve\u{1b}[2J"] {
        let (code, _, err) = cutover(dir, &["confirm", "freeze", "--ahead", "--operator", bad]);
        assert_eq!(code, 2, "{bad:?}");
        assert!(
            err.contains("--operator") && err.contains("give a name, without control characters"),
            "{err}"
        );
        assert!(
            !err.contains('\u{1b}'),
            "the name is not echoed raw: {err:?}"
        );
    }
    assert_eq!(
        export(dir)["confirmations"].as_array().map(Vec::len),
        Some(1),
        "nothing more was recorded"
    );
}
