//! `ttl-not-lowered`: a DNS switch (or a removal of values) before caches
//! have dropped the record's old TTL, so clients keep using the old address
//! for up to that TTL.

use super::{Context, Findings, Rule};
use crate::units_fmt::{duration_ms as duration, json_secs, offset_ms as offset};
use cutover_lang::{ActionKind, Severity};

pub const RULE: Rule = Rule {
    code: "ttl-not-lowered",
    severity: Severity::Error,
    summary: "a dns.switch or dns.remove before the record's old TTL has expired",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain ttl-not-lowered` prints it.
const DOC: &str = r#"
## What it does
Finds a `dns.switch` of a record whose TTL is not lowered by an earlier
`dns.ttl` at least the old TTL before the switch: either no `dns.ttl` of that
record comes before the switch at all, or the switch is pinned with `at` to a
time before the old TTL has expired (the lowering step's end plus the TTL the
record had before, from `was` or a probe). A `dns.remove` takes served values
away too, so it is held to the same rule.

The message names the switch step, the lowering step and the shortfall;
in JSON (`cutover plan --format json`, `cutover check --format json`) the
finding's `data` holds them as fields: `record`, `switch_step`,
`lowering_step` (null when the TTL is never lowered) and, for a switch too
early, `switch_at_s`, `safe_at_s` and `shortfall_s` (seconds from T0).

## Why it matters
Resolvers cache a record for its TTL. A record switched while caches may
still hold it with a one-day TTL keeps sending clients to the old address for
up to a day; an address removed from a set keeps getting clients the same way. Lowering the TTL well in advance is what made the 2009 move's IP
change far less disruptive.

Without `at`, the planner does not report a late lowering: it plans the switch
to wait until the earliest safe time and draws that wait as its own segment.

## Example
```
step switch after final-copy
  dns.switch example.test www A 127.0.0.10 -> 127.0.0.20
```
`www` was never lowered: `ttl-not-lowered`.

## How to fix
Lower the TTL at least the current TTL before the switch, and say what it was:
```
step lower-ttl at T-2d
  dns.ttl example.test www A 300 was 1d
```
For a switch pinned with `at`, move the lowering earlier or the switch later.
"#;

fn check(ctx: &Context, out: &mut Findings) {
    for safety in &ctx.plan.switches {
        let step = ctx.runbook.step(safety.step);
        let Some((zone, name, rtype)) = step.action.kind.retired_record() else {
            continue;
        };
        let (changed, this) = match step.action.kind {
            ActionKind::DnsRemove { .. } => ("loses values in", "removal"),
            _ => ("is switched by", "switch"),
        };
        let planned = ctx.plan.step(safety.step);
        if safety.lowered_by.is_empty() {
            let live = ctx
                .facts
                .and_then(|f| f.live_ttl(&ctx.runbook.zone(zone).name, name, rtype))
                .map(|t| format!(" ({}, probed)", duration(crate::estimate::ms(t))))
                .unwrap_or_default();
            let d = out.diagnostic(
                &RULE,
                format!(
                    "`{}` {changed} `{}` but its TTL is never lowered before: caches keep the old value for up to its full TTL{live}",
                    safety.record, step.name
                ),
                step.action.span,
            );
            d.data = data(&safety.record, &step.name, None, None);
            d.help = Some(format!(
                "add an earlier step `dns.ttl {} {name} {} 300 was <current TTL>` at least the current TTL before this {this}",
                ctx.runbook.zone(zone).name,
                rtype.as_str()
            ));
            continue;
        }
        let (Some(at), Some(safe)) = (planned.at, safety.earliest_safe) else {
            continue;
        };
        if at < safe {
            let lowering = safety.lowered_by[0];
            let lowering_name = &ctx.runbook.step(lowering).name;
            let d = out.diagnostic(
                &RULE,
                format!(
                    "`{}` {changed} `{}` at {}, {} too early: the TTL lowered by `{lowering_name}` leaves the old one in caches until {} ({})",
                    safety.record,
                    step.name,
                    offset(at),
                    duration(safe - at),
                    offset(safe),
                    safety.basis
                ),
                step.action.span,
            );
            d.data = data(
                &safety.record,
                &step.name,
                Some(lowering_name),
                Some((at, safe)),
            );
            d.labels[0].message = format!("switched at {}", offset(at));
            d.labels.push(cutover_lang::Label {
                span: ctx.runbook.step(lowering).action.span,
                message: "TTL lowered here".to_string(),
            });
            d.help = Some(format!(
                "lower the TTL at least {} earlier, or switch at {} or later",
                duration(safe - at),
                offset(safe)
            ));
        }
    }
}

/// The finding's fields: the record, the switch step, the lowering step
/// (none when the TTL is never lowered) and, when the switch is too early,
/// when it is, when it would be safe and the shortfall, in seconds from T0.
fn data(
    record: &str,
    switch: &str,
    lowering: Option<&str>,
    times: Option<(i64, i64)>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    data.insert("record".into(), record.into());
    data.insert("switch_step".into(), switch.into());
    data.insert("lowering_step".into(), lowering.into());
    if let Some((at, safe)) = times {
        data.insert("switch_at_s".into(), json_secs(at));
        data.insert("safe_at_s".into(), json_secs(safe));
        data.insert("shortfall_s".into(), json_secs(safe - at));
    }
    data
}
