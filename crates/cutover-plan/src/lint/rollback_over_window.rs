//! `rollback-over-window`: past some point of the window, undoing what has
//! been done would take longer than the window has left.

use super::{Context, Findings, Rule};
use crate::units_fmt::{duration_ms as duration, offset_ms as offset};
use cutover_lang::Severity;

pub const RULE: Rule = Rule {
    code: "rollback-over-window",
    severity: Severity::Warning,
    summary: "a rollback would need longer than the window has left",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain rollback-over-window` prints it.
const DOC: &str = r#"
## What it does
Walks the steps with an `undo` inside the window in the order they end, and
adds up how long undoing each would take: a DNS switch until caches drop the
new value (the propagation allowance plus the lowered TTL), a copy back over
the link, other kinds by their default. It reports the first point after
which a rollback of everything done so far needs longer than the window has
left.

## Why it matters
A rollback is the plan B for when the cutover goes wrong. Past that point it
is no longer a plan B that fits the window: the team needs to know where the
point of no return is before the day, not at 3 a.m.

## Example
```
runbook migrate
  window 2030-01-05 22:00 UTC for 2h
step lower-ttl at T-2d
  dns.ttl example.test www A 2h was 1d
```
A switch at T+23m with a 2-hour TTL needs over two hours to undo, but only
1h37m of the window is left.

## How to fix
Lower the TTL further before the cutover, finish the undoable steps earlier
in the window, or widen the window.
"#;

fn check(ctx: &Context, out: &mut Findings) {
    let Some(fit) = ctx.plan.window else { return };
    let mut undoable: Vec<_> = ctx
        .plan
        .steps
        .iter()
        .filter(|s| s.start >= 0 && ctx.runbook.step(s.id).undo.is_some())
        .collect();
    undoable.sort_by_key(|s| (s.end, s.id));
    let mut needed = 0i64;
    let mut unknown = false;
    let mut undone: Vec<String> = Vec::new();
    for s in undoable {
        let step = ctx.runbook.step(s.id);
        let Some(undo) = &step.undo else { continue };
        let figure = ctx.estimator.undo(ctx.plan, s.id, undo);
        needed = needed.saturating_add(figure.ms_or_zero());
        unknown |= figure.ms.is_none();
        undone.push(format!(
            "`{}` {}",
            s.name,
            figure.ms.map_or("unknown".to_string(), duration)
        ));
        let left = fit.length - s.end;
        if needed <= left {
            continue;
        }
        let at_least = if unknown { "at least " } else { "" };
        let d = out.diagnostic(
            &RULE,
            format!(
                "a rollback after `{}` (ends {}) needs {at_least}{} but the window has {} left",
                s.name,
                offset(s.end),
                duration(needed),
                duration(left.max(0))
            ),
            undo.span,
        );
        d.help = Some(format!(
            "undo in reverse order: {}; shorten the undos or finish the steps they undo earlier",
            undone.iter().rev().cloned().collect::<Vec<_>>().join(", ")
        ));
        return;
    }
}
