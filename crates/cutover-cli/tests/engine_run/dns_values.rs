//! `dns.add` and `dns.remove` through `cutover run` against an embedded
//! primary: a value joins the RRset and the set's other value stays, a
//! second run finds it there and sends nothing, and a removal takes out
//! the value while an absent one is noted, not sent.

use super::signals::DnsLab;
use super::{cutover, output, write};
use std::time::Duration;

fn serial(lab: &DnsLab) -> u32 {
    lab.runtime
        .block_on(cutover_dns::soa(
            lab.addr,
            "lab.test",
            Duration::from_secs(2),
        ))
        .unwrap()
        .serial
}

#[test]
fn a_value_is_added_once_and_removed_leaving_the_rest_of_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lab = DnsLab::start(d, "www 60 IN A 192.0.2.1\n");

    let add = lab.header("add")
        + "step add\n  dns.add lab.test www A 192.0.2.7 ttl 30\n  undo dns.remove lab.test www A 192.0.2.7\n  timeout 30s\n";
    write(d, "add.runbook", &add);
    let before = serial(&lab);
    let (code, out, err) = output(cutover(d).args(["run", "add.runbook"]));
    assert_eq!(code, 0, "{out}{err}");
    let mut served = lab.a("www");
    served.sort();
    assert_eq!(served, ["192.0.2.1", "192.0.2.7"], "{out}");
    let added = serial(&lab);
    assert_ne!(added, before, "the update moved the serial");

    // The same step again, in a new runbook: the value is there, nothing is sent.
    write(
        d,
        "add-again.runbook",
        &add.replacen("runbook add", "runbook add-again", 1),
    );
    let (code, out, err) = output(cutover(d).args(["run", "add-again.runbook"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(serial(&lab), added, "a second add sends no update: {out}");
    assert_eq!(lab.a("www").len(), 2);

    // Removing the value and one the set never held: only the first is sent.
    let remove = lab.header("remove")
        + "step remove\n  dns.remove lab.test www A 192.0.2.7, 192.0.2.99\n  undo dns.add lab.test www A 192.0.2.7\n  timeout 30s\n";
    write(d, "remove.runbook", &remove);
    let (code, out, err) = output(cutover(d).args(["run", "remove.runbook"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lab.a("www"), ["192.0.2.1"], "{out}");
    assert_ne!(serial(&lab), added);
    let store = cutover_store::Store::open_existing(&d.join(".cutover/remove.db")).unwrap();
    let run = store.latest_run().unwrap().unwrap().id;
    let act = store
        .latest_evidence(run, "remove", cutover_store::Phase::Act)
        .unwrap()
        .expect("the act's evidence");
    assert!(act.summary.contains("- 192.0.2.7"), "{}", act.summary);
    assert!(
        act.summary.contains("192.0.2.99 already absent"),
        "{}",
        act.summary
    );
    assert_eq!(act.data["removed"], serde_json::json!(["192.0.2.7"]));
}

#[test]
fn a_removal_waits_until_caches_have_dropped_the_old_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lab = DnsLab::start(d, "pool 3 IN A 192.0.2.1\npool 3 IN A 192.0.2.7\n");
    let book = lab.header("retire")
        + "step lower\n  dns.ttl lab.test pool A 1 was 3s\n  timeout 30s\n\n\
           step retire after lower\n  dns.remove lab.test pool A 192.0.2.7\n  undo dns.add lab.test pool A 192.0.2.7\n  timeout 30s\n";
    write(d, "retire.runbook", &book);
    let (code, out, err) = output(cutover(d).args(["run", "retire.runbook"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lab.a("pool"), ["192.0.2.1"], "{out}");
    let store = cutover_store::Store::open_existing(&d.join(".cutover/retire.db")).unwrap();
    let run = store.latest_run().unwrap().unwrap().id;
    let evidence = |step: &str, phase| {
        store
            .latest_evidence(run, step, phase)
            .unwrap()
            .unwrap_or_else(|| panic!("evidence of {step}"))
    };
    let lowered = evidence("lower", cutover_store::Phase::Verify);
    let act = evidence("retire", cutover_store::Phase::Act);
    let wait = &act.data["ttl_wait"];
    assert_eq!(wait["lowered_by"], "lower", "{}", act.data);
    assert_eq!(wait["old_ttl"], 3, "{}", act.data);
    // The update went out once the 3 s old TTL had passed since the lowering.
    let waited = (act.at - lowered.at).num_milliseconds();
    assert!(waited >= 3000, "removed {waited} ms after the lowering");
}
