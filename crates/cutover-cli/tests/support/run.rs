//! Runs a runbook with the real `cutover run` binary and reads back what
//! the state file kept.

use cutover_store::{EvidenceRecord, Store};
use std::path::Path;
use std::process::{Command, Stdio};

/// What one `cutover run` did.
pub struct Ran {
    pub code: i32,
    /// Standard output and error.
    pub output: String,
    /// Each step's status (`cutover status --format json`), in order.
    pub statuses: Vec<(String, String)>,
    pub evidence: Vec<EvidenceRecord>,
}

impl Ran {
    /// The step's last evidence.
    pub fn last(&self, step: &str) -> &EvidenceRecord {
        self.evidence
            .iter()
            .rfind(|e| e.step == step)
            .unwrap_or_else(|| panic!("no evidence of {step}:\n{}", self.output))
    }

    pub fn status(&self, step: &str) -> &str {
        self.statuses
            .iter()
            .find(|(name, _)| name == step)
            .map_or("missing", |(_, status)| status.as_str())
    }
}

/// Writes `NAME.runbook` in `dir` with `text`, runs it (with `env` set)
/// and reads the state file `.cutover/NAME.db`.
pub fn run(dir: &Path, name: &str, text: &str, env: &[(&str, &str)]) -> Ran {
    let runbook = format!("{name}.runbook");
    std::fs::write(dir.join(&runbook), text).unwrap();
    let cutover = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .env("USER", "tester")
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, output) = cutover(&["run", &runbook]);
    let (status_code, json) = cutover(&["status", &runbook, "--format", "json"]);
    assert_eq!(status_code, 0, "{json}\n{output}");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let statuses = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let store = Store::open_existing(&dir.join(format!(".cutover/{name}.db"))).unwrap();
    let latest = store.latest_run().unwrap().unwrap();
    let evidence = store.evidence(latest.id).unwrap();
    Ran {
        code,
        output,
        statuses,
        evidence,
    }
}
