//! Every lint rule against a fixture that trips it and one that does not
//! (`fixtures/lint/<code>.runbook`, `fixtures/lint/<code>.pass.runbook`),
//! with the diagnostics as the user reads them kept as golden files.

use cutover_lang::{load_file, render_human};
use cutover_plan::lint::RULES;
use cutover_plan::{NameServer, ProbeFacts, ZoneNsFact};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/lint")
        .join(name)
}

/// Facts as a probe of `example.test` would return them: its NS set, and
/// optionally a secondary that is not among the zone's verify servers.
fn probe(with_stray_secondary: bool) -> ProbeFacts {
    let mut servers = vec![
        NameServer {
            name: "ns1.example.test".into(),
            addrs: vec!["127.0.0.1".parse().unwrap()],
        },
        NameServer {
            name: "ns2.example.test".into(),
            addrs: vec!["127.0.0.2".parse().unwrap()],
        },
    ];
    if with_stray_secondary {
        servers.push(NameServer {
            name: "ns3.example.test".into(),
            addrs: vec!["127.0.0.3".parse().unwrap()],
        });
    }
    ProbeFacts {
        zone_ns: vec![ZoneNsFact {
            zone: "example.test".into(),
            servers,
        }],
        ..ProbeFacts::default()
    }
}

/// Plans a fixture and returns the codes found and the golden text:
/// the diagnostics as rendered for a terminal, then the plan's notes.
fn lint(file: &str, facts: Option<&ProbeFacts>) -> (Vec<&'static str>, String) {
    let path = fixture(file);
    let loaded = load_file(&path);
    assert!(
        loaded.diagnostics.is_empty(),
        "{file} must load cleanly:\n{}",
        render_human(&loaded.sources, &loaded.diagnostics, false)
    );
    let runbook = loaded.runbook.as_ref().expect("fixture loads");
    let plan = cutover_plan::plan(runbook, facts);
    let mut golden = render_human(&loaded.sources, &plan.diagnostics, false);
    let root = path.parent().unwrap().display().to_string();
    golden = golden.replace(&root, "fixtures/lint");
    golden.push_str("notes:\n");
    for note in &plan.notes {
        golden.push_str(&format!("- {note}\n"));
    }
    (plan.diagnostics.iter().map(|d| d.code).collect(), golden)
}

fn check_rule(code: &str, facts_trip: Option<&ProbeFacts>, facts_pass: Option<&ProbeFacts>) {
    assert!(
        RULES.iter().any(|r| r.code == code),
        "{code} is a known rule"
    );
    let (found, golden) = lint(&format!("{code}.runbook"), facts_trip);
    assert!(
        found.contains(&code),
        "{code}.runbook must trip {code}, found {found:?}"
    );
    insta::assert_snapshot!(format!("{code}-trips"), golden);
    let (found, golden) = lint(&format!("{code}.pass.runbook"), facts_pass);
    assert!(
        !found.contains(&code),
        "{code}.pass.runbook must not trip {code}"
    );
    insta::assert_snapshot!(format!("{code}-passes"), golden);
}

#[test]
fn ttl_not_lowered() {
    check_rule("ttl-not-lowered", None, None);
}

#[test]
fn ns_not_verified() {
    check_rule("ns-not-verified", Some(&probe(true)), Some(&probe(false)));
}

#[test]
fn ns_not_verified_is_not_evaluated_without_probe_facts() {
    let (found, golden) = lint("ns-not-verified.runbook", None);
    assert!(!found.contains(&"ns-not-verified"));
    assert!(
        golden.contains("rule ns-not-verified not evaluated"),
        "{golden}"
    );
}

#[test]
fn address_change_unchecked() {
    check_rule("address-change-unchecked", None, None);
}

#[test]
fn copy_without_precopy() {
    check_rule("copy-without-precopy", None, None);
}

#[test]
fn critical_path_over_window() {
    check_rule("critical-path-over-window", None, None);
}

#[test]
fn unverifiable_step() {
    check_rule("unverifiable-step", None, None);
}

#[test]
fn ttl_not_restored() {
    check_rule("ttl-not-restored", None, None);
}

#[test]
fn switch_without_undo() {
    check_rule("switch-without-undo", None, None);
}

#[test]
fn db_sync_unfrozen() {
    check_rule("db-sync-unfrozen", None, None);
}

#[test]
fn rollback_over_window() {
    check_rule("rollback-over-window", None, None);
}

#[test]
fn step_after_window() {
    check_rule("step-after-window", None, None);
}

/// Every rule the planner checks has both fixtures, every rule has its page
/// (the four sections `cutover explain` shows), and every fixture belongs to
/// a rule.
#[test]
fn every_rule_has_fixtures_and_a_page() {
    for rule in RULES {
        if rule.is_checked() {
            assert!(
                fixture(&format!("{}.runbook", rule.code)).is_file(),
                "{} trip fixture",
                rule.code
            );
            assert!(
                fixture(&format!("{}.pass.runbook", rule.code)).is_file(),
                "{} pass fixture",
                rule.code
            );
        }
        let page = rule.page();
        assert!(page.starts_with(&format!("# {} (", rule.code)), "{page}");
        for section in [
            "## What it does",
            "## Why it matters",
            "## Example",
            "## How to fix",
        ] {
            assert!(page.contains(section), "{}'s page has {section}", rule.code);
        }
    }
    for entry in std::fs::read_dir(fixture("")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let code = name.trim_end_matches(".runbook").trim_end_matches(".pass");
        assert!(
            RULES.iter().any(|r| r.code == code && r.is_checked()),
            "fixtures/lint/{name} belongs to no rule"
        );
    }
}

/// One table: every rule in it runs (each trips on its fixture, checked
/// above), and no two rules share a code.
#[test]
fn the_registry_has_each_code_once() {
    let mut seen = std::collections::HashSet::new();
    for rule in RULES {
        assert!(seen.insert(rule.code), "{} is registered twice", rule.code);
        assert_eq!(
            cutover_plan::lint::rule(rule.code).map(|r| r.code),
            Some(rule.code)
        );
    }
    assert!(cutover_plan::lint::rule("no-such-rule").is_none());
}

/// docs/plan.md's table of checks names every rule of the registry.
#[test]
fn the_plan_docs_list_every_rule() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/plan.md"))
            .unwrap();
    for rule in RULES {
        assert!(
            page.contains(&format!("| `{}` |", rule.code)),
            "docs/plan.md does not list {}",
            rule.code
        );
    }
}

/// The too-early finding names the switch step, the lowering step and the
/// shortfall in its message and as fields of its JSON (plan and check).
#[test]
fn ttl_not_lowered_names_its_steps_and_shortfall_as_fields() {
    let loaded = load_file(&fixture("ttl-not-lowered.runbook"));
    let runbook = loaded.runbook.as_ref().unwrap();
    let plan = cutover_plan::plan(runbook, None);
    let late = plan
        .diagnostics
        .iter()
        .find(|d| d.code == "ttl-not-lowered" && d.message.contains("too early"))
        .expect("the late switch is found");
    assert!(
        late.message.contains("`switch-api`")
            && late.message.contains("`lower-api`")
            && late.message.contains("46m too early"),
        "{}",
        late.message
    );
    let json: serde_json::Value =
        serde_json::from_str(&cutover_plan::render::json(&plan, &loaded.sources)).unwrap();
    let finding = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "ttl-not-lowered" && d["data"]["lowering_step"] == "lower-api")
        .expect("the JSON finding has its fields");
    assert_eq!(finding["data"]["switch_step"], "switch-api");
    assert_eq!(finding["data"]["shortfall_s"], 46 * 60);
    assert_eq!(
        finding["data"]["safe_at_s"].as_i64().unwrap()
            - finding["data"]["switch_at_s"].as_i64().unwrap(),
        46 * 60
    );
    let never = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "ttl-not-lowered" && d["data"]["lowering_step"].is_null())
        .expect("the never-lowered finding has its fields");
    assert_eq!(never["data"]["switch_step"], "switch");
    // check --format json renders the same fields.
    let check = cutover_lang::render_json(&loaded.sources, &plan.diagnostics);
    assert!(
        check
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["data"]["shortfall_s"] == 46 * 60)
    );
}
