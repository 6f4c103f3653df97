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

/// Runs `cutover ARGS` in `dir` with `input` on standard input.
fn cutover_with_input(dir: &Path, args: &[&str], input: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(dir)
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every command's `--help`, subcommands of `dns` and `lab` included.
fn every_help() -> Vec<(String, String)> {
    let mut commands: Vec<Vec<&str>> = [
        "check",
        "fmt",
        "plan",
        "run",
        "status",
        "confirm",
        "rollback",
        "export",
        "serve",
        "agent",
        "demo",
        "completions",
        "man",
    ]
    .iter()
    .map(|c| vec![*c])
    .collect();
    commands.extend([
        vec!["dns", "serve"],
        vec!["dns", "secondary"],
        vec!["lab", "up"],
        vec!["lab", "down"],
    ]);
    commands
        .into_iter()
        .map(|words| {
            let mut args = words.clone();
            args.push("--help");
            let (code, help, err) = cutover(&args);
            assert_eq!(code, 0, "{words:?}: {err}");
            (words.join(" "), help)
        })
        .collect()
}

/// The values `--format` takes in one command's help: from its entry (up
/// to the next option), its words joined again where the help wrapped.
fn format_values(help: &str) -> Option<Vec<String>> {
    let option = help.find("--format <FORMAT>")?;
    let entry = &help[option + "--format <FORMAT>".len()..];
    let end = entry.find("\n  -").unwrap_or(entry.len());
    let entry = entry[..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let values = &entry[entry.find("[possible values: ")? + "[possible values: ".len()..];
    let values = &values[..values.find(']')?];
    Some(values.split(", ").map(str::to_owned).collect())
}

#[test]
fn every_command_names_its_output_formats_alike() {
    const VOCABULARY: [&str; 8] = [
        "text",
        "short",
        "json",
        "markdown",
        "csv",
        "csv-events",
        "html",
        "svg",
    ];
    let mut with_format = Vec::new();
    for (command, help) in every_help() {
        assert!(
            !help.contains("--json"),
            "`{command}` shows --json instead of --format json"
        );
        let Some(values) = format_values(&help) else {
            assert!(
                !help.contains("--format"),
                "`{command}`: --format without its values: {help}"
            );
            continue;
        };
        for value in &values {
            assert!(
                VOCABULARY.contains(&value.as_str()),
                "`{command} --format {value}` is not one of {VOCABULARY:?}"
            );
        }
        // What a person reads is `text` wherever a command also speaks JSON
        // (export's person's formats are documents: markdown, html).
        if command != "export" && values.iter().any(|v| v == "json") {
            assert!(
                values.iter().any(|v| v == "text"),
                "`{command}`: {values:?}"
            );
        }
        with_format.push(command);
    }
    for expected in ["check", "plan", "run", "status", "export", "lab up"] {
        assert!(
            with_format.iter().any(|c| c == expected),
            "`{expected}` has --format: {with_format:?}"
        );
    }
    // The older names still work, unlisted.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.runbook"),
        "runbook a\nstep s\n  wait 1s\n",
    )
    .unwrap();
    for (format, code) in [("text", 0), ("human", 0), ("json", 0), ("table", 2)] {
        let (got, _, err) =
            support::cli::cutover(dir.path(), &["check", "a.runbook", "--format", format], &[]);
        assert_eq!(got, code, "check --format {format}: {err}");
    }
    let (code, _, err) = support::cli::cutover(dir.path(), &["status", "--format", "table"], &[]);
    assert!(
        !err.contains("invalid value"),
        "status --format table: {code} {err}"
    );
}

#[test]
fn check_counts_agree_in_number() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("one.runbook"),
        "runbook one\nzone z.test\n  primary 127.0.0.1:53\nstep s\n  wait 1s\n",
    )
    .unwrap();
    let (code, _, err) = support::cli::cutover(dir.path(), &["check", "one.runbook"], &[]);
    assert_eq!(
        (code, err.as_str()),
        (0, "ok: one.runbook (1 step, 0 hosts, 1 zone)\n")
    );
    std::fs::write(
        dir.path().join("bad.runbook"),
        "runbook bad\nstep s\n  wiat 1s\n",
    )
    .unwrap();
    let (code, _, err) = support::cli::cutover(dir.path(), &["check", "bad.runbook"], &[]);
    assert_eq!(code, 1);
    assert!(err.ends_with("\n1 error, 0 warnings\n"), "{err}");
}

#[test]
fn color_follows_the_color_option_and_no_color() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.runbook"),
        "runbook bad\nstep s\n  wiat 1s\n",
    )
    .unwrap();
    let colored = |args: &[&str], env: &[(&str, Option<&str>)]| {
        let (code, _, err) = support::cli::cutover(dir.path(), args, env);
        assert_eq!(code, 1, "{err}");
        err.contains("\u{1b}[")
    };
    let unset = [("NO_COLOR", None)];
    assert!(colored(
        &["check", "bad.runbook", "--color", "always"],
        &unset
    ));
    assert!(colored(
        &["--color", "always", "check", "bad.runbook"],
        &unset
    ));
    assert!(!colored(
        &["check", "bad.runbook", "--color", "never"],
        &unset
    ));
    // `auto`: not a terminal here, so no colour.
    assert!(!colored(&["check", "bad.runbook"], &unset));
    assert!(!colored(
        &["check", "bad.runbook", "--color", "auto"],
        &[("NO_COLOR", Some("1"))]
    ));
    let (code, _, err) = cutover(&["check", "x.runbook", "--color", "sometimes"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("[possible values: auto, always, never]"),
        "{err}"
    );
}

#[test]
fn fmt_dash_formats_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let messy = "runbook  a\n# keep me\nstep s\n    wait 1s\n";
    let tidy = "runbook a\n# keep me\nstep s\n  wait 1s\n";
    assert_eq!(
        cutover_with_input(dir.path(), &["fmt", "-"], messy),
        (0, tidy.to_owned(), String::new())
    );
    let (code, diff, _) = cutover_with_input(dir.path(), &["fmt", "--check", "-"], messy);
    assert_eq!(code, 1);
    assert!(
        diff.starts_with("--- <stdin> (current)\n+++ <stdin> (formatted)\n"),
        "{diff}"
    );
    assert!(diff.contains("-    wait 1s\n+  wait 1s\n"), "{diff}");
    assert_eq!(
        cutover_with_input(dir.path(), &["fmt", "--check", "-"], tidy),
        (0, String::new(), String::new())
    );
    let (code, out, err) = cutover_with_input(dir.path(), &["fmt", "-"], "runbook a\nstep \"s\n");
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("<stdin>:2:"), "{err}");
}

#[test]
fn a_missing_runbook_is_one_line_saying_not_found() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["status", "gone.runbook"],
        vec!["export", "gone.runbook"],
        vec!["serve", "gone.runbook", "--exit-after", "1"],
        vec!["confirm", "freeze", "gone.runbook"],
        vec!["run", "gone.runbook"],
        vec!["rollback", "gone.runbook"],
    ] {
        let (code, out, err) = support::cli::cutover(dir.path(), &args, &[]);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (2, "", "error: runbook gone.runbook not found\n"),
            "{args:?}"
        );
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was made"
    );
}

#[test]
fn a_mistyped_step_name_gets_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.runbook"),
        "runbook a\nstep freeze\n  wait 1s\nstep switch after freeze\n  wait 1s\n",
    )
    .unwrap();
    for (option, typed, meant) in [
        ("--only", "frezee", "freeze"),
        ("--skip", "swtich", "switch"),
    ] {
        let (code, _, err) =
            support::cli::cutover(dir.path(), &["run", "a.runbook", option, typed], &[]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!(
                "the runbook has no step `{typed}`; did you mean `{meant}`?"
            )),
            "{option}: {err}"
        );
    }
    assert!(!dir.path().join(".cutover").exists(), "nothing ran");
}

#[test]
fn control_characters_are_shown_not_sent_to_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // A comment may hold anything; `fmt --check` shows it escaped.
    std::fs::write(
        dir.path().join("a.runbook"),
        "runbook  a\n# \u{1b}]0;owned\u{7} \u{1b}[2J\nstep s\n  wait 1s\n",
    )
    .unwrap();
    let (code, diff, _) = support::cli::cutover(dir.path(), &["fmt", "--check", "a.runbook"], &[]);
    assert_eq!(code, 1);
    assert!(
        !diff.contains('\u{1b}') && !diff.contains('\u{7}'),
        "{diff:?}"
    );
    assert!(
        diff.contains(" # \\u{1b}]0;owned\\u{7} \\u{1b}[2J\n"),
        "{diff}"
    );

    // A diagnostic quotes the line and the name as they are, escaped, in
    // every format for people (with colour too).
    std::fs::write(
        dir.path().join("b.runbook"),
        "runbook b\nstep s\u{1b}[2J\u{9b}31m\n  wait 1s\n",
    )
    .unwrap();
    for args in [
        &["check", "b.runbook"][..],
        &["check", "b.runbook", "--color", "always"],
        &["check", "b.runbook", "--format", "short"],
        &["plan", "b.runbook"],
    ] {
        let (code, out, err) = support::cli::cutover(dir.path(), args, &[]);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            !out.contains("\u{1b}[2J") && !out.contains('\u{9b}'),
            "{args:?}: {out:?}"
        );
        assert!(
            !err.contains("\u{1b}[2J") && !err.contains('\u{9b}'),
            "{args:?}: {err:?}"
        );
        assert!(err.contains("s\\u{1b}[2J\\u{9b}31m"), "{args:?}: {err}");
    }

    // What a server answered, stored as a step's last evidence, is shown
    // escaped by `status`.
    let state = dir.path().join("run.db");
    let store = cutover_store::Store::open(&state).unwrap();
    let run = store
        .create_run(&cutover_store::NewRun {
            runbook_name: "a".into(),
            runbook_path: "a.runbook".into(),
            content_hash: "0".into(),
            operator: "tester".into(),
            t0: None,
            steps: vec![cutover_store::NewStep {
                name: "s".into(),
                definition: "step s".into(),
                planned_start: None,
            }],
        })
        .unwrap();
    store
        .transition(
            run,
            &cutover_store::Transition {
                step: "s",
                status: cutover_store::StepStatus::Done,
                phase: Some(cutover_store::Phase::Verify),
                new_attempt: true,
                event_kind: "done",
                message: "verified".into(),
                evidence: Some((
                    cutover_store::Phase::Verify,
                    "TXT \"\u{1b}[31mgotcha\u{1b}[0m\"\r".into(),
                    serde_json::json!({}),
                )),
            },
        )
        .unwrap();
    drop(store);
    let (code, out, err) = support::cli::cutover(dir.path(), &["status", "--state", "run.db"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out:?}");
    assert!(
        out.contains("TXT \"\\u{1b}[31mgotcha\\u{1b}[0m\"\\u{d}"),
        "{out}"
    );
}
