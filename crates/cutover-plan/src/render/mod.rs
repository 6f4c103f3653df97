//! Writers for a [`Plan`]: a terminal table with a text Gantt, Markdown for
//! a pull request, JSON with a stable schema (`docs/plan-json.md`) and an SVG
//! Gantt chart. All are pure functions returning text.

mod axis;
pub mod escape;
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
fn offset_cell(ms: i64, at_least: bool) -> String {
    let t = units_fmt::offset_ms(ms);
    if at_least { format!("≥{t}") } else { t }
}

/// The step's duration, `?` when unknown.
fn duration_cell(step: &PlannedStep) -> String {
    step.duration
        .ms
        .map_or_else(|| "?".to_string(), units_fmt::duration_ms)
}

/// `fits, 1h12m left` / `overflows by 2h` / `no window`.
fn fit_text(plan: &Plan) -> String {
    let Some(fit) = plan.window else {
        return "no window declared".to_string();
    };
    let at_least = if plan.end_at_least { "at least " } else { "" };
    if fit.left >= 0 {
        let at_most = if plan.end_at_least { "at most " } else { "" };
        format!("fits, {at_most}{} left", units_fmt::duration_ms(fit.left))
    } else {
        format!(
            "overflows by {at_least}{}",
            units_fmt::duration_ms(-fit.left)
        )
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

/// Line starts of every source file, so that many diagnostics find their
/// line without rescanning the file each time.
pub(crate) struct LineIndex<'a> {
    sources: &'a SourceMap,
    starts: Vec<Vec<usize>>,
}

impl<'a> LineIndex<'a> {
    pub fn new(sources: &'a SourceMap) -> Self {
        let starts = sources
            .files
            .iter()
            .map(|f| {
                std::iter::once(0)
                    .chain(f.text.match_indices('\n').map(|(i, _)| i + 1))
                    .collect()
            })
            .collect();
        LineIndex { sources, starts }
    }

    /// File path, 1-based line and column (in characters) of a span's start.
    pub fn locate(&self, span: cutover_lang::Span) -> Option<(String, usize, usize)> {
        let file = self.sources.files.get(span.file.0 as usize)?;
        let starts = &self.starts[span.file.0 as usize];
        let offset = file
            .text
            .floor_char_boundary(span.start.min(file.text.len()));
        let line = starts.partition_point(|&s| s <= offset);
        let line_start = starts[line - 1];
        let column = file.text[line_start..offset].chars().count() + 1;
        Some((file.path.display().to_string(), line, column))
    }
}

/// `3:5` (line:column) of a diagnostic's primary location, with the file
/// name when it is not the main file.
fn location(diagnostic: &Diagnostic, lines: &LineIndex) -> String {
    let Some(span) = diagnostic.primary_span() else {
        return String::new();
    };
    let Some((path, line, col)) = lines.locate(span) else {
        return String::new();
    };
    if span.file.0 == 0 {
        format!("{line}:{col}")
    } else {
        format!("{path}:{line}:{col}")
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
            units_fmt::duration_ms(w.length),
            units_fmt::offset_ms(w.length),
            fit_text(plan)
        ),
        None => format!("{}; plan ends {end}{end_utc}", fit_text(plan)),
    }
}
