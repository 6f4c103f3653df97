//! Secrets and the commands a run starts, through the real binary: a
//! command sees only the basic variables and those its `exec` names, a
//! variable holding a key's secret cannot be named, and a secret a command
//! prints anyway is masked in the state file and in every export.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// The secret of the `env:` key (base64 of "lab-tsig-secret-value-001").
const ENV_SECRET: &str = "bGFiLXRzaWctc2VjcmV0LXZhbHVlLTAwMQ==";
const ENV_SECRET_DECODED: &str = "lab-tsig-secret-value-001";
/// The secret of the `file:` key.
const FILE_SECRET: &str = "ZmlsZS1zZWNyZXQtb2YtdGhlLWxhYi1rZXktMDAy";

fn cutover(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("USER", "tester")
        .env("LAB_TSIG", ENV_SECRET)
        .env("PGHOST", "db.internal.example")
        .env("UNNAMED_VAR", "should-not-be-seen")
        .stdin(Stdio::null());
    cmd
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

const HEAD: &str = "runbook secrets\n\n\
    key lab hmac-sha256 env:LAB_TSIG\n\
    key lab-file hmac-sha256 file:secret.txt\n\n\
    zone lab.test\n  primary 127.0.0.1:53 key lab\n\n\
    host web addr 127.0.0.1 via local web\n\n";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn secrets_never_reach_commands_the_state_file_or_exports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("web")).unwrap();
    fs::write(d.join("secret.txt"), format!("{FILE_SECRET}\n")).unwrap();
    fs::write(d.join("web/secret.txt"), format!("{FILE_SECRET}\n")).unwrap();
    // A copy of the env secret a careless script might print.
    fs::write(d.join("web/env-copy.txt"), format!("{ENV_SECRET}\n")).unwrap();
    fs::write(
        d.join("secrets.runbook"),
        format!(
            "{HEAD}step dump\n  exec \"set -x; env; echo x$LAB_TSIG; printenv; echo host=$PGHOST; echo un=$UNNAMED_VAR\" env PGHOST\n\n\
             step leak after dump\n  exec on web \"cat secret.txt; echo; cat secret.txt >&2\"\n\n\
             step leak-env after leak\n  exec on web \"cat env-copy.txt; echo; base64 -d env-copy.txt\"\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = output(cutover(d).args(["run", "secrets.runbook"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains(ENV_SECRET) && !text.contains(FILE_SECRET),
            "{text}"
        );
    }

    // Every byte of the state file, its WAL and shared memory.
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(data) = fs::read(d.join(format!(".cutover/secrets.db{suffix}"))) {
            bytes.extend(data);
        }
    }
    assert!(!bytes.is_empty());
    for secret in [ENV_SECRET, ENV_SECRET_DECODED, FILE_SECRET] {
        assert!(!contains(&bytes, secret), "the state file holds {secret}");
    }
    assert!(
        !contains(&bytes, "should-not-be-seen"),
        "an unnamed variable was handed on"
    );
    assert!(
        contains(&bytes, "[secret lab-file]"),
        "no mask where the file secret was printed"
    );
    assert!(
        contains(&bytes, "[secret lab]"),
        "no mask where the env secret was printed"
    );
    assert!(
        contains(&bytes, "host=db.internal.example"),
        "a named variable was not handed on"
    );

    for format in ["markdown", "json", "csv", "csv-events", "html"] {
        let (code, text, stderr) =
            output(cutover(d).args(["export", "secrets.runbook", "--format", format]));
        assert_eq!(code, 0, "{format}: {stderr}");
        for secret in [ENV_SECRET, ENV_SECRET_DECODED, FILE_SECRET] {
            assert!(!text.contains(secret), "{format} export holds {secret}");
        }
        assert!(!text.contains("should-not-be-seen"), "{format}");
        if format == "json" || format == "csv-events" {
            assert!(text.contains("[secret lab-file]"), "{format}:\n{text}");
        }
    }
}

#[test]
fn check_refuses_handing_a_secret_variable_to_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("bad.runbook"),
        format!("{HEAD}step dump\n  exec \"env\" env PGHOST, LAB_TSIG\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = output(cutover(d).args(["check", "bad.runbook"]));
    assert_ne!(code, 0);
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("secret-env"), "{all}");
    assert!(
        all.contains("LAB_TSIG") && all.contains("key `lab`"),
        "{all}"
    );
    assert!(!all.contains(ENV_SECRET), "{all}");
    let (code, _, _) = output(cutover(d).args(["run", "bad.runbook"]));
    assert_ne!(code, 0);
    assert!(!d.join("web").exists());
}
