//! `ns-not-verified`: a zone's live NS set names a server that is not among
//! its `verify` servers, so a lagging secondary could keep serving stale data
//! unseen. Needs probe facts.

use super::{Context, Findings, Rule};
use cutover_lang::Severity;

pub const RULE: Rule = Rule {
    code: "ns-not-verified",
    severity: Severity::Warning,
    summary: "a zone's live NS server is missing from its verify servers",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain ns-not-verified` prints it.
const DOC: &str = r#"
## What it does
Compares the live NS set of each zone (read by `cutover plan --probe`) with
the zone's `verify` servers, and reports every name server whose addresses
are not among them. Without probe facts the rule is not evaluated, and the
plan says so in its notes.

## Why it matters
A DNS step is verified only against the `verify` servers. A secondary that is
published in NS but not verified can keep serving stale data unseen — the
2009 move's secondaries did exactly that.

## Example
```
zone example.test
  primary 127.0.0.1:5353 key upd
  verify  127.0.0.1:5353, 127.0.0.2:5353
```
with live NS records `ns1` (127.0.0.1), `ns2` (127.0.0.2) and `ns3`
(127.0.0.3): `ns3` is never checked.

## How to fix
Add every published name server to `verify`:
```
  verify  127.0.0.1:5353, 127.0.0.2:5353, 127.0.0.3:53
```
"#;

fn check(ctx: &Context, out: &mut Findings) {
    if ctx.runbook.zones.is_empty() {
        return;
    }
    let Some(facts) = ctx.facts else {
        out.notes.push(format!(
            "rule {} not evaluated: it needs the zones' live NS sets (probe)",
            RULE.code
        ));
        return;
    };
    for zone in &ctx.runbook.zones {
        let Some(ns) = facts.zone_ns(&zone.name) else {
            out.notes.push(format!(
                "rule {} not evaluated for {}: no live NS set was probed",
                RULE.code, zone.name
            ));
            continue;
        };
        for server in &ns.servers {
            let verified = server
                .addrs
                .iter()
                .any(|a| zone.verify.iter().any(|v| v.ip() == *a));
            if verified {
                continue;
            }
            let addrs = if server.addrs.is_empty() {
                "no address found".to_string()
            } else {
                server
                    .addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.diagnostic(
                &RULE,
                format!(
                    "live NS server {} ({addrs}) of {} is not among its verify servers: it could keep serving stale data unseen",
                    server.name, zone.name
                ),
                zone.span,
            )
            .help = Some(format!(
                "add {} to the `verify` line of zone {}",
                server.addrs.first().map_or_else(|| server.name.clone(), |a| format!("{a}:53")),
                zone.name
            ));
        }
    }
}
