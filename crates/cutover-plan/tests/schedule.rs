//! The schedule: estimates and their provenance, TTL waits, critical path,
//! slack and window fit, on small runbooks written inline.

use cutover_lang::parse_source;
use cutover_lang::units::Size;
use cutover_plan::{Plan, ProbeFacts, Provenance, RecordFact, SizeFact};

const HEAD: &str = "runbook t
  window 2030-01-01 00:00 UTC for 6h
  link old-dc -> new-dc 1Gbit

key k hmac-sha256 env:T_TSIG

zone example.test
  primary 127.0.0.1:5353 key k
  verify  127.0.0.1:5353

host a  site old-dc  addr 127.0.0.10  via local ./a
host b  site new-dc  addr 127.0.0.20  via local ./b
";

fn plan_of(steps: &str, facts: Option<&ProbeFacts>) -> Plan {
    let loaded = parse_source("t.runbook", format!("{HEAD}\n{steps}"));
    let runbook = loaded
        .runbook
        .unwrap_or_else(|| panic!("loads: {:?}", loaded.diagnostics));
    cutover_plan::plan(&runbook, facts)
}

fn step<'p>(plan: &'p Plan, name: &str) -> &'p cutover_plan::PlannedStep {
    plan.steps.iter().find(|s| s.name == name).unwrap()
}

#[test]
fn copy_time_is_size_over_the_link() {
    let plan = plan_of(
        "step copy at T0\n  image.copy a:/x.img -> b:/x.img size 900G\n",
        None,
    );
    let copy = step(&plan, "copy");
    assert_eq!(copy.duration.ms, Some(7_200_000));
    assert_eq!(copy.duration.provenance, Provenance::Estimated);
    assert!(
        copy.duration
            .basis
            .contains("900 GB over old-dc -> new-dc at 1 Gbit/s"),
        "{}",
        copy.duration.basis
    );
    assert_eq!((copy.start, copy.end), (0, 7_200_000));
    assert_eq!(plan.window.unwrap().left, (6 * 3600 - 7200) * 1000);
}

#[test]
fn sub_second_figures_keep_their_milliseconds() {
    // 400 MB over 1 Gbit/s: 3.2 s, not 4 s; the next step starts then.
    let plan = plan_of(
        "step copy at T0\n  image.copy a:/x.img -> b:/x.img size 400M\n\n\
         step next after copy\n  wait 1s\n",
        None,
    );
    let copy = step(&plan, "copy");
    assert_eq!(copy.duration.ms, Some(3_200));
    assert_eq!(step(&plan, "next").start, 3_200);
    assert_eq!(plan.end, 4_200);
    let text = cutover_plan::render::text(&plan, &cutover_lang::SourceMap::default(), false);
    assert!(text.contains("3.2s"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&cutover_plan::render::json(&plan, &Default::default())).unwrap();
    let copy = &json["steps"][0];
    assert_eq!(copy["duration"]["seconds"], serde_json::json!(3.2));
    assert_eq!(json["end"]["offset_s"], serde_json::json!(4.2));
    assert_eq!(json["end"]["utc"], "2030-01-01T00:00:04.200Z");
}

#[test]
fn a_second_copy_of_the_same_image_is_a_delta_copy() {
    let plan = plan_of(
        "step pre at T-1d\n  image.copy a:/x.img -> b:/x.img size 900G\n\n\
         step final at T0\n  image.copy a:/x.img -> b:/x.img size 900G\n",
        None,
    );
    let fin = step(&plan, "final");
    assert_eq!(
        fin.copy.as_ref().unwrap().precopy,
        Some(step(&plan, "pre").id)
    );
    assert_eq!(fin.duration.provenance, Provenance::Guess);
    assert_eq!(
        fin.duration.ms,
        Some(3_000_000),
        "900 GB scanned at 300 MB/s"
    );
    assert!(
        fin.duration.basis.contains("a full copy would take 2h"),
        "{}",
        fin.duration.basis
    );
}

#[test]
fn unknown_size_is_unknown_and_later_times_are_lower_bounds() {
    let steps = "step copy at T0\n  image.copy a:/x.img -> b:/x.img\n\n\
                 step after-copy after copy\n  manual \"look\"\n  expect 10m\n";
    let plan = plan_of(steps, None);
    let copy = step(&plan, "copy");
    assert_eq!(copy.duration.provenance, Provenance::Unknown);
    assert_eq!(copy.duration.ms, None);
    assert!(copy.at_least);
    let next = step(&plan, "after-copy");
    assert!(next.start_at_least && next.at_least);
    assert!(plan.end_at_least);

    let facts = ProbeFacts {
        source_sizes: vec![SizeFact {
            endpoint: cutover_lang::Endpoint {
                host: cutover_lang::HostId(0),
                path: "/x.img".into(),
            },
            size: Size(125_000_000_000),
        }],
        ..ProbeFacts::default()
    };
    let plan = plan_of(steps, Some(&facts));
    let copy = step(&plan, "copy");
    assert_eq!(copy.duration.provenance, Provenance::Probed);
    assert_eq!(copy.duration.ms, Some(1_000_000));
    assert!(!step(&plan, "after-copy").at_least);
}

#[test]
fn a_switch_waits_for_the_old_ttl_as_its_own_segment() {
    let plan = plan_of(
        "step lower at T0\n  dns.ttl example.test www A 300 was 1h\n\n\
         step switch after lower\n  dns.switch example.test www A 127.0.0.10 -> 127.0.0.20\n",
        None,
    );
    let lower = step(&plan, "lower");
    assert_eq!((lower.start, lower.end), (0, 60_000));
    let switch = step(&plan, "switch");
    let wait = switch.ttl_wait.as_ref().expect("TTL wait");
    assert_eq!((wait.start, wait.end), (60_000, (60 + 3600) * 1000));
    assert_eq!(switch.act_start, 3_660_000);
    assert_eq!(switch.end, 3_720_000);
    let safety = &plan.switches[0];
    assert_eq!(safety.earliest_safe, Some(3_660_000));
    assert_eq!(safety.record, "www.example.test A");
    assert_eq!(plan.critical_path, vec![lower.id, switch.id]);
    assert!(plan.diagnostics.iter().all(|d| d.code != "ttl-not-lowered"));
}

#[test]
fn a_removal_waits_for_the_old_ttl_like_a_switch_and_an_addition_does_not() {
    // Clients keep a removed address for the TTL it was served with.
    let plan = plan_of(
        "step lower at T0\n  dns.ttl example.test pool A 300 was 1h\n\n\
         step retire after lower\n  dns.remove example.test pool A 127.0.0.10\n\n\
         step join after lower\n  dns.add example.test pool A 127.0.0.20\n",
        None,
    );
    let retire = step(&plan, "retire");
    let wait = retire
        .ttl_wait
        .as_ref()
        .expect("TTL wait before the removal");
    assert_eq!((wait.start, wait.end), (60_000, (60 + 3600) * 1000));
    assert_eq!(retire.act_start, 3_660_000);
    assert_eq!(plan.switches.len(), 1);
    assert_eq!(plan.switches[0].record, "pool.example.test A");
    let join = step(&plan, "join");
    assert!(join.ttl_wait.is_none());
    assert_eq!(join.act_start, 60_000);
    assert!(plan.diagnostics.iter().all(|d| d.code != "ttl-not-lowered"));
}

#[test]
fn a_probed_ttl_replaces_a_missing_was() {
    let steps = "step lower at T0\n  dns.ttl example.test www A 300\n\n\
                 step switch after lower\n  dns.switch example.test www A 127.0.0.10 -> 127.0.0.20\n";
    let plan = plan_of(steps, None);
    assert_eq!(plan.switches[0].earliest_safe, None);
    assert!(step(&plan, "switch").ttl_wait.is_none());
    let facts = ProbeFacts {
        records: vec![RecordFact {
            zone: "example.test".into(),
            name: "www".into(),
            rtype: cutover_lang::RecordType::A,
            server: "127.0.0.1:5353".parse().unwrap(),
            ttl: std::time::Duration::from_secs(1800),
            values: vec!["127.0.0.10".into()],
        }],
        ..ProbeFacts::default()
    };
    let plan = plan_of(steps, Some(&facts));
    assert_eq!(plan.switches[0].earliest_safe, Some((60 + 1800) * 1000));
    assert_eq!(plan.switches[0].provenance, Provenance::Probed);
}

#[test]
fn slack_is_how_much_later_a_step_could_end() {
    let plan = plan_of(
        "step start at T0\n  manual \"go\"\n  expect 10m\n\n\
         step long after start\n  wait 1h\n\n\
         step short after start\n  wait 20m\n\n\
         step done after long, short\n  manual \"done\"\n  expect 5m\n",
        None,
    );
    assert_eq!(step(&plan, "short").slack, 40 * 60_000);
    assert_eq!(step(&plan, "long").slack, 0);
    let names: Vec<&str> = plan
        .critical_path
        .iter()
        .map(|id| plan.step(*id).name.as_str())
        .collect();
    assert_eq!(names, ["start", "long", "done"]);
    assert_eq!(plan.end, (10 * 60 + 3600 + 5 * 60) * 1000);
}

#[test]
fn defaults_are_marked_as_guesses() {
    let plan = plan_of("step x at T0\n  manual \"do it\"\n", None);
    let x = step(&plan, "x");
    assert_eq!(x.duration.provenance, Provenance::Guess);
    assert!(x.duration.basis.contains("add `expect`"));
    assert!(plan.notes.iter().any(|n| n.contains("default duration")));
}

#[test]
fn wait_until_ends_at_its_time() {
    let plan = plan_of(
        "step a at T0\n  wait 10m\n\nstep b after a\n  wait until T+2h\n",
        None,
    );
    let b = step(&plan, "b");
    assert_eq!((b.start, b.end), (600_000, 7_200_000));
    assert_eq!(b.duration.provenance, Provenance::Declared);
}

#[test]
fn empty_runbook_plans_to_nothing() {
    let plan = plan_of("", None);
    assert!(plan.steps.is_empty() && plan.critical_path.is_empty());
    assert_eq!(plan.end, 0);
    let _ = cutover_plan::render::svg(&plan);
    let _ = cutover_plan::render::text(&plan, &Default::default(), true);
}

#[test]
fn a_replicating_db_sync_is_planned_from_its_size_and_ends_after_its_freeze_step() {
    // 10 GB over 1 Gbit/s: 80 s of bulk copy; the final catch-up and
    // comparison of 10 GB at 100 MB/s: 100 s.
    let sync = "db.sync postgres a/wiki user u password env:P_A -> b/wiki user u password env:P_B size 10G";
    let plan = plan_of(&format!("step sync at T0\n  {sync}\n"), None);
    let alone = step(&plan, "sync");
    assert_eq!(alone.duration.ms, Some(180_000));
    assert_eq!(alone.duration.provenance, Provenance::Estimated);
    assert!(
        alone
            .duration
            .basis
            .contains("bulk copy: 10 GB over old-dc -> new-dc"),
        "{}",
        alone.duration.basis
    );
    assert!(alone.held_by_freeze.is_none());

    // The writers stop at T+1h for 10 minutes: the sync is verified 100 s
    // after that, and what comes after it starts then.
    let plan = plan_of(
        &format!(
            "step sync at T0\n  {sync} freeze freeze\n\n\
             step freeze at T+1h\n  manual \"stop the writers\"\n  expect 10m\n\n\
             step switch after sync\n  wait 1m\n"
        ),
        None,
    );
    let held = step(&plan, "sync");
    let freeze = step(&plan, "freeze");
    assert_eq!(freeze.end, 4_200_000);
    assert_eq!(held.end, 4_200_000 + 100_000);
    assert_eq!(held.held_by_freeze, Some((freeze.id, 100_000)));
    assert!(
        held.duration
            .basis
            .contains("replicates until `freeze` is done at T+1h10m")
    );
    assert_eq!(step(&plan, "switch").start, held.end);
    assert_eq!(
        plan.critical_path,
        vec![freeze.id, held.id, step(&plan, "switch").id]
    );
    assert_eq!(freeze.slack, 0);

    // A freeze step done before the bulk copy ends holds nothing.
    let plan = plan_of(
        &format!(
            "step sync at T0\n  {sync} freeze freeze\n\n\
             step freeze at T0\n  manual \"stop the writers\"\n  expect 1m\n"
        ),
        None,
    );
    assert_eq!(step(&plan, "sync").end, 180_000);
    assert!(step(&plan, "sync").held_by_freeze.is_none());
}
