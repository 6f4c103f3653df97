//! The checks that need the whole runbook, run once every item is built:
//! the `after` graph has no cycle, a freeze step does not wait for its own
//! db.sync, no command is handed a secret's variable, and times relative to
//! T0 have a window.

use super::Resolver;
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::lexer::TokenKind;
use crate::model::*;
use crate::source::Span;
use std::collections::HashSet;

impl<'a> Resolver<'a> {
    /// Refuses times relative to T0 in a runbook without a window.
    pub(super) fn check_relative_times(&mut self, window: Option<&Window>) {
        if window.is_some() {
            return;
        }
        for &span in &self.relative_times {
            self.diags.push(
                Diagnostic::error(Code::NoWindow, "a time relative to T0 needs a window", span)
                    .with_help(
                        "declare the window under `runbook`: `window 2013-03-14 17:00 UTC for 6h`",
                    ),
            );
        }
    }

    /// Refuses a `db.sync ... freeze STEP` whose freeze step waits (by
    /// `after`) for the db.sync itself, which would never finish, a
    /// `db.unfollow STEP` whose STEP opens no fallback window or that
    /// does not come after it, and an
    /// `exec ... env NAME` whose NAME holds a database password.
    pub(super) fn check_db_sync(&mut self, steps: &[Step]) {
        for (i, step) in steps.iter().enumerate() {
            let ActionKind::DbReplicate {
                freeze: Some(gate), ..
            } = &step.action.kind
            else {
                continue;
            };
            if *gate == StepId(i) || waits_for(steps, *gate, StepId(i)) {
                self.diags.push(
                    Diagnostic::error(
                        Code::FreezeCycle,
                        format!(
                            "`{}` waits for this db.sync, so the db.sync would wait for it forever",
                            steps[gate.0].name
                        ),
                        step.action.span,
                    )
                    .with_label(steps[gate.0].span, "the freeze step")
                    .with_help("the freeze step runs while the db.sync replicates: remove the db.sync from its `after`"),
                );
            }
        }
        for (i, step) in steps.iter().enumerate() {
            let ActionKind::DbUnfollow { step: target } = &step.action.kind else {
                continue;
            };
            let sync = &steps[target.0];
            let replicates_back = matches!(sync.action.kind, ActionKind::DbReplicate { .. })
                && sync
                    .undo
                    .as_ref()
                    .is_some_and(|u| matches!(u.kind, ActionKind::DbReplicate { .. }));
            let refusal = if !replicates_back {
                Some((
                    format!(
                        "`{}` is not a db.sync postgres|mysql whose `undo` replicates back, so it opens no fallback window to end",
                        sync.name
                    ),
                    "name a `db.sync postgres|mysql` step with an `undo db.sync` from its destination to its source".to_owned(),
                ))
            } else if !waits_for(steps, StepId(i), *target) {
                Some((
                    format!(
                        "`{}` does not come after `{}`, whose fallback window it ends",
                        step.name, sync.name
                    ),
                    format!("add `after {}` to step `{}`", sync.name, step.name),
                ))
            } else {
                None
            };
            if let Some((message, help)) = refusal {
                self.diags.push(
                    Diagnostic::error(Code::NoFallback, message, step.action.span)
                        .with_label(sync.span, "this step")
                        .with_help(help),
                );
            }
        }
        for (name, span) in &self.exec_env {
            let holder = steps.iter().find(|step| {
                let ActionKind::DbReplicate { from, to, .. } = &step.action.kind else {
                    return false;
                };
                [from, to]
                    .iter()
                    .any(|s| matches!(&s.password, Some(SecretRef::Env(var)) if var == name))
            });
            if let Some(step) = holder {
                self.diags.push(
                    Diagnostic::error(
                        Code::SecretEnv,
                        format!(
                            "`{name}` holds a database password of step `{}`; a secret is never handed to a command",
                            step.name
                        ),
                        *span,
                    )
                    .with_label(step.action.span, "the db.sync reads a password from it here")
                    .with_help(format!("remove `{name}` from `env`; db.sync uses the password itself")),
                );
            }
        }
    }

    /// Refuses an `exec ... env NAME` whose NAME is the variable a key's
    /// secret is read from: a secret is never handed to a command.
    pub(super) fn check_exec_env(&mut self, keys: &[Key]) {
        for (name, span) in std::mem::take(&mut self.exec_env) {
            let holder = keys
                .iter()
                .find(|k| matches!(&k.secret, SecretRef::Env(var) if *var == name));
            if let Some(key) = holder {
                self.diags.push(
                    Diagnostic::error(
                        Code::SecretEnv,
                        format!(
                            "`{name}` holds the secret of key `{}`; a secret is never handed to a command",
                            key.name
                        ),
                        span,
                    )
                    .with_label(key.span, "the key reads its secret from it here")
                    .with_help(format!(
                        "remove `{name}` from `env`; steps that need the key use it themselves (`dns.*`)"
                    )),
                );
            }
        }
    }

    /// Refuses steps that wait for each other (`after`) in a cycle.
    pub(super) fn check_cycles(&mut self, steps: &[Step]) {
        // Colours: 0 unvisited, 1 on the current path, 2 done.
        let mut colour = vec![0u8; steps.len()];
        for root in 0..steps.len() {
            if colour[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            colour[root] = 1;
            while let Some(&(node, edge)) = stack.last() {
                let Some(next) = steps[node].after.get(edge) else {
                    colour[node] = 2;
                    stack.pop();
                    continue;
                };
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match colour[next.0] {
                    0 => {
                        colour[next.0] = 1;
                        stack.push((next.0, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(s, _)| s == next.0).unwrap_or(0);
                        let mut path: Vec<&str> = stack[from..]
                            .iter()
                            .map(|&(s, _)| steps[s].name.as_str())
                            .collect();
                        path.push(&steps[next.0].name);
                        let span = self
                            .after_span(node, &steps[next.0].name)
                            .unwrap_or(steps[node].span);
                        self.diags.push(
                            Diagnostic::error(
                                Code::AfterCycle,
                                format!("steps wait for each other in a cycle: {}", path.join(" -> ")),
                                span,
                            )
                            .with_help("each step in the cycle waits for the next; remove one of these `after` names"),
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    /// Where step `index` names `target` in its `after` list.
    fn after_span(&self, index: usize, target: &str) -> Option<Span> {
        let declared = &self.steps[index];
        let header = declared.header();
        let after = header
            .tokens
            .iter()
            .position(|t| &declared.text[t.start..t.end] == "after")?;
        header.tokens[after..]
            .iter()
            .find(|t| t.kind == TokenKind::Word && &declared.text[t.start..t.end] == target)
            .map(|t| Span::new(declared.file, t.start, t.end))
    }
}
/// Whether step `from` waits, directly or through others, for `target`.
/// Whether step `from` waits, directly or through others, for `target`.
fn waits_for(steps: &[Step], from: StepId, target: StepId) -> bool {
    let mut seen = HashSet::new();
    let mut todo = vec![from];
    while let Some(step) = todo.pop() {
        for &before in &steps[step.0].after {
            if before == target {
                return true;
            }
            if seen.insert(before) {
                todo.push(before);
            }
        }
    }
    false
}
