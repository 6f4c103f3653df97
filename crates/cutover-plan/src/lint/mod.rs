//! Lint rules: mistakes a plan can see before the day, each a
//! [`Diagnostic`] with a stable code pointing at the runbook line, and each
//! explained in `docs/lints/<code>.md`.

mod address_change_unchecked;
mod copy_without_precopy;
mod critical_path_over_window;
mod ns_not_verified;
mod rollback_over_window;
mod switch_without_undo;
mod ttl_not_lowered;
mod ttl_not_restored;
mod unverifiable_step;

use crate::Plan;
use crate::estimate::Estimator;
use crate::facts::ProbeFacts;
use crate::graph::Graph;
use cutover_lang::{Diagnostic, Runbook, Severity};

/// A rule's identity, as listed in `docs/lints/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub code: &'static str,
    pub severity: Severity,
    /// One line: what the rule finds.
    pub summary: &'static str,
}

/// Every rule the planner checks.
pub const RULES: &[Rule] = &[
    ttl_not_lowered::RULE,
    ns_not_verified::RULE,
    address_change_unchecked::RULE,
    copy_without_precopy::RULE,
    critical_path_over_window::RULE,
    unverifiable_step::RULE,
    ttl_not_restored::RULE,
    switch_without_undo::RULE,
    rollback_over_window::RULE,
];

/// What a rule may look at.
pub(crate) struct Context<'a> {
    pub runbook: &'a Runbook,
    pub facts: Option<&'a ProbeFacts>,
    pub plan: &'a Plan,
    pub graph: &'a Graph,
    pub estimator: &'a Estimator<'a>,
}

impl Context<'_> {
    /// Whether step `later` is ordered after step `earlier`: it comes
    /// (transitively) after it, or it starts once it has ended.
    pub fn is_after(&self, earlier: cutover_lang::StepId, later: cutover_lang::StepId) -> bool {
        let (e, l) = (self.plan.step(earlier), self.plan.step(later));
        earlier != later && (l.start >= e.end || self.graph.reaches(earlier, later))
    }
}

/// Findings, and what could not be evaluated.
#[derive(Default)]
pub(crate) struct Findings {
    pub diagnostics: Vec<Diagnostic>,
    pub notes: Vec<String>,
}

impl Findings {
    fn diagnostic(
        &mut self,
        rule: &Rule,
        message: impl Into<String>,
        span: cutover_lang::Span,
    ) -> &mut Diagnostic {
        self.diagnostics
            .push(Diagnostic::new(rule.severity, rule.code, message, span));
        self.diagnostics.last_mut().expect("just pushed")
    }
}

pub(crate) fn check(ctx: &Context) -> Findings {
    let mut out = Findings::default();
    ttl_not_lowered::check(ctx, &mut out);
    ns_not_verified::check(ctx, &mut out);
    address_change_unchecked::check(ctx, &mut out);
    copy_without_precopy::check(ctx, &mut out);
    critical_path_over_window::check(ctx, &mut out);
    unverifiable_step::check(ctx, &mut out);
    ttl_not_restored::check(ctx, &mut out);
    switch_without_undo::check(ctx, &mut out);
    rollback_over_window::check(ctx, &mut out);
    out.diagnostics.sort_by_key(|d| {
        let span = d.primary_span().unwrap_or_default();
        (span.file, span.start)
    });
    out
}
