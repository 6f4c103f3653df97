//! `exec ... env NAME, ...`: the variables handed to a command, and the
//! refusal of a variable that holds a key's secret.

use cutover_lang::{ActionKind, format_source, parse_source};

const HEAD: &str = "runbook r\n\nkey k hmac-sha256 env:LAB_TSIG\n\nzone example.org\n  primary 127.0.0.1:53 key k\n\nhost web addr 127.0.0.1 via local ./web\n\n";

#[test]
fn env_names_are_parsed_in_order_without_duplicates() {
    let text = format!("{HEAD}step a\n  exec on web \"pg_dump db\" env PGHOST, PGPORT,PGHOST\n");
    let loaded = parse_source("r.runbook", text);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let runbook = loaded.runbook.expect("a runbook");
    let ActionKind::Exec { env, command, on } = &runbook.steps[0].action.kind else {
        panic!("not an exec: {:?}", runbook.steps[0].action.kind);
    };
    assert_eq!(env, &["PGHOST", "PGPORT"]);
    assert_eq!(command, "pg_dump db");
    assert_eq!(on.len(), 1);
    assert_eq!(
        runbook.describe(&runbook.steps[0].action),
        "exec on web \"pg_dump db\" env PGHOST, PGPORT"
    );
}

#[test]
fn exec_without_env_describes_as_before() {
    let text = format!("{HEAD}step a\n  exec \"true\"\n");
    let loaded = parse_source("r.runbook", text);
    let runbook = loaded.runbook.expect("a runbook");
    assert_eq!(runbook.describe(&runbook.steps[0].action), "exec \"true\"");
}

#[test]
fn a_secret_variable_is_refused_with_the_key_named() {
    let text = format!("{HEAD}step a\n  exec \"env\" env PATH, LAB_TSIG\n");
    let loaded = parse_source("r.runbook", text);
    assert!(loaded.runbook.is_none());
    let diag = loaded
        .diagnostics
        .iter()
        .find(|d| d.code == "secret-env")
        .unwrap_or_else(|| panic!("no secret-env diagnostic: {:?}", loaded.diagnostics));
    assert!(diag.message.contains("LAB_TSIG"), "{}", diag.message);
    assert!(diag.message.contains("key `k`"), "{}", diag.message);
}

#[test]
fn a_secret_variable_is_refused_when_the_key_comes_later() {
    let text = "runbook r\n\nstep a\n  exec \"env\" env LATER\n\nkey later hmac-sha256 env:LATER\n";
    let loaded = parse_source("r.runbook", text.to_string());
    assert!(
        loaded.diagnostics.iter().any(|d| d.code == "secret-env"),
        "{:?}",
        loaded.diagnostics
    );
}

#[test]
fn bad_variable_names_and_a_missing_name_are_diagnosed() {
    for line in [
        "exec \"x\" env 9LIVES",
        "exec \"x\" env A-B",
        "exec \"x\" env",
        "exec \"x\" env A,",
    ] {
        let text = format!("{HEAD}step a\n  {line}\n");
        let loaded = parse_source("r.runbook", text);
        assert!(loaded.runbook.is_none(), "{line} was accepted");
        assert!(
            loaded
                .diagnostics
                .iter()
                .any(|d| d.code == "bad-name" || d.code == "bad-kind-args"),
            "{line}: {:?}",
            loaded.diagnostics
        );
    }
}

#[test]
fn the_formatter_keeps_env_lists_canonical() {
    let text = format!("{HEAD}step a\n    exec   on web \"x\"   env A ,B,C\n");
    let formatted = format_source(&text).expect("formats");
    assert!(
        formatted.contains("\n  exec on web \"x\" env A, B, C\n"),
        "{formatted}"
    );
    assert_eq!(format_source(&formatted).expect("formats"), formatted);
}
