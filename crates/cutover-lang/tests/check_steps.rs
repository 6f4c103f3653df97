//! A step of `verify` lines alone is a check: it parses, its first check is
//! its action and all its lines are its checks; a step with neither a kind
//! nor a `verify` line is still refused.

use cutover_lang::{ActionKind, parse_source};

fn runbook(steps: &str) -> cutover_lang::Loaded {
    parse_source(
        "r.runbook",
        format!("runbook r\n\nhost web addr 127.0.0.10 via local ./web\n\n{steps}"),
    )
}

#[test]
fn a_step_of_verify_lines_alone_is_a_check() {
    let loaded = runbook(
        "step no-stale-hosts\n  verify exec on web \"! grep -q old /etc/hosts\"\n  verify port.open web:80\n  timeout 1m\n",
    );
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let runbook = loaded.runbook.unwrap();
    let step = &runbook.steps[0];
    assert!(
        matches!(&step.action.kind, ActionKind::Exec { command, .. } if command == "! grep -q old /etc/hosts")
    );
    assert_eq!(step.verify.len(), 2);
    assert_eq!(step.verify[0], step.action);
    assert!(step.undo.is_none());
}

#[test]
fn a_step_with_neither_kind_nor_verify_is_refused() {
    let loaded = runbook("step empty\n  timeout 1m\n");
    assert!(loaded.runbook.is_none());
    let d = &loaded.diagnostics[0];
    assert_eq!(d.code, "missing-kind");
    assert!(d.help.as_deref().unwrap().contains("`verify` lines alone"));
}

#[test]
fn a_check_step_takes_only_checking_kinds() {
    let loaded = runbook("step wrong\n  verify manual \"look\"\n");
    assert!(loaded.runbook.is_none());
    assert_eq!(loaded.diagnostics[0].code, "bad-verify-kind");
}
