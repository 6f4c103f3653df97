//! Steps that name a group hold the group's members once, shared with the
//! group, and expand them in the order written; exec's `on` names each
//! host once.

use cutover_lang::{ActionKind, HostId, HostRef, PortTarget, Runbook, parse_source};
use std::sync::Arc;

const HEAD: &str = "runbook r\n\nhost wiki addr 192.0.2.1 via local ./w\nhost wiki-new addr 192.0.2.2 via local ./n\nhost db addr 192.0.2.3 via local ./d\ngroup web wiki, wiki-new\n\n";

fn runbook(steps: &str) -> Runbook {
    let loaded = parse_source("r.runbook", format!("{HEAD}{steps}"));
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.runbook.expect("a runbook")
}

/// The group's member list of one written target.
fn shared(target: &HostRef) -> &Arc<[HostId]> {
    match target {
        HostRef::Group(_, members) => members,
        HostRef::Host(h) => panic!("{h:?} is not a group"),
    }
}

#[test]
fn steps_naming_a_group_share_its_member_list() {
    let runbook = runbook(
        "step a\n  port.open web:80, web:443\n  verify exec on web \"true\"\n\n\
         step b\n  exec on web \"true\"\n  verify port.closed web:3306\n",
    );
    let members = &runbook.groups[0].members;
    let ActionKind::PortOpen { targets, .. } = &runbook.steps[0].action.kind else {
        panic!("not a port.open");
    };
    let ActionKind::Exec { on, .. } = &runbook.steps[1].action.kind else {
        panic!("not an exec");
    };
    let ActionKind::PortClosed {
        targets: closed, ..
    } = &runbook.steps[1].verify[0].kind
    else {
        panic!("not a port.closed");
    };
    let ActionKind::Exec { on: verify_on, .. } = &runbook.steps[0].verify[0].kind else {
        panic!("not an exec");
    };
    let written: Vec<&Arc<[HostId]>> = targets
        .written()
        .iter()
        .chain(closed.written())
        .map(|(t, _)| shared(t))
        .chain(on.written().iter().map(shared))
        .chain(verify_on.written().iter().map(shared))
        .collect();
    assert_eq!(written.len(), 5);
    for list in written {
        assert!(Arc::ptr_eq(list, members), "a copy of the group's members");
    }
    // The group itself and its five uses, nothing else, hold the list.
    assert_eq!(Arc::strong_count(members), 1 + 5);
}

#[test]
fn targets_expand_in_the_order_written() {
    let runbook = runbook("step a\n  port.open web:80, db:22, wiki:80, web:443\n");
    let ActionKind::PortOpen { targets, .. } = &runbook.steps[0].action.kind else {
        panic!("not a port.open");
    };
    let expanded: Vec<PortTarget> = targets.iter().collect();
    let pairs: Vec<(usize, u16)> = expanded.iter().map(|t| (t.host.0, t.port)).collect();
    assert_eq!(
        pairs,
        [(0, 80), (1, 80), (2, 22), (0, 80), (0, 443), (1, 443)]
    );
    assert_eq!(targets.len(), 6);
    assert_eq!(targets.iter().len(), 6);
    let mut walked = 0;
    for target in targets {
        assert_eq!(target, expanded[walked]);
        walked += 1;
    }
    assert_eq!(walked, 6);
    assert_eq!(
        runbook.describe(&runbook.steps[0].action),
        "port.open wiki:80, wiki-new:80, db:22, wiki:80, wiki:443, wiki-new:443"
    );
}

#[test]
fn exec_names_each_host_once_groups_expanded() {
    let runbook = runbook(
        "step a\n  exec on wiki-new, web, db, wiki \"true\"\n\n\
         step b\n  exec on db, web \"true\"\n\n\
         step c\n  exec on web, web \"true\"\n",
    );
    let hosts = |i: usize| -> Vec<usize> {
        let ActionKind::Exec { on, .. } = &runbook.steps[i].action.kind else {
            panic!("not an exec");
        };
        assert_eq!(on.len(), on.iter().count());
        on.iter().map(|h| h.0).collect()
    };
    assert_eq!(hosts(0), [1, 0, 2]);
    assert_eq!(hosts(1), [2, 0, 1]);
    assert_eq!(hosts(2), [0, 1]);
    let lines: Vec<String> = runbook
        .steps
        .iter()
        .map(|s| runbook.describe(&s.action))
        .collect();
    assert_eq!(
        lines,
        [
            "exec on wiki-new, wiki, db \"true\"",
            "exec on db, wiki, wiki-new \"true\"",
            "exec on wiki, wiki-new \"true\"",
        ]
    );
    // A group whose members are all new is kept whole, not copied.
    let ActionKind::Exec { on, .. } = &runbook.steps[1].action.kind else {
        panic!("not an exec");
    };
    assert!(Arc::ptr_eq(
        shared(&on.written()[1]),
        &runbook.groups[0].members
    ));
}
