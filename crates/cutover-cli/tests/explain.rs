//! `cutover explain CODE` through the real binary: a planner rule's page,
//! a language code's meaning, the list, and "did you mean" for a misspelt
//! code. The pages come from the binary, not from files of this repository:
//! the test runs it from an empty folder.

use assert_cmd::Command;

fn explain(args: &[&str]) -> assert_cmd::assert::Assert {
    let empty = tempfile::tempdir().unwrap();
    Command::cargo_bin("cutover")
        .unwrap()
        .current_dir(empty.path())
        .env("NO_COLOR", "1")
        .arg("explain")
        .args(args)
        .assert()
}

fn stdout(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

#[test]
fn a_rule_prints_its_page() {
    let out = explain(&["ttl-not-lowered"]).success();
    let page = stdout(&out);
    assert!(page.starts_with("# ttl-not-lowered (error)\n"), "{page}");
    for section in [
        "## What it does",
        "## Why it matters",
        "## Example",
        "## How to fix",
    ] {
        assert!(page.contains(section), "{page}");
    }
    // Every rule of the registry has its page.
    for rule in cutover_plan::lint::RULES {
        let page = stdout(&explain(&[rule.code]).success());
        assert_eq!(page, rule.page());
    }
}

#[test]
fn a_language_code_prints_its_meaning() {
    let page = stdout(&explain(&["UNKNOWN-NAME"]).success());
    assert!(page.starts_with("# unknown-name (error)\n"), "{page}");
    assert!(page.contains("not declared"), "{page}");
}

#[test]
fn list_names_every_code() {
    let list = stdout(&explain(&["--list"]).success());
    for rule in cutover_plan::lint::RULES {
        assert!(list.contains(rule.code), "{list}");
    }
    for code in cutover_lang::Code::ALL {
        assert!(list.contains(code.as_str()), "{list}");
    }
}

#[test]
fn a_misspelt_code_gets_did_you_mean() {
    let out = explain(&["ttl-not-lowerd"]).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("unknown code `ttl-not-lowerd`; did you mean `ttl-not-lowered`?"),
        "{stderr}"
    );
    assert!(stdout(&out).is_empty());
    let out = explain(&["no-such-thing-at-all"]).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("cutover explain --list"), "{stderr}");
}
