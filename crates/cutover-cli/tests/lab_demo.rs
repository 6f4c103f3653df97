//! `cutover demo`, the README's first command, with the real binary: it builds the lab, runs
//! the lab-sized 2013 move end to end, and writes a report in which every step is done with
//! evidence. Its lab takes a free loopback block of its own, recorded in `network.json`, and
//! the runbook it runs names those addresses instead of the fixture's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;

/// The names of the demo runbook's steps, read from the fixture it embeds.
fn step_names() -> Vec<String> {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/demo/maemo-2013.runbook");
    std::fs::read_to_string(fixture)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("step "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn the_demo_runs_every_step_and_reports_it_with_evidence() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("demo");
    let output = Command::cargo_bin("cutover")
        .unwrap()
        .args(["demo", "--dir", dir.to_str().unwrap()])
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("demo complete in"), "{stdout}");

    let report_path = stdout
        .lines()
        .find_map(|line| line.strip_prefix("report: "))
        .map(PathBuf::from)
        .expect("the demo prints the report's path");
    assert_eq!(
        report_path,
        std::fs::canonicalize(&dir).unwrap().join("report.md")
    );
    let report = std::fs::read_to_string(&report_path).unwrap();

    let steps = step_names();
    assert_eq!(steps.len(), 15);
    assert!(
        report.contains(&format!(
            "| Outcome | completed: {n} of {n} steps done |",
            n = steps.len()
        )),
        "{report}"
    );
    assert!(
        report.contains("| `freeze` | "),
        "the manual gate's confirmation is listed"
    );
    assert!(
        report.contains(" | demo |"),
        "confirmed with the note \"demo\""
    );
    for step in &steps {
        let heading = format!("### `{step}` — done (");
        let start = report
            .find(&heading)
            .unwrap_or_else(|| panic!("no evidence section for {step} in\n{report}"));
        let section = &report[start + heading.len()..];
        let section = &section[..section.find("\n### ").unwrap_or(section.len())];
        assert!(
            section.contains("- **verify**") || section.contains("- **check**"),
            "step {step} has no verification evidence:\n{section}"
        );
    }
    // The demo's own addresses, not the fixture's.
    let network: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("network.json")).unwrap()).unwrap();
    let primary = network["dns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["runbook"] == "127.0.0.53:5301")
        .unwrap()["lab"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(primary, "127.0.0.53:5301");
    assert!(primary.starts_with("127."), "{primary}");
    let at_primary = format!("at primary {primary}");
    // The kinds that act left evidence of their act: a delta copy, a TSIG update, a backup.
    for evidence in [
        "MiB sent",
        at_primary.as_str(),
        "served by both verify servers",
        "answered 200 with \"served by wiki-new.\"",
        "match the snapshot's row counts and checksums",
    ] {
        assert!(
            report.contains(evidence),
            "missing {evidence:?} in the report"
        );
    }
    assert!(
        !report.contains(
            &std::fs::read_to_string(dir.join("keys/maemo-update.key"))
                .unwrap()
                .split('"')
                .nth(3)
                .unwrap()
                .to_string()
        ),
        "no secret in the report"
    );
}
