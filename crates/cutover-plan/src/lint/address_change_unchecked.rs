//! `address-change-unchecked`: a record moves to a new address and nothing
//! checks a port or HTTP there afterwards (the ACL that forgot port 80).

use super::{Context, Findings, Rule};
use crate::schedule::fqdn;
use cutover_lang::{Action, ActionKind, RecordType, Severity, StepId};
use std::net::IpAddr;

pub const RULE: Rule = Rule {
    code: "address-change-unchecked",
    severity: Severity::Warning,
    summary: "an address changes with no port or HTTP check after the switch",
};

/// What a check step reaches: a host address or a URL host name.
enum Target {
    Addr(IpAddr),
    Name(String),
}

pub fn check(ctx: &Context, out: &mut Findings) {
    let mut checks: Vec<(StepId, Target)> = Vec::new();
    for (i, step) in ctx.runbook.steps.iter().enumerate() {
        for action in std::iter::once(&step.action).chain(&step.verify) {
            collect_targets(ctx, action, StepId(i), &mut checks);
        }
    }
    for (i, step) in ctx.runbook.steps.iter().enumerate() {
        let ActionKind::DnsSwitch { zone, name, rtype, new, .. } = &step.action.kind else {
            continue;
        };
        if !matches!(rtype, RecordType::A | RecordType::Aaaa) {
            continue;
        }
        let Ok(addr) = new.trim().parse::<IpAddr>() else { continue };
        let switch = StepId(i);
        let record = fqdn(ctx.runbook, *zone, name);
        let checked = checks.iter().any(|(s, target)| {
            let hits = match target {
                Target::Addr(a) => *a == addr,
                Target::Name(n) => n.eq_ignore_ascii_case(&record),
            };
            hits && (*s == switch || ctx.is_after(switch, *s))
        });
        if checked {
            continue;
        }
        let host = ctx.runbook.hosts.iter().find(|h| h.addr == addr);
        let example = host.map_or_else(
            || format!("`http.check http://{record}/`"),
            |h| format!("`port.open {}:80, {}:443`", h.name, h.name),
        );
        out.diagnostic(
            &RULE,
            format!(
                "{record} moves to {addr}{} but no port or HTTP check runs there after the switch",
                host.map(|h| format!(" ({})", h.name)).unwrap_or_default()
            ),
            step.action.span,
        )
        .help = Some(format!("add a step after `{}` with {example}", step.name));
    }
}

fn collect_targets(ctx: &Context, action: &Action, step: StepId, checks: &mut Vec<(StepId, Target)>) {
    match &action.kind {
        ActionKind::PortOpen { targets } => {
            for t in targets {
                checks.push((step, Target::Addr(ctx.runbook.host(t.host).addr)));
            }
        }
        ActionKind::HttpCheck { url, host, .. } => {
            if let Some(h) = host {
                checks.push((step, Target::Addr(ctx.runbook.host(*h).addr)));
            }
            if let Some(name) = url_host(url) {
                match name.trim_matches(['[', ']']).parse::<IpAddr>() {
                    Ok(a) => checks.push((step, Target::Addr(a))),
                    Err(_) => checks.push((step, Target::Name(name.to_string()))),
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

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("http://wiki-new/"), Some("wiki-new"));
        assert_eq!(url_host("https://a.b.org:8443/x?y"), Some("a.b.org"));
        assert_eq!(url_host("http://[::1]:80/"), Some("::1"));
        assert_eq!(url_host("http:///"), None);
    }
}
