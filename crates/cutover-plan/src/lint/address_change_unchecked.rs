//! `address-change-unchecked`: a record moves to a new address and nothing
//! checks, there and afterwards, a port the moved service serves (the ACL
//! that forgot port 80 while ssh still worked). A check of the moved name
//! at the new host (`http.check https://www.example.org/ at web-new`)
//! counts wherever it runs, also before the switch: it is what the name
//! will reach once it moves.

use super::{Context, Findings, Rule};
use crate::schedule::fqdn;
use cutover_lang::{Action, ActionKind, HostRef, RecordType, Severity, StepId};
use std::collections::HashMap;
use std::net::IpAddr;

pub const RULE: Rule = Rule {
    code: "address-change-unchecked",
    severity: Severity::Warning,
    summary: "an address changes with no check of the moved service's port after the switch",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain address-change-unchecked` prints it.
const DOC: &str = r#"
## What it does
Finds a `dns.switch` of an `A` or `AAAA` record to a new address (or a
`dns.add` of one) after which no check reaches a port the moved service
serves at that address: no check in the switch's own `verify` lines, and
none in a step that comes after the switch. Checks of the host at the new address, of a group it is in, of the
address itself, and `http.check`s of the moved name count.

Which ports count depends on the record's name (its first label):

- a web name (`www`, `web`, the zone's apex `@`): an `http.check`, or a
  `port.open` of 80, 443, 8080 or 8443;
- an ssh name (`ssh`, `sftp`, `shell`, `login`, `git`): any port, 22 too;
- any other name: an `http.check`, or a `port.open` of any port but 22.

Port 22 alone never counts for a service that is not ssh: ssh answers
while the service's own port is blocked.

## Why it matters
The new address answering DNS is not the service answering. In the 2009
move a network ACL without port 80 went unnoticed for hours, while ssh to
the new hosts worked. A check of the service's port right after the switch
finds it in seconds.

## Example
```
step switch after final-copy
  dns.switch example.test www A 127.0.0.10 -> 127.0.0.20

step check-ssh after switch
  port.open web-new:22
```
and no step checks port 80 or 443 of `web-new` (127.0.0.20) afterwards.

## How to fix
Add a check of the service after the switch, on the host or the name:
```
step check-web after switch
  port.open web-new:80, web-new:443
```
or `http.check http://www.example.test/ status 200`.
"#;

/// What a check reaches at a host: a port, or a web server (an
/// `http.check`, whatever its port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Port(u16),
    Http,
}

/// The steps that check each host, each group (as a whole, not expanded
/// into its hosts: this grows with the runbook's text), each literal
/// address and each URL host name, with what they reach; and the names
/// checked `at` each address.
struct Checks {
    by_host: Vec<Vec<(StepId, Probe)>>,
    by_group: Vec<Vec<(StepId, Probe)>>,
    by_addr: HashMap<IpAddr, Vec<(StepId, Probe)>>,
    by_name: HashMap<String, Vec<StepId>>,
    name_at: HashMap<(String, IpAddr), Vec<StepId>>,
}

/// The services a record's name says it is, by its first label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Web,
    Ssh,
    Other,
}

impl Service {
    fn of(name: &str) -> Service {
        let first = name.split('.').next().unwrap_or(name).to_ascii_lowercase();
        match first.as_str() {
            "www" | "web" | "@" => Service::Web,
            "ssh" | "sftp" | "shell" | "login" | "git" => Service::Ssh,
            _ => Service::Other,
        }
    }

    /// Whether a check that reaches `probe` checks this service.
    fn served_by(self, probe: Probe) -> bool {
        match (self, probe) {
            (Service::Ssh, _) | (_, Probe::Http) => true,
            (Service::Web, Probe::Port(port)) => matches!(port, 80 | 443 | 8080 | 8443),
            (Service::Other, Probe::Port(port)) => port != 22,
        }
    }
}

fn check(ctx: &Context, out: &mut Findings) {
    let mut checks = Checks {
        by_host: vec![Vec::new(); ctx.runbook.hosts.len()],
        by_group: vec![Vec::new(); ctx.runbook.groups.len()],
        by_addr: HashMap::new(),
        by_name: HashMap::new(),
        name_at: HashMap::new(),
    };
    for (i, step) in ctx.runbook.steps.iter().enumerate() {
        for action in std::iter::once(&step.action).chain(&step.verify) {
            collect_targets(ctx, action, StepId(i), &mut checks);
        }
    }
    // The hosts at each address, and the groups each host is in.
    let mut hosts_at: HashMap<IpAddr, Vec<usize>> = HashMap::new();
    for (i, host) in ctx.runbook.hosts.iter().enumerate() {
        hosts_at.entry(host.addr).or_default().push(i);
    }
    let mut groups_of: Vec<Vec<usize>> = vec![Vec::new(); ctx.runbook.hosts.len()];
    for (g, group) in ctx.runbook.groups.iter().enumerate() {
        for member in group.members.iter() {
            groups_of[member.0].push(g);
        }
    }
    for (i, step) in ctx.runbook.steps.iter().enumerate() {
        // A switch's new values, or the values an add brings in: clients
        // are sent there from now on.
        let (zone, name, rtype, new) = match &step.action.kind {
            ActionKind::DnsSwitch {
                zone,
                name,
                rtype,
                new,
                ..
            } => (zone, name, rtype, new),
            ActionKind::DnsAdd {
                zone,
                name,
                rtype,
                values,
                ..
            } => (zone, name, rtype, values),
            _ => continue,
        };
        if !matches!(rtype, RecordType::A | RecordType::Aaaa) {
            continue;
        }
        let Some(addr) = new.iter().find_map(|v| v.trim().parse::<IpAddr>().ok()) else {
            continue;
        };
        let switch = StepId(i);
        let service = Service::of(name);
        let record = fqdn(ctx.runbook, *zone, name);
        let hosts = hosts_at.get(&addr).map_or(&[][..], Vec::as_slice);
        let by_host = hosts.iter().flat_map(|&h| &checks.by_host[h]);
        let by_group = hosts
            .iter()
            .flat_map(|&h| &groups_of[h])
            .flat_map(|&g| &checks.by_group[g]);
        let by_addr = checks.by_addr.get(&addr).into_iter().flatten();
        let by_name = checks
            .by_name
            .get(&record.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .map(|&s| (s, Probe::Http));
        let after: Vec<(StepId, Probe)> = by_host
            .chain(by_group)
            .chain(by_addr)
            .copied()
            .chain(by_name)
            .filter(|&(s, _)| s == switch || ctx.is_after(switch, s))
            .collect();
        let checked = after.iter().any(|&(_, probe)| service.served_by(probe));
        // The moved name checked at the new address, before or after.
        let checked_at = checks
            .name_at
            .contains_key(&(record.to_ascii_lowercase(), addr));
        if checked || checked_at {
            continue;
        }
        let host = ctx.runbook.hosts.iter().find(|h| h.addr == addr);
        let example = match (host, service) {
            (Some(h), Service::Web) | (Some(h), Service::Ssh) => {
                format!("`port.open {}:80, {}:443`", h.name, h.name)
            }
            (Some(h), Service::Other) => {
                format!(
                    "a check of the port `{name}` serves, like `port.open {}:443`",
                    h.name
                )
            }
            (None, _) => format!("`http.check http://{record}/`"),
        };
        // A check that reaches the host but not the service, like ssh's port.
        let missed = after
            .iter()
            .find_map(|&(s, probe)| match probe {
                Probe::Port(port) => Some(format!(
                    "; `{}` checks port {port}, which `{name}` does not serve",
                    ctx.runbook.step(s).name
                )),
                Probe::Http => None,
            })
            .unwrap_or_default();
        let (moves, change) = match step.action.kind {
            ActionKind::DnsAdd { .. } => ("gains", "addition"),
            _ => ("moves to", "switch"),
        };
        out.diagnostic(
            &RULE,
            format!(
                "{record} {moves} {addr}{} but no check of a port it serves runs there after the {change}{missed}",
                host.map(|h| format!(" ({})", h.name)).unwrap_or_default()
            ),
            step.action.span,
        )
        .help = Some(format!("add a step after `{}` with {example}", step.name));
    }
}

fn collect_targets(ctx: &Context, action: &Action, step: StepId, checks: &mut Checks) {
    let add = |steps: Option<&mut Vec<(StepId, Probe)>>, probe: Probe| {
        if let Some(steps) = steps
            && !steps.contains(&(step, probe))
        {
            steps.push((step, probe));
        }
    };
    match &action.kind {
        ActionKind::PortOpen { targets, .. } => {
            for (target, port) in targets.written() {
                let probe = Probe::Port(*port);
                match target {
                    HostRef::Host(h) => add(checks.by_host.get_mut(h.0), probe),
                    HostRef::Group(g, _) => add(checks.by_group.get_mut(g.0), probe),
                }
            }
        }
        ActionKind::HttpCheck { url, host, at, .. } => {
            if let Some(h) = host {
                add(checks.by_host.get_mut(h.0), Probe::Http);
            }
            if let (true, Some(h), Some(name)) = (*at, host, url_host(url)) {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let addr = ctx.runbook.host(*h).addr;
                checks.name_at.entry((name, addr)).or_default().push(step);
            }
            if let Some(name) = url_host(url) {
                match name.trim_matches(['[', ']']).parse::<IpAddr>() {
                    Ok(a) => checks
                        .by_addr
                        .entry(a)
                        .or_default()
                        .push((step, Probe::Http)),
                    Err(_) => checks
                        .by_name
                        .entry(name.to_ascii_lowercase())
                        .or_default()
                        .push(step),
                }
            }
        }
        _ => {}
    }
}

/// `http://wiki.maemo.org:8080/x` → `wiki.maemo.org`.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if authority.starts_with('[') {
        return authority.split_once(']').map(|(h, _)| &h[1..]);
    }
    Some(authority.split(':').next().unwrap_or(authority)).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::url_host;

    /// A runbook of a zone, hosts web and web-new (also as group `new`)
    /// and `steps`.
    fn runbook(steps: &str) -> String {
        format!(
            "runbook r\n\nkey upd hmac-sha256 env:LINT_TSIG\n\nzone example.test\n  primary 127.0.0.1:5353 key upd\n  verify 127.0.0.1:5353\n\n\
             host web addr 127.0.0.10 via local ./web\nhost web-new addr 127.0.0.20 via local ./web-new\ngroup new web-new\n\n{steps}"
        )
    }

    /// The codes `plan` finds in `text`.
    fn plan_codes(text: String) -> Vec<&'static str> {
        let loaded = cutover_lang::parse_source("r.runbook", text);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let runbook = loaded.runbook.unwrap();
        crate::plan(&runbook, None)
            .diagnostics
            .iter()
            .map(|d| d.code)
            .collect()
    }

    /// The codes `plan` finds in a runbook whose switch moves www to
    /// web-new, with `check` as its only other step.
    fn codes(check: &str) -> Vec<&'static str> {
        plan_codes(runbook(&format!(
            "step pre-check\n  {check}\n\n\
             step switch after pre-check\n  dns.switch example.test www A 127.0.0.10 -> 127.0.0.20\n  undo dns.switch example.test www A 127.0.0.20 -> 127.0.0.10\n"
        )))
    }

    #[test]
    fn a_check_of_the_moved_name_at_the_new_host_counts_before_the_switch() {
        let code = super::RULE.code;
        assert!(!codes("http.check https://www.example.test/ at web-new").contains(&code));
        assert!(
            !codes("http.check https://WWW.example.test./ at web-new body \"new\"").contains(&code)
        );
        // At the old host, of another name, or without `at`, before the switch: not a check of it.
        assert!(codes("http.check https://www.example.test/ at web").contains(&code));
        assert!(codes("http.check https://mail.example.test/ at web-new").contains(&code));
        assert!(codes("http.check https://www.example.test/").contains(&code));
    }

    /// The codes `plan` finds when step `check` runs after the switch of
    /// `name` to web-new.
    fn codes_after(name: &str, check: &str) -> Vec<&'static str> {
        plan_codes(runbook(&format!(
            "step switch\n  dns.switch example.test {name} A 127.0.0.10 -> 127.0.0.20\n  undo dns.switch example.test {name} A 127.0.0.20 -> 127.0.0.10\n\n\
             step check after switch\n  {check}\n"
        )))
    }

    #[test]
    fn only_a_port_the_moved_service_serves_counts() {
        let code = super::RULE.code;
        let trips = |name: &str, check: &str| codes_after(name, check).contains(&code);
        // ssh answering is not the web answering (the 2009 lesson).
        assert!(trips("www", "port.open web-new:22"));
        assert!(trips("www", "port.open new:22"));
        assert!(trips("www", "port.open web-new:25"));
        assert!(!trips("www", "port.open web-new:22, web-new:443"));
        assert!(!trips("www", "port.open new:80"));
        assert!(!trips("@", "port.open web-new:8443"));
        assert!(!trips("www", "http.check http://web-new/"));
        assert!(!trips("www", "http.check http://127.0.0.20:8000/"));
        // Another service: any port but ssh's.
        assert!(trips("db", "port.open web-new:22"));
        assert!(!trips("db", "port.open web-new:5432"));
        // An ssh service: its port counts.
        assert!(!trips("git", "port.open web-new:22"));
        // In the switch's own verify line too.
        assert!(trips("www", "manual \"look\""));
    }

    #[test]
    fn the_message_names_the_check_that_does_not_count() {
        let text = "runbook r\n\nkey upd hmac-sha256 env:LINT_TSIG\n\nzone example.test\n  primary 127.0.0.1:5353 key upd\n\n\
             host web addr 127.0.0.10 via local ./web\nhost web-new addr 127.0.0.20 via local ./web-new\n\n\
             step switch\n  dns.switch example.test www A 127.0.0.10 -> 127.0.0.20\n  undo dns.switch example.test www A 127.0.0.20 -> 127.0.0.10\n  verify port.open web-new:22\n";
        let loaded = cutover_lang::parse_source("r.runbook", text.to_string());
        let runbook = loaded.runbook.unwrap();
        let plan = crate::plan(&runbook, None);
        let d = plan
            .diagnostics
            .iter()
            .find(|d| d.code == super::RULE.code)
            .expect("port 22 alone does not silence it");
        assert!(
            d.message
                .contains("`switch` checks port 22, which `www` does not serve"),
            "{}",
            d.message
        );
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("http://wiki-new/"), Some("wiki-new"));
        assert_eq!(url_host("https://a.b.org:8443/x?y"), Some("a.b.org"));
        assert_eq!(url_host("http://[::1]:80/"), Some("::1"));
        assert_eq!(url_host("http:///"), None);
    }
}
