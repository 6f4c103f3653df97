//! `switch-without-undo`: a DNS switch with no `undo`, so a rollback cannot
//! put the old value back.

use super::{Context, Findings, Rule};
use cutover_lang::{ActionKind, Severity};

pub const RULE: Rule = Rule {
    code: "switch-without-undo",
    severity: Severity::Warning,
    summary: "a dns.switch without undo",
};

pub fn check(ctx: &Context, out: &mut Findings) {
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
