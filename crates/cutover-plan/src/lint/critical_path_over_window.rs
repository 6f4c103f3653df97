//! `critical-path-over-window`: the plan ends after the announced window
//! closes.

use super::{Context, Findings, Rule};
use crate::units_fmt::{duration_ms as duration, offset_ms as offset};
use cutover_lang::{Label, Severity};

pub const RULE: Rule = Rule {
    code: "critical-path-over-window",
    severity: Severity::Error,
    summary: "the critical path ends after the window closes",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain critical-path-over-window` prints it.
const DOC: &str = r#"
## What it does
Reports a plan whose last step ends after the announced window closes. The
message says by how much, points at the `window` line and at the last step of
the critical path, and lists the critical path. When durations on the way are
unknown, the overflow is "at least" that much.

## Why it matters
The window is what was announced to users. A plan that does not fit it will
either overrun or be cut short in the middle — usually at the worst moment.

## Example
```
runbook migrate
  window 2030-01-05 22:00 UTC for 15m
```
with a 10-minute freeze, an 11-minute delta copy and the switch after it.

## How to fix
Shorten the critical path — pre-copy data before the window, run independent
steps in parallel (drop needless `after`s), declare realistic `expect`s — or
announce a longer window.
"#;

fn check(ctx: &Context, out: &mut Findings) {
    let plan = ctx.plan;
    let (Some(fit), Some(window)) = (plan.window, ctx.runbook.window) else {
        return;
    };
    if fit.left >= 0 {
        if plan.end_at_least {
            out.notes.push(format!(
                "the plan fits the window only if its unknown durations take less than {}",
                duration(fit.left)
            ));
        }
        return;
    }
    let path: Vec<&str> = plan
        .critical_path
        .iter()
        .map(|id| plan.step(*id).name.as_str())
        .collect();
    let at_least = if plan.end_at_least { "at least " } else { "" };
    let d = out.diagnostic(
        &RULE,
        format!(
            "the plan ends at {at_least}{}, {at_least}{} after the window closes at {}",
            offset(plan.end),
            duration(-fit.left),
            offset(fit.length)
        ),
        window.span,
    );
    d.labels[0].message = format!("the window closes at {}", offset(fit.length));
    if let Some(last) = plan.critical_path.last() {
        d.labels.push(Label {
            span: ctx.runbook.step(*last).action.span,
            message: "the critical path ends here".to_string(),
        });
    }
    d.help = Some(format!(
        "shorten the critical path ({}) or widen the window",
        path.join(" -> ")
    ));
}
