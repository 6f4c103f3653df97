//! `ttl-not-restored`: a TTL lowered for the cutover and never raised again,
//! so the record keeps a short TTL (and the servers keep the extra load).

use super::{Context, Findings, Rule};
use crate::schedule::{fqdn, previous_ttl};
use crate::units_fmt::duration_ms as duration;
use cutover_lang::{ActionKind, RecordType, Severity, StepId, ZoneId};
use std::collections::HashMap;

pub const RULE: Rule = Rule {
    code: "ttl-not-restored",
    severity: Severity::Warning,
    summary: "a lowered TTL is never restored after the cutover",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain ttl-not-restored` prints it.
const DOC: &str = r#"
## What it does
Finds a `dns.ttl` that lowers a record's TTL (below its `was` TTL, below the
probed TTL, or ahead of a switch) with no later `dns.ttl` of the same record
that raises it again.

## Why it matters
A short TTL is right for the cutover and wrong afterwards: every resolver
asks your servers again every few minutes, and a DNS outage hits clients
within minutes instead of hours.

## Example
```
step lower-ttl at T-2d
  dns.ttl example.test www A 300 was 1d
```
and nothing restores `www` after the switch.

## How to fix
Restore the TTL once the switch is verified:
```
step restore-ttl after check-web
  dns.ttl example.test www A 1d was 300
```
"#;

/// A record: zone, name relative to it, type.
type RecordKey<'a> = (ZoneId, &'a str, RecordType);

fn check(ctx: &Context, out: &mut Findings) {
    let lowers_for_switch =
        |id: StepId| ctx.plan.switches.iter().any(|s| s.lowered_by.contains(&id));
    // The TTLs each record is set to, and by which step.
    let mut settings: HashMap<RecordKey, Vec<(StepId, i64)>> = HashMap::new();
    for (j, other) in ctx.runbook.steps.iter().enumerate() {
        if let ActionKind::DnsTtl {
            zone,
            names,
            rtype,
            ttl,
            ..
        } = &other.action.kind
        {
            for name in names {
                settings
                    .entry((*zone, name.as_str(), *rtype))
                    .or_default()
                    .push((StepId(j), crate::estimate::ms(*ttl)));
            }
        }
    }
    for (i, step) in ctx.runbook.steps.iter().enumerate() {
        let ActionKind::DnsTtl {
            zone,
            names,
            rtype,
            ttl,
            ..
        } = &step.action.kind
        else {
            continue;
        };
        let id = StepId(i);
        let ttl = crate::estimate::ms(*ttl);
        for name in names {
            let was = previous_ttl(ctx.runbook, ctx.facts, id, name);
            let lowers = match was {
                Some((was, _)) => was > ttl,
                None => lowers_for_switch(id),
            };
            if !lowers {
                continue;
            }
            let restored = settings
                .get(&(*zone, name.as_str(), *rtype))
                .into_iter()
                .flatten()
                .any(|&(other, new)| new > ttl && ctx.is_after(id, other));
            if restored {
                continue;
            }
            let restore_to = was.map_or_else(|| "<old TTL>".to_string(), |(w, _)| duration(w));
            out.diagnostic(
                &RULE,
                format!(
                    "the TTL of `{} {}` is lowered to {} here and never restored after the cutover",
                    fqdn(ctx.runbook, *zone, name),
                    rtype.as_str(),
                    duration(ttl)
                ),
                step.action.span,
            )
            .help = Some(format!(
                "add a step after the switch: `dns.ttl {} {name} {} {restore_to} was {}`",
                ctx.runbook.zone(*zone).name,
                rtype.as_str(),
                duration(ttl)
            ));
        }
    }
}
