//! `db-sync-unfrozen`: a replicating `db.sync` whose final verification
//! is not ordered after anything that could stop the writers, so it can
//! pass while the old database still takes writes.

use super::{Context, Findings, Rule};
use cutover_lang::{ActionKind, Severity, StepId};

pub const RULE: Rule = Rule {
    code: "db-sync-unfrozen",
    severity: Severity::Warning,
    summary: "a db.sync to a database server verified with the writers still running",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain db-sync-unfrozen` prints it.
const DOC: &str = r#"
## What it does
Finds a `db.sync postgres` or `db.sync mysql` step without `freeze STEP`
that is not ordered after a `manual` gate or an `exec` step (either of
which could stop the writers).

## Why it matters
The verification of a replicating `db.sync` finishes once the destination
has caught up and both sides compare equal, and then takes replication
down. With the old side still taking writes, every write after that point
is lost to the new database, and the checksums may not even agree.

## Example
```
step sync
  db.sync postgres db-old/wiki user cutover password env:PW -> db-new/wiki user postgres password env:PW2

step switch after sync
  dns.switch example.test db A 10.0.0.5 -> 10.1.0.5
```

## How to fix
Name the gate that stops the writers; the verification waits for it:
```
step sync
  db.sync postgres db-old/wiki ... -> db-new/wiki ... freeze stop-writes

step stop-writes
  manual "put the wiki in read-only mode"
```
or order the `db.sync` after the step that stops them (`after stop-writes`).
"#;

fn check(ctx: &Context, out: &mut Findings) {
    for (i, step) in ctx.runbook.steps.iter().enumerate() {
        let ActionKind::DbReplicate { freeze: None, .. } = &step.action.kind else {
            continue;
        };
        let stopped_before = ctx.runbook.steps.iter().enumerate().any(|(j, other)| {
            matches!(
                other.action.kind,
                ActionKind::Manual { .. } | ActionKind::Exec { .. }
            ) && ctx.is_after(StepId(j), StepId(i))
        });
        if stopped_before {
            continue;
        }
        out.diagnostic(
            &RULE,
            format!(
                "`{}` finishes its verification as soon as the destination has caught up, and nothing before it stops the writers: later writes to the old database would be lost",
                step.name
            ),
            step.action.span,
        )
        .help = Some(
            "add `freeze STEP` naming the gate that stops the writers, or order the step after it"
                .into(),
        );
    }
}
