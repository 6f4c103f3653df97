//! `unverifiable-step`: a step whose outcome cutover cannot observe, so after
//! a crash it cannot tell whether the step ran, and cannot resume safely.

use super::{Context, Findings, Rule};
use cutover_lang::{ActionKind, Severity};

pub const RULE: Rule = Rule {
    code: "unverifiable-step",
    severity: Severity::Warning,
    summary: "a step that cannot be verified, so cannot be resumed safely",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain unverifiable-step` prints it.
const DOC: &str = r#"
## What it does
Finds an `exec` step with no `verify` line. A step that is itself a check
is not one: a step of `verify` lines alone (no kind line) is done when its
checks pass, so it can always be resumed.

## Why it matters
cutover resumes after a crash by checking each step against the live world.
A command with no verification cannot be checked: after a crash mid-step the
engine cannot tell whether it ran, so it can neither skip it safely nor know
that running it again is harmless.

## Example
```
step restart after switch
  exec on web-new "systemctl restart nginx"
```

## How to fix
Add a command that exits 0 once the step has taken effect:
```
step restart after switch
  exec on web-new "systemctl restart nginx"
  verify exec on web-new "systemctl is-active nginx"
```
A command that only reads state, and so has nothing to verify after it, is
a check: write it as the step's only `verify` line, with no kind line.
```
step no-stale-hosts after switch
  verify exec on web-new "! grep -q 127.0.0.10 /etc/hosts"
```
"#;

fn check(ctx: &Context, out: &mut Findings) {
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
                    "add a `verify exec \"…\"` line that exits 0 once `{}` has taken effect; a command that only checks is written as `verify exec \"…\"` alone, with no kind line",
                    command.chars().take(40).collect::<String>()
                ));
        }
    }
}
