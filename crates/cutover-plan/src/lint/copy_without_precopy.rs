//! `copy-without-precopy`: a large image copy inside the window with no
//! earlier copy of the same image, so the whole image crosses the link while
//! the service is down (the 2015 evacuation).

use super::{Context, Findings, Rule};
use crate::units_fmt::duration_ms as duration;
use cutover_lang::{ActionKind, Severity};

pub const RULE: Rule = Rule {
    code: "copy-without-precopy",
    severity: Severity::Warning,
    summary: "a large image copy in the window with no pre-copy before it",
    doc: DOC,
    check: Some(check),
};

/// The rule's page, as `cutover explain copy-without-precopy` prints it.
const DOC: &str = r#"
## What it does
Finds an `image.copy` inside the window whose full copy over the link between
the two hosts' sites takes 15 minutes or more, and which has no earlier copy
of the same source to the same destination (a pre-copy). The message gives
the estimate: size (declared or probed) over the declared link bandwidth. When
the size is unknown the rule is not evaluated, and the plan says so.

## Why it matters
In the 2015 evacuation, recovery time was dominated by copy time over a
1 Gbit link. A copy made before the window leaves only the changes to send
inside it: the final copy is a delta.

## Example
```
step final-copy after freeze
  image.copy web:/srv/web.img -> web-new:/srv/web.img size 200G
```
with no earlier copy: 200 GB over 1 Gbit/s takes about 27 minutes of the window.

## How to fix
Copy once before the window and keep the step in the window as the delta copy:
```
step precopy at T-1d
  image.copy web:/srv/web.img -> web-new:/srv/web.img size 200G
```
"#;

/// A full copy at least this long counts as large.
pub const LARGE_COPY_MS: i64 = 15 * 60_000;

fn check(ctx: &Context, out: &mut Findings) {
    let window_end = ctx.plan.window.map_or(i64::MAX, |w| w.length);
    for planned in &ctx.plan.steps {
        let step = ctx.runbook.step(planned.id);
        let (ActionKind::ImageCopy { from, .. }, Some(copy)) = (&step.action.kind, &planned.copy)
        else {
            continue;
        };
        if copy.precopy.is_some() || planned.act_start < 0 || planned.act_start >= window_end {
            continue;
        }
        let Some(full) = copy.full.ms else {
            out.notes.push(format!(
                "rule {} not evaluated for `{}`: {}",
                RULE.code, planned.name, copy.full.basis
            ));
            continue;
        };
        if full < LARGE_COPY_MS {
            continue;
        }
        out.diagnostic(
            &RULE,
            format!(
                "`{}` copies {}:{} inside the window with no pre-copy: the whole image crosses the link, an estimated {} ({})",
                planned.name,
                ctx.runbook.host(from.host).name,
                from.path,
                duration(full),
                copy.full.basis
            ),
            step.action.span,
        )
        .help = Some(format!(
            "copy it once before the window (e.g. `at T-{}`) and keep this step as the final delta copy",
            duration((full * 2).max(86_400_000))
        ));
    }
}
