//! `unverifiable-step`: a step whose outcome cutover cannot observe, so after
//! a crash it cannot tell whether the step ran, and cannot resume safely.

use super::{Context, Findings, Rule};
use cutover_lang::{ActionKind, Severity};

pub const RULE: Rule = Rule {
    code: "unverifiable-step",
    severity: Severity::Warning,
    summary: "a step that cannot be verified, so cannot be resumed safely",
};

pub fn check(ctx: &Context, out: &mut Findings) {
    for step in &ctx.runbook.steps {
        if let ActionKind::Exec { command, .. } = &step.action.kind
            && step.verify.is_empty()
        {
            out.diagnostic(
                    &RULE,
                    format!(
                        "`{}` runs a command with no `verify`: after a crash cutover cannot tell whether it ran, so it cannot resume safely",
                        step.name
                    ),
                    step.action.span,
                )
                .help = Some(format!(
                    "add a `verify exec \"…\"` line that exits 0 once `{}` has taken effect",
                    command.chars().take(40).collect::<String>()
                ));
        }
    }
}
