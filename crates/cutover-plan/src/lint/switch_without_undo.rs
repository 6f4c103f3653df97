//! `switch-without-undo`: a DNS switch with no `undo`, so a rollback cannot
//! put the old value back.

use super::{Context, Findings, Rule};
use cutover_lang::{ActionKind, Severity};

pub const RULE: Rule = Rule {
    code: "switch-without-undo",
    severity: Severity::Warning,
    summary: "a dns.switch without undo",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain switch-without-undo` prints it.
const DOC: &str = r#"
## What it does
Finds a `dns.switch` step without an `undo` line.

## Why it matters
`cutover rollback` undoes done steps in reverse order. A switch without an
`undo` cannot be rolled back by the tool: someone has to find the old value
and edit the zone by hand, under pressure.

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
"#;

fn check(ctx: &Context, out: &mut Findings) {
    for step in &ctx.runbook.steps {
        let ActionKind::DnsSwitch {
            zone,
            name,
            rtype,
            old,
            new,
        } = &step.action.kind
        else {
            continue;
        };
        if step.undo.is_some() {
            continue;
        }
        out.diagnostic(
            &RULE,
            format!(
                "`{}` switches {name} with no `undo`: a rollback cannot put {old} back",
                step.name
            ),
            step.action.span,
        )
        .help = Some(format!(
            "add `undo dns.switch {} {name} {} {new} -> {old}`",
            ctx.runbook.zone(*zone).name,
            rtype.as_str()
        ));
    }
}
