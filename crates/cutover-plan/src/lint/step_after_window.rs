//! `step-after-window`: a step whose `at` is at or after the window's end.
//! The planner schedules it as a follow-up, outside the window's fit; this
//! says so where the step is, not only in a note.

use super::{Context, Findings, Rule};
use crate::units_fmt::{duration_ms as duration, offset_ms as offset};
use cutover_lang::Severity;

pub const RULE: Rule = Rule {
    code: "step-after-window",
    severity: Severity::Info,
    summary: "a step at or after the window's end: a follow-up, outside the window's fit",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain step-after-window` prints it.
const DOC: &str = r#"
## What it does
Finds a step whose `at` is at or after the end of the runbook's `window`.
The plan schedules it (and the steps that wait for it) as a follow-up after
the window: it is not part of the window's fit, so "the plan fits" says
nothing about it. The finding is information: a step meant to run after the
window (restoring a TTL the day after) is right where it is.

## Why it matters
A step meant for the window but given a time past its end (`at T+6h` in a
six-hour window, a date a day off) drops out of the fit silently: the plan
fits, and on the day the step starts after the announced end.

## Example
```
runbook move
  window 2030-01-05 22:00 UTC for 6h

step switch at T+6h
  dns.switch example.test www A 127.0.0.10 -> 127.0.0.20
```

## How to fix
If the step belongs to the cutover, give it a time inside the window
(`at T+5h30m`) or widen the window. If it is a follow-up, leave it: the
finding only says how the plan treats it.
"#;

fn check(ctx: &Context, out: &mut Findings) {
    let Some(fit) = ctx.plan.window else {
        return;
    };
    for (i, step) in ctx.runbook.steps.iter().enumerate() {
        let Some(at) = ctx.plan.step(cutover_lang::StepId(i)).at else {
            continue;
        };
        if at < fit.length {
            continue;
        }
        let after = if at == fit.length {
            "when the window closes".to_string()
        } else {
            format!(
                "{} after the window closes at {}",
                duration(at - fit.length),
                offset(fit.length)
            )
        };
        out.diagnostic(
            &RULE,
            format!(
                "`{}` is at {}, {after}: it is planned as a follow-up, not part of the window's fit",
                step.name,
                offset(at)
            ),
            step.span,
        )
        .help = Some(format!(
            "if `{}` belongs to the cutover, give it a time before {} or widen the window",
            step.name,
            offset(fit.length)
        ));
    }
}
