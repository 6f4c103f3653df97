//! `rollback-over-window`: past some point of the window, undoing what has
//! been done would take longer than the window has left.

use super::{Context, Findings, Rule};
use crate::units_fmt::{duration, offset};
use cutover_lang::Severity;

pub const RULE: Rule = Rule {
    code: "rollback-over-window",
    severity: Severity::Warning,
    summary: "a rollback would need longer than the window has left",
};

pub fn check(ctx: &Context, out: &mut Findings) {
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
        needed = needed.saturating_add(figure.secs_or_zero());
        unknown |= figure.secs.is_none();
        undone.push(format!(
            "`{}` {}",
            s.name,
            figure.secs.map_or("unknown".to_string(), duration)
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
