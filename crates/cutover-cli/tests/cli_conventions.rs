//! The command line's conventions, from the real `cutover` binary: shell
//! completions and manual pages generated from the clap definitions
//! (snapshots: a new command or option shows up in them, so review the
//! change with `cargo insta review`), `--version` with the commit, and the
//! exit codes in `--help`.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

fn cutover(args: &[&str]) -> (i32, String, String) {
    support::cli::cutover(Path::new("."), args, &[])
}

/// `cutover --version`'s version, without the leading `cutover `.
fn version() -> String {
    let (code, out, _) = cutover(&["--version"]);
    assert_eq!(code, 0);
    out.trim()
        .strip_prefix("cutover ")
        .unwrap_or_else(|| panic!("{out:?}"))
        .to_owned()
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The stdout of a command that must succeed (standard input closed).
fn succeeded(command: &mut Command) -> String {
    let out = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, err) = cutover(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        insta::assert_snapshot!(format!("completions-{shell}"), script);
    }
    let (code, _, err) = cutover(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
}

/// The bash script loads and registers its function for `cutover`, and
/// completes commands and a command's options.
#[test]
fn bash_completion_completes() {
    let (code, script, _) = cutover(&["completions", "bash"]);
    assert_eq!(code, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cutover.bash");
    std::fs::write(&file, script).unwrap();
    let probe = format!(
        r#"source {}
complete -p cutover
COMP_WORDS=(cutover con); COMP_CWORD=1; COMP_LINE="cutover con"; COMP_POINT=11
_cutover cutover con cutover; echo "commands: ${{COMPREPLY[*]}}"
COMP_WORDS=(cutover export --fo); COMP_CWORD=2; COMP_LINE="cutover export --fo"; COMP_POINT=19
_cutover cutover --fo export; echo "options: ${{COMPREPLY[*]}}"
"#,
        file.display()
    );
    let text = succeeded(Command::new("bash").args(["--norc", "--noprofile", "-c", &probe]));
    assert!(text.contains("-F _cutover cutover"), "{text}");
    assert!(text.contains("commands: confirm"), "{text}");
    assert!(text.contains("options: --format"), "{text}");
}

#[test]
fn manual_pages() {
    let version = version();
    let (code, page, err) = cutover(&["man"]);
    assert_eq!(code, 0, "{err}");
    // The roff escapes `-` in the version's text as `\-`.
    let page = page.replace(&version.replace('-', "\\-"), "VERSION");
    insta::assert_snapshot!("man-cutover", page);

    let (code, page, err) = cutover(&["man", "export"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("man-cutover-export", page);

    let (code, page, _) = cutover(&["man", "dns", "serve"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH cutover-dns-serve 1"), "{page}");

    let (code, _, err) = cutover(&["man", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`cutover` has no command `nope`; `cutover --help` lists them"),
        "{err}"
    );

    // Every page, one per command, rendered by the system's man when it has one.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = cutover(&["man", "--dir", &dir.path().display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for expected in [
        "cutover.1",
        "cutover-run.1",
        "cutover-export.1",
        "cutover-completions.1",
        "cutover-man.1",
        "cutover-dns-serve.1",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    assert!(
        err.contains(&format!("wrote {} manual pages into", names.len())),
        "{err}"
    );
    assert!(
        names.iter().all(|n| n.ends_with(".1")),
        "no temporary file left: {names:?}"
    );
    if Path::new("/usr/bin/man").exists() && Path::new("/usr/bin/groff").exists() {
        let text = succeeded(
            Command::new("man")
                .arg("-l")
                .arg(dir.path().join("cutover.1"))
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100"),
        );
        assert!(text.contains("Exit codes:"), "{text}");
    }
}

#[test]
fn version_names_the_commit() {
    let version = version();
    let crate_version = env!("CARGO_PKG_VERSION");
    match git(&["rev-parse", "HEAD"]) {
        Some(head) => {
            let commit = version
                .strip_prefix(&format!("{crate_version} ("))
                .and_then(|v| v.strip_suffix(')'))
                .unwrap_or_else(|| panic!("no commit in {version:?}"));
            // The binary was built at this commit or an earlier one (others
            // may have committed since the build).
            assert!(
                git(&["merge-base", "--is-ancestor", commit, &head]).is_some(),
                "{commit} is not HEAD {head} nor before it"
            );
        }
        None => assert_eq!(version, crate_version),
    }
}

#[test]
fn help_gives_exit_codes_examples_and_docs() {
    let (code, help, _) = cutover(&["--help"]);
    assert_eq!(code, 0);
    let after = help
        .split_once("\nExamples:\n")
        .map(|(_, after)| after)
        .unwrap_or_else(|| panic!("{help}"));
    insta::assert_snapshot!("help-after", after);
}
