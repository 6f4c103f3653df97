//! `dns.add` and `dns.remove`: single values joining or leaving an RRset,
//! parsed into the model, described canonically, formatted, and refused
//! with a clear message when a value is wrong.

use cutover_lang::{ActionKind, RecordType, format_source, parse_source};
use std::time::Duration;

const HEAD: &str = "runbook r\n\nzone example.org\n  primary 127.0.0.1:53\n\n";

fn parse(steps: &str) -> cutover_lang::Runbook {
    let loaded = parse_source("r.runbook", format!("{HEAD}{steps}"));
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.runbook.expect("a runbook")
}

fn first_error(steps: &str) -> String {
    let loaded = parse_source("r.runbook", format!("{HEAD}{steps}"));
    assert!(loaded.runbook.is_none(), "accepted: {steps}");
    let diag = loaded.diagnostics.first().expect("a diagnostic");
    format!("{}: {}", diag.code, diag.message)
}

#[test]
fn add_takes_values_and_a_ttl_and_undoes_with_remove() {
    let runbook = parse(
        "step add\n  dns.add example.org www A 192.0.2.7,192.0.2.8 ttl 5m\n  undo dns.remove example.org www A 192.0.2.7, 192.0.2.8\n",
    );
    let step = &runbook.steps[0];
    let ActionKind::DnsAdd {
        name,
        rtype,
        values,
        ttl,
        ..
    } = &step.action.kind
    else {
        panic!("not a dns.add: {:?}", step.action.kind);
    };
    assert_eq!(name, "www");
    assert_eq!(*rtype, RecordType::A);
    assert_eq!(values.0, ["192.0.2.7", "192.0.2.8"]);
    assert_eq!(*ttl, Some(Duration::from_secs(300)));
    assert_eq!(
        runbook.describe(&step.action),
        "dns.add example.org www A 192.0.2.7, 192.0.2.8 ttl 300"
    );
    let undo = step.undo.as_ref().expect("an undo");
    assert!(matches!(undo.kind, ActionKind::DnsRemove { .. }));
    assert_eq!(
        runbook.describe(undo),
        "dns.remove example.org www A 192.0.2.7, 192.0.2.8"
    );
}

#[test]
fn remove_takes_quoted_values_without_a_ttl() {
    let runbook = parse("step rm\n  dns.remove example.org @ TXT \"v=spf1 -all\"\n");
    let ActionKind::DnsRemove { values, rtype, .. } = &runbook.steps[0].action.kind else {
        panic!("not a dns.remove: {:?}", runbook.steps[0].action.kind);
    };
    assert_eq!(*rtype, RecordType::Txt);
    assert_eq!(values.0, ["v=spf1 -all"]);
    assert_eq!(
        runbook.describe(&runbook.steps[0].action),
        "dns.remove example.org @ TXT \"v=spf1 -all\""
    );
    let with_ttl = first_error("step rm\n  dns.remove example.org www A 192.0.2.7 ttl 300\n");
    assert!(with_ttl.contains("ttl"), "{with_ttl}");
}

#[test]
fn the_formatter_keeps_both_kinds() {
    let text = format!(
        "{HEAD}step add\n  dns.add   example.org www A 192.0.2.7 ttl 300\n\nstep rm\n  dns.remove example.org www A   192.0.2.7\n"
    );
    let formatted = format_source(&text).expect("formats");
    assert!(
        formatted.contains("  dns.add example.org www A 192.0.2.7 ttl 300\n"),
        "{formatted}"
    );
    assert!(
        formatted.contains("  dns.remove example.org www A 192.0.2.7\n"),
        "{formatted}"
    );
}

#[test]
fn bad_values_are_refused_where_written() {
    let not_ip = first_error("step a\n  dns.add example.org www A mail.example.org\n");
    assert!(not_ip.contains("mail.example.org"), "{not_ip}");
    let twice = first_error("step a\n  dns.remove example.org www A 192.0.2.7, 192.0.2.7\n");
    assert!(twice.contains("given twice"), "{twice}");
    let none = first_error("step a\n  dns.add example.org www A\n");
    assert!(none.contains("value to add"), "{none}");
    let bad_ttl = first_error("step a\n  dns.add example.org www A 192.0.2.7 ttl soon\n");
    assert!(bad_ttl.contains("`soon` is not a duration"), "{bad_ttl}");
}
