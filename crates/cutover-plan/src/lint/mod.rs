//! Lint rules: mistakes a plan can see before the day, each a
//! [`Diagnostic`] with a stable code pointing at the runbook line.
//!
//! [`RULES`] is the one registry (as ruff keeps its rules): each rule's
//! module holds its code, severity, summary, its page (what `cutover explain
//! CODE` prints) and its check, and [`check`] runs the checks of that table.

mod address_change_unchecked;
mod copy_without_precopy;
mod critical_path_over_window;
mod db_sync_unfrozen;
mod ns_not_verified;
mod probe_failed;
mod rollback_over_window;
mod step_after_window;
mod switch_without_undo;
mod ttl_not_lowered;
mod ttl_not_restored;
mod unverifiable_step;

use crate::Plan;
use crate::estimate::Estimator;
use crate::facts::ProbeFacts;
use crate::graph::Graph;
use cutover_lang::{Diagnostic, Runbook, Severity};

/// A rule: its identity, its page and its check.
#[derive(Clone, Copy)]
pub struct Rule {
    pub code: &'static str,
    pub severity: Severity,
    /// One line: what the rule finds.
    pub summary: &'static str,
    /// The rule's page in Markdown, without its title: `## What it does`,
    /// `## Why it matters`, `## Example`, `## How to fix`.
    pub doc: &'static str,
    /// The check; `None` for findings the planner raises itself.
    check: Option<fn(&Context, &mut Findings)>,
}

impl Rule {
    /// The rule's page as `cutover explain` prints it: a title line with
    /// the code and severity, then the page.
    pub fn page(&self) -> String {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        format!("# {} ({severity})\n{}", self.code, self.doc)
    }

    /// Whether the planner checks this rule (as opposed to raising it
    /// itself).
    pub fn is_checked(&self) -> bool {
        self.check.is_some()
    }
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("code", &self.code)
            .field("severity", &self.severity)
            .finish_non_exhaustive()
    }
}

/// The rule with this code.
pub fn rule(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code == code)
}

/// Every rule of the planner, in the order their checks run.
pub const RULES: &[Rule] = &[
    ttl_not_lowered::RULE,
    ns_not_verified::RULE,
    probe_failed::RULE,
    address_change_unchecked::RULE,
    copy_without_precopy::RULE,
    critical_path_over_window::RULE,
    unverifiable_step::RULE,
    ttl_not_restored::RULE,
    switch_without_undo::RULE,
    rollback_over_window::RULE,
    step_after_window::RULE,
    db_sync_unfrozen::RULE,
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

/// Runs every rule's check.
pub(crate) fn check(ctx: &Context) -> Findings {
    let mut out = Findings::default();
    for check in RULES.iter().filter_map(|r| r.check) {
        check(ctx, &mut out);
    }
    out.diagnostics.sort_by_key(|d| {
        let span = d.primary_span().unwrap_or_default();
        (span.file, span.start)
    });
    out
}
