//! The plan as an SVG Gantt chart: one bar per step (`<rect class="bar">`
//! with `data-step`) on a time axis from the earliest step to the window's
//! end, the critical path in red, the window shaded, and the TTL wait before
//! a DNS switch drawn as its own hatched segment (`class="ttl-wait"`).

use super::axis::Axis;
use super::escape;
use super::{critical_path_text, fit_text, offset_cell};
use crate::units_fmt;
use crate::{Plan, Provenance};
use std::fmt::Write;

const WIDTH: f64 = 1400.0;
const LABEL_WIDTH: f64 = 250.0;
const RIGHT_MARGIN: f64 = 150.0;
/// Where the rows start below a header of one line each (title, window,
/// critical path); each wrapped line more moves them down.
const TOP: f64 = 118.0;
/// Characters of the title (20 px bold) and of the summary lines (13 px)
/// that fit across the chart.
const TITLE_CHARS: usize = 110;
const LINE_CHARS: usize = 175;
const ROW: f64 = 28.0;
/// Characters of a step's name (13 px) that fit beside its kind; a longer
/// name wraps, and each line more makes its row this much taller.
const NAME_CHARS: usize = 22;
const NAME_LINE: f64 = 15.0;
const BAR: f64 = 16.0;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";

pub fn svg(plan: &Plan) -> String {
    let title = match &plan.title {
        Some(t) => format!("{} — {t}", plan.runbook),
        None => plan.runbook.clone(),
    };
    let title_lines = super::text::wrap(&title, TITLE_CHARS, 0);
    let path_lines = super::text::wrap(
        &format!("Critical path: {}", critical_path_text(plan, " → ")),
        LINE_CHARS,
        2,
    );
    let extra = (title_lines.len() - 1) as f64 * 24.0 + (path_lines.len() - 1) as f64 * 18.0;
    let top = TOP + extra;
    let axis = Axis::new(plan);
    let chart = WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
    let x = |t: i64| LABEL_WIDTH + axis.x(t) * chart;
    let steps = plan.chronological();
    // Each row's name lines, top and height.
    let names: Vec<Vec<String>> = steps.iter().map(|s| wrap_name(&s.name)).collect();
    let heights: Vec<f64> = names
        .iter()
        .map(|lines| ROW + (lines.len().max(1) - 1) as f64 * NAME_LINE)
        .collect();
    let tops: Vec<f64> = heights
        .iter()
        .scan(top, |y, h| {
            let row = *y;
            *y += h;
            Some(row)
        })
        .collect();
    let rows_height: f64 = heights.iter().sum();
    let height = top + rows_height + 80.0;
    let bottom = top + rows_height;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" font-size="13">"#
    );
    let _ = writeln!(
        out,
        r##"<defs><pattern id="ttl-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fdf0c8"/><line x1="0" y1="0" x2="0" y2="6" stroke="#d9a300" stroke-width="3"/></pattern><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#d62839"/></marker></defs>"##
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );

    // Title and summary, wrapped to the canvas.
    for (i, line) in title_lines.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="16" y="{}" font-size="20" font-weight="bold" fill="#1a1a1a">{}</text>"##,
            30 + i * 24,
            escape::html(line)
        );
    }
    let below_title = (title_lines.len() - 1) as f64 * 24.0;
    let window = match plan.window {
        Some(w) => format!(
            "Window {} for {} · plan ends {} · {}",
            units_fmt::utc(w.start),
            units_fmt::duration_ms(w.length),
            offset_cell(plan.end, plan.end_at_least),
            fit_text(plan)
        ),
        None => format!(
            "Plan ends {} · {}",
            offset_cell(plan.end, plan.end_at_least),
            fit_text(plan)
        ),
    };
    let overflow = plan.window.is_some_and(|w| w.left < 0);
    let _ = writeln!(
        out,
        r##"<text x="16" y="{:.1}" fill="{}">{}</text>"##,
        54.0 + below_title,
        if overflow { "#b00020" } else { "#333333" },
        escape::html(&window)
    );
    for (i, line) in path_lines.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="16" y="{:.1}" fill="#333333" xml:space="preserve">{}</text>"##,
            74.0 + below_title + i as f64 * 18.0,
            escape::html(line)
        );
    }

    // Window shading, overflow and grid.
    if let Some(w) = plan.window {
        let (a, b) = (x(0), x(w.length));
        let _ = writeln!(
            out,
            r##"<rect class="window" x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#e6f0fa"/>"##,
            top - 8.0,
            (b - a).max(1.0),
            rows_height + 8.0
        );
        if plan.end > w.length {
            let c = x(plan.end);
            let _ = writeln!(
                out,
                r##"<rect class="overflow" x="{b:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#fde2e2"/>"##,
                top - 8.0,
                (c - b).max(1.0),
                rows_height + 8.0
            );
        }
    }
    for i in (1..steps.len()).step_by(2) {
        let _ = writeln!(
            out,
            r##"<rect x="0" y="{:.1}" width="{LABEL_WIDTH}" height="{:.1}" fill="#f5f5f5"/>"##,
            tops[i], heights[i]
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LABEL_WIDTH}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888888"/>"##,
        top - 10.0,
        LABEL_WIDTH + chart,
        top - 10.0
    );
    let mut last_label_end = f64::MIN;
    for (t, label) in axis.ticks(12) {
        let tx = x(t);
        let _ = writeln!(
            out,
            r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{bottom:.1}" stroke="#d0d0d0" stroke-dasharray="2,3"/>"##,
            top - 14.0
        );
        let half = label.chars().count() as f64 * 3.6;
        if tx - half > last_label_end + 6.0 {
            let _ = writeln!(
                out,
                r##"<text x="{tx:.1}" y="{:.1}" text-anchor="middle" font-size="12" fill="#555555">{}</text>"##,
                top - 18.0,
                escape::html(&label)
            );
            last_label_end = tx + half;
        }
    }
    for b in &axis.breaks {
        let bx = LABEL_WIDTH + b * chart;
        let _ = writeln!(
            out,
            r##"<path d="M{:.1},{:.1} l4,-6 l4,12 l4,-6" fill="none" stroke="#888888" stroke-width="1.5"/>"##,
            bx - 6.0,
            top - 10.0
        );
    }
    for (a, b) in &axis.compressed {
        let cx = LABEL_WIDTH + (a + b) / 2.0 * chart;
        let _ = writeln!(
            out,
            r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="11" font-style="italic" fill="#999999">time compressed</text>"##,
            bottom + 30.0
        );
    }
    if let Some(w) = plan.window {
        for (t, label) in [(0, "T0"), (w.length, "window end")] {
            let lx = x(t);
            let _ = writeln!(
                out,
                r##"<line x1="{lx:.1}" y1="{:.1}" x2="{lx:.1}" y2="{bottom:.1}" stroke="#2f6db5" stroke-width="1.5"/>"##,
                top - 8.0
            );
            let _ = writeln!(
                out,
                r##"<text x="{lx:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#2f6db5">{label}</text>"##,
                bottom + 16.0
            );
        }
    }

    // One row per step.
    for (i, s) in steps.iter().enumerate() {
        let (y, row) = (tops[i], heights[i]);
        let mid = y + row / 2.0;
        let weight = if s.critical { "bold" } else { "normal" };
        // The name in full, wrapped to lines centred on the row.
        let lines = &names[i];
        let first = mid + 4.5 - (lines.len() - 1) as f64 * NAME_LINE / 2.0;
        let _ = write!(
            out,
            r##"<text class="name" x="16" y="{first:.1}" font-weight="{weight}" fill="{}">"##,
            if s.critical { "#b00020" } else { "#1a1a1a" },
        );
        for (k, line) in lines.iter().enumerate() {
            let dy = if k == 0 { 0.0 } else { NAME_LINE };
            let _ = write!(
                out,
                r#"<tspan x="16" dy="{dy}">{}</tspan>"#,
                escape::html(line)
            );
        }
        let _ = writeln!(out, "</text>");
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#777777">{}</text>"##,
            LABEL_WIDTH - 10.0,
            mid + 4.0,
            s.kind
        );
        if let Some(wait) = &s.ttl_wait {
            let (a, b) = (x(wait.start), x(wait.end));
            let _ = writeln!(
                out,
                r##"<rect class="ttl-wait" data-step="{}" x="{a:.1}" y="{:.1}" width="{:.1}" height="{BAR}" fill="url(#ttl-hatch)" stroke="#d9a300"><title>TTL wait {}: {}</title></rect>"##,
                escape::html(&s.name),
                mid - BAR / 2.0,
                (b - a).max(2.0),
                units_fmt::duration_ms(wait.end - wait.start),
                escape::html(&wait.basis)
            );
        }
        let (a, b) = (x(s.act_start), x(s.end));
        let width = (b - a).max(3.0);
        let (fill, stroke) = match (s.critical, s.duration.provenance) {
            (_, Provenance::Unknown) => {
                ("#ffffff", r##" stroke="#666666" stroke-dasharray="3,2""##)
            }
            (true, _) => ("#d62839", ""),
            (false, Provenance::Guess) => ("#8fb3d9", ""),
            (false, _) => ("#3f77b5", ""),
        };
        let class = if s.critical { "bar critical" } else { "bar" };
        let _ = writeln!(
            out,
            r##"<rect class="{class}" data-step="{}" data-source="{}" x="{a:.1}" y="{:.1}" width="{width:.1}" height="{BAR}" rx="2" fill="{fill}"{stroke}><title>{}: {} ({}) — {}</title></rect>"##,
            escape::html(&s.name),
            s.duration.provenance.as_str(),
            mid - BAR / 2.0,
            escape::html(&s.name),
            s.duration
                .ms
                .map_or("unknown".to_string(), units_fmt::duration_ms),
            s.duration.provenance.as_str(),
            escape::html(&s.duration.basis)
        );
        if let Some(at) = s.at {
            // The declared `at`: a diamond where the step may start.
            let ax = x(at);
            let _ = writeln!(
                out,
                r##"<path class="at" data-step="{}" d="M{ax:.1},{:.1} l4,5 l-4,5 l-4,-5 z" fill="#1a1a1a"><title>{} at {}</title></path>"##,
                escape::html(&s.name),
                mid - BAR / 2.0 - 6.0,
                escape::html(&s.name),
                units_fmt::offset_ms(at)
            );
        }
        let mut label = match s.duration.ms {
            Some(d) => format!(
                "{} {}",
                units_fmt::duration_ms(d),
                s.duration.provenance.as_str()
            ),
            None => "? unknown".to_string(),
        };
        if let Some(wait) = &s.ttl_wait {
            label.push_str(&format!(
                " after a {} TTL wait",
                units_fmt::duration_ms(wait.end - wait.start)
            ));
        }
        // The findings that point into this step.
        let findings: Vec<&cutover_lang::Diagnostic> = plan
            .diagnostics
            .iter()
            .filter(|d| {
                d.labels.first().is_some_and(|l| {
                    l.span.file == s.span.file
                        && l.span.start >= s.span.start
                        && l.span.start < s.span.end.max(s.span.start + 1)
                })
            })
            .collect();
        for d in &findings {
            let mark = match d.severity {
                cutover_lang::Severity::Error => "✖",
                _ => "⚠",
            };
            label.push_str(&format!("  {mark} {}", d.code));
        }
        if !findings.is_empty() {
            let _ = writeln!(
                out,
                r##"<rect class="finding" data-step="{}" x="{LABEL_WIDTH}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{}" stroke-width="1" stroke-dasharray="4,2"><title>{}</title></rect>"##,
                escape::html(&s.name),
                y + 1.0,
                chart,
                row - 2.0,
                if findings
                    .iter()
                    .any(|d| d.severity == cutover_lang::Severity::Error)
                {
                    "#b00020"
                } else {
                    "#d9a300"
                },
                escape::html(
                    &findings
                        .iter()
                        .map(|d| format!("{}: {}", d.code, d.message))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            );
        }
        let (lx, anchor) = if a + width + 8.0 + label.len() as f64 * 6.5 > WIDTH - 8.0 {
            (s.ttl_wait.as_ref().map_or(a, |w| x(w.start)) - 6.0, "end")
        } else {
            (a + width + 6.0, "start")
        };
        let _ = writeln!(
            out,
            r##"<text x="{lx:.1}" y="{:.1}" text-anchor="{anchor}" font-size="11" fill="#444444">{}</text>"##,
            mid + 4.0,
            escape::html(&label)
        );
    }

    // The critical path's dependencies: from each step's end to the start
    // of the next one on the path.
    let row_of = |id: cutover_lang::StepId| steps.iter().position(|s| s.id == id);
    for pair in plan.critical_path.windows(2) {
        let (Some(i), Some(j)) = (row_of(pair[0]), row_of(pair[1])) else {
            continue;
        };
        let (from, to) = (steps[i], steps[j]);
        let (x1, y1) = (x(from.end), tops[i] + heights[i] / 2.0 + BAR / 2.0);
        let (x2, y2) = (x(to.start), tops[j] + heights[j] / 2.0 - BAR / 2.0);
        let _ = writeln!(
            out,
            r##"<path class="dependency" d="M{x1:.1},{y1:.1} C{x1:.1},{:.1} {x2:.1},{:.1} {x2:.1},{y2:.1}" fill="none" stroke="#d62839" stroke-width="1" marker-end="url(#arrow)"/>"##,
            (y1 + y2) / 2.0,
            (y1 + y2) / 2.0
        );
    }

    // Legend.
    let ly = bottom + 44.0;
    let items: [(&str, &str); 5] = [
        (r##"fill="#d62839""##, "critical path"),
        (r##"fill="#3f77b5""##, "declared / estimated"),
        (r##"fill="#8fb3d9""##, "default (a guess)"),
        (
            r##"fill="url(#ttl-hatch)" stroke="#d9a300""##,
            "TTL wait before a DNS switch",
        ),
        (r##"fill="#e6f0fa""##, "window"),
    ];
    let mut lx = 16.0;
    for (style, label) in items {
        let _ = writeln!(
            out,
            r##"<rect x="{lx:.1}" y="{:.1}" width="22" height="12" {style}/><text x="{:.1}" y="{:.1}" font-size="12" fill="#333333">{label}</text>"##,
            ly - 10.0,
            lx + 28.0,
            ly
        );
        lx += 40.0 + label.len() as f64 * 7.0;
    }
    out.push_str("</svg>\n");
    out
}

/// A step's name in lines of at most [`NAME_CHARS`], broken after a `-`,
/// `_`, `.` or space where it can be, else within a word.
fn wrap_name(name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest: Vec<char> = name.chars().collect();
    while rest.len() > NAME_CHARS {
        let cut = rest[..NAME_CHARS]
            .iter()
            .rposition(|c| matches!(c, '-' | '_' | '.' | ' '))
            .map_or(NAME_CHARS, |p| p + 1);
        lines.push(
            rest[..cut]
                .iter()
                .collect::<String>()
                .trim_end()
                .to_string(),
        );
        rest.drain(..cut);
    }
    lines.push(rest.into_iter().collect());
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap_name;

    #[test]
    fn long_names_wrap_at_separators_and_keep_every_character() {
        assert_eq!(
            wrap_name("final-sync-repository"),
            ["final-sync-repository"]
        );
        assert_eq!(
            wrap_name("switch-www-and-the-wiki-to-the-new-site"),
            ["switch-www-and-the-", "wiki-to-the-new-site"]
        );
        assert_eq!(
            wrap_name("abcdefghijklmnopqrstuvwxyz"),
            ["abcdefghijklmnopqrstuv", "wxyz"]
        );
    }
}
