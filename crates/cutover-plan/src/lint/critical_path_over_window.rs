//! `critical-path-over-window`: the plan ends after the announced window
//! closes.

use super::{Context, Findings, Rule};
use crate::units_fmt::{duration, offset};
use cutover_lang::{Label, Severity};

pub const RULE: Rule = Rule {
    code: "critical-path-over-window",
    severity: Severity::Error,
    summary: "the critical path ends after the window closes",
};

pub fn check(ctx: &Context, out: &mut Findings) {
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
