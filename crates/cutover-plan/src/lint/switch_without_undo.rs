//! `switch-without-undo`: a DNS change (`dns.switch`, `dns.add`,
//! `dns.remove`) with no `undo`, so a rollback cannot put the old values back.

use super::{Context, Findings, Rule};
use cutover_lang::{ActionKind, Severity};

pub const RULE: Rule = Rule {
    code: "switch-without-undo",
    severity: Severity::Warning,
    summary: "a dns.switch, dns.add or dns.remove without undo",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain switch-without-undo` prints it.
const DOC: &str = r#"
## What it does
Finds a `dns.switch`, `dns.add` or `dns.remove` step without an `undo` line.

## Why it matters
`cutover rollback` undoes done steps in reverse order. A DNS change without
an `undo` cannot be rolled back by the tool: someone has to find the old
values and edit the zone by hand, under pressure.

## Example
```
step switch after final-copy
  dns.switch example.test www A 127.0.0.10 -> 127.0.0.20
```

## How to fix
Add the reverse switch:
```
  undo dns.switch example.test www A 127.0.0.20 -> 127.0.0.10
```
For `dns.add`, the removal of the same values (`undo dns.remove ...`); for
`dns.remove`, their addition (`undo dns.add ...`).
"#;

fn check(ctx: &Context, out: &mut Findings) {
    for step in &ctx.runbook.steps {
        if step.undo.is_some() {
            continue;
        }
        let (message, reverse) = match &step.action.kind {
            ActionKind::DnsSwitch {
                zone,
                name,
                rtype,
                old,
                new,
            } => (
                format!("switches {name} with no `undo`: a rollback cannot put {old} back"),
                format!(
                    "dns.switch {} {name} {} {new} -> {old}",
                    ctx.runbook.zone(*zone).name,
                    rtype.as_str()
                ),
            ),
            ActionKind::DnsAdd {
                zone,
                name,
                rtype,
                values,
                ..
            } => (
                format!("adds {values} to {name} with no `undo`: a rollback cannot take it out"),
                format!(
                    "dns.remove {} {name} {} {values}",
                    ctx.runbook.zone(*zone).name,
                    rtype.as_str()
                ),
            ),
            ActionKind::DnsRemove {
                zone,
                name,
                rtype,
                values,
            } => (
                format!(
                    "removes {values} from {name} with no `undo`: a rollback cannot put it back"
                ),
                format!(
                    "dns.add {} {name} {} {values}",
                    ctx.runbook.zone(*zone).name,
                    rtype.as_str()
                ),
            ),
            _ => continue,
        };
        out.diagnostic(
            &RULE,
            format!("`{}` {message}", step.name),
            step.action.span,
        )
        .help = Some(format!("add `undo {reverse}`"));
    }
}
