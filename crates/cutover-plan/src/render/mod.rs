//! Writers for a [`Plan`]: a terminal table with a text Gantt, Markdown for
//! a pull request, JSON with a stable schema (`docs/plan-json.md`) and an SVG
//! Gantt chart. All are pure functions returning text.

mod axis;
mod json;
mod markdown;
mod svg;
mod text;

pub use json::{SCHEMA, json};
pub use markdown::markdown;
pub use svg::svg;
pub use text::text;

use crate::units_fmt;
use crate::{Plan, PlannedStep};
use cutover_lang::{Diagnostic, SourceMap};

/// `T+2h`, or `≥T+2h` when the time depends on an unknown duration.
fn offset_cell(secs: i64, at_least: bool) -> String {
    let t = units_fmt::offset(secs);
    if at_least { format!("≥{t}") } else { t }
}

/// The step's duration, `?` when unknown.
fn duration_cell(step: &PlannedStep) -> String {
    step.duration.secs.map_or_else(|| "?".to_string(), units_fmt::duration)
}

/// `fits, 1h12m left` / `overflows by 2h` / `no window`.
fn fit_text(plan: &Plan) -> String {
    let Some(fit) = plan.window else {
        return "no window declared".to_string();
    };
    let at_least = if plan.end_at_least { "at least " } else { "" };
    if fit.left >= 0 {
        let at_most = if plan.end_at_least { "at most " } else { "" };
        format!("fits, {at_most}{} left", units_fmt::duration(fit.left))
    } else {
        format!("overflows by {at_least}{}", units_fmt::duration(-fit.left))
    }
}

/// `freeze -> final-sync -> switch`.
fn critical_path_text(plan: &Plan, arrow: &str) -> String {
    if plan.critical_path.is_empty() {
        return "(none)".to_string();
    }
    plan.critical_path
        .iter()
        .map(|id| plan.step(*id).name.as_str())
        .collect::<Vec<_>>()
        .join(arrow)
}

/// `3:5` (line:column) of a diagnostic's primary location, with the file
/// name when it is not the main file.
fn location(diagnostic: &Diagnostic, sources: &SourceMap) -> String {
    let Some(span) = diagnostic.primary_span() else {
        return String::new();
    };
    if span.file.0 as usize >= sources.files.len() {
        return String::new();
    }
    let (line, col) = sources.line_col(span);
    if span.file.0 == 0 {
        format!("{line}:{col}")
    } else {
        format!("{}:{line}:{col}", sources.file(span.file).path.display())
    }
}

/// `1 error, 2 warnings`.
fn findings_summary(plan: &Plan) -> String {
    use cutover_lang::Severity;
    let count = |s: Severity| plan.diagnostics.iter().filter(|d| d.severity == s).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(count(Severity::Error), "error"),
        plural(count(Severity::Warning), "warning")
    )
}

/// The plan's time span as one line: window and end.
fn window_line(plan: &Plan) -> String {
    let end = offset_cell(plan.end, plan.end_at_least);
    let end_utc = plan
        .utc(plan.end)
        .map(|t| format!(" ({})", units_fmt::utc(t)))
        .unwrap_or_default();
    match plan.window {
        Some(w) => format!(
            "window {} for {} (T0 .. {}); plan ends {end}{end_utc}: {}",
            units_fmt::utc(w.start),
            units_fmt::duration(w.length),
            units_fmt::offset(w.length),
            fit_text(plan)
        ),
        None => format!("{}; plan ends {end}{end_utc}", fit_text(plan)),
    }
}
