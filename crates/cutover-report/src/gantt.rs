//! The planned-vs-actual Gantt chart as inline SVG: per step a thin
//! outlined bar for the plan and a solid bar, coloured by status, for what
//! happened; the axis is in offsets from T0; T0 and (live) now are marked.

use crate::model::Report;
use chrono::{DateTime, Utc};
use cutover_plan::render::escape::html as escape;
use cutover_plan::units_fmt;
use cutover_store::StepStatus;
use std::fmt::Write;

const LABEL_W: f64 = 170.0;
const CHART_W: f64 = 640.0;
const ROW_H: f64 = 24.0;
const TOP: f64 = 28.0;

pub fn status_colour(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Done => "#2e7d32",
        StepStatus::Running => "#1565c0",
        StepStatus::Failed => "#c62828",
        StepStatus::Skipped => "#9e9e9e",
        StepStatus::Undone => "#6a1b9a",
        StepStatus::Pending => "#bdbdbd",
    }
}

/// A tick spacing giving at most 8 ticks over `span` seconds.
fn tick(span: i64) -> i64 {
    const STEPS: [i64; 18] = [
        1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172_800,
        604_800, 2_592_000,
    ];
    STEPS
        .into_iter()
        .find(|s| span / s <= 8)
        .unwrap_or(span.max(1))
}

/// The chart. `now`, when given (the live dashboard), draws running steps
/// up to now and marks it.
pub fn svg(report: &Report, now: Option<DateTime<Utc>>) -> String {
    let now_s = now.map(|n| (n - report.run.t0).num_seconds());
    let mut out = String::new();
    let frame = body(&mut out, report, now_s);
    if let (Some(frame), Some(n)) = (frame, now_s) {
        now_line(&mut out, &frame, n);
    }
    out.push_str("</svg>");
    out
}

/// The scale of a chart: the seconds from T0 it spans, and its height.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    lo: i64,
    hi: i64,
    height: f64,
}

impl Frame {
    fn x(&self, s: i64) -> f64 {
        LABEL_W + (s - self.lo) as f64 / (self.hi - self.lo) as f64 * CHART_W
    }
}

/// A chart for the live dashboard, drawn once for a report: when no step
/// is running nothing in it moves with the clock but the "now" line, so
/// only that line is drawn per answer; otherwise (running bars grow up to
/// now) the whole chart is.
#[derive(Debug)]
pub(crate) enum LiveChart {
    /// The chart up to its "now" line, already as the text of a JSON
    /// string without the closing quote.
    Still {
        json_head: String,
        frame: Option<Frame>,
        t0: DateTime<Utc>,
    },
    Moving,
}

impl LiveChart {
    pub(crate) fn new(report: &Report) -> LiveChart {
        if report.steps.iter().any(|s| s.status == StepStatus::Running) {
            return LiveChart::Moving;
        }
        let mut head = String::new();
        let frame = body(&mut head, report, None);
        let mut json_head = serde_json::to_string(&head).unwrap_or_else(|_| "\"".to_owned());
        json_head.pop();
        LiveChart::Still {
            json_head,
            frame,
            t0: report.run.t0,
        }
    }

    /// The chart at `now` as a JSON string; `report` is the one it was
    /// made of.
    pub(crate) fn json_at(&self, report: &Report, now: DateTime<Utc>) -> String {
        match self {
            LiveChart::Still {
                json_head,
                frame,
                t0,
            } => {
                let mut tail = String::new();
                if let Some(frame) = frame {
                    now_line(&mut tail, frame, (now - *t0).num_seconds());
                }
                tail.push_str("</svg>");
                let tail = serde_json::to_string(&tail).unwrap_or_default();
                let mut json = String::with_capacity(json_head.len() + tail.len());
                json.push_str(json_head);
                json.push_str(tail.get(1..).unwrap_or("\""));
                json
            }
            LiveChart::Moving => serde_json::to_string(&svg(report, Some(now))).unwrap_or_default(),
        }
    }
}

/// Writes the chart but its "now" line and its closing tag; returns its
/// frame (None when no step has a time yet).
fn body(out: &mut String, report: &Report, now_s: Option<i64>) -> Option<Frame> {
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    for s in &report.steps {
        for t in [
            s.planned.span.start,
            s.planned.span.end,
            s.actual.start,
            s.actual.end,
        ]
        .into_iter()
        .flatten()
        {
            lo = lo.min(t.offset_s);
            hi = hi.max(t.offset_s);
        }
        if s.status == StepStatus::Running
            && let Some(n) = now_s
        {
            hi = hi.max(n);
        }
    }
    let height = TOP + ROW_H * report.steps.len() as f64 + 10.0;
    let width = LABEL_W + CHART_W + 20.0;
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="gantt" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" font-size="11" role="img" aria-label="planned vs actual timeline">"#
    );
    if lo > hi {
        let _ = write!(
            out,
            r#"<text x="10" y="20">No step has a planned or actual time yet.</text>"#
        );
        return None;
    }
    if hi == lo {
        hi = lo + 60;
    }
    let frame = Frame { lo, hi, height };
    let span = hi - lo;
    let x = |s: i64| frame.x(s);
    let step = tick(span);
    let first = lo.div_euclid(step) * step;
    let mut t = first;
    while t <= hi {
        if t >= lo {
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#e0e0e0"/><text x="{x:.1}" y="{ty}" text-anchor="middle" fill="#555">{label}</text>"##,
                x = x(t),
                bottom = height - 10.0,
                ty = TOP - 8.0,
                label = escape(&units_fmt::offset(t)),
            );
        }
        t += step;
    }
    if (lo..=hi).contains(&0) {
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#555" stroke-dasharray="4 3"/>"##,
            x = x(0),
            bottom = height - 10.0
        );
    }
    for (i, s) in report.steps.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let _ = write!(
            out,
            r##"<g class="row" data-step="{name}"><text x="4" y="{ty:.1}" fill="#222">{name}</text>"##,
            name = escape(&s.name),
            ty = y + ROW_H * 0.65
        );
        if let Some(start) = s.planned.span.start {
            let end = s.planned.span.end.map_or(start.offset_s, |e| e.offset_s);
            let w = (x(end) - x(start.offset_s)).max(2.0);
            let _ = write!(
                out,
                r##"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="6" fill="#eceff1" stroke="#78909c"><title>planned {}</title></rect>"##,
                x(start.offset_s),
                y + 4.0,
                escape(&units_fmt::offset(start.offset_s)),
            );
        }
        if let Some(start) = s.actual.start {
            let end = match (s.actual.end, s.status, now_s) {
                (Some(e), _, _) => e.offset_s,
                (None, StepStatus::Running, Some(n)) => n,
                _ => start.offset_s,
            };
            let w = (x(end) - x(start.offset_s)).max(3.0);
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="10" rx="2" fill="{}"><title>{} {}</title></rect>"#,
                x(start.offset_s),
                y + 11.0,
                status_colour(s.status),
                s.status.as_str(),
                escape(&units_fmt::offset(start.offset_s)),
            );
        }
        out.push_str("</g>");
    }
    Some(frame)
}

/// The "now" line, when now is within the chart.
fn now_line(out: &mut String, frame: &Frame, n: i64) {
    if (frame.lo..=frame.hi).contains(&n) {
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#d84315" stroke-width="1.5"/><text x="{x:.1}" y="{by}" fill="#d84315" text-anchor="middle">now</text>"##,
            x = frame.x(n),
            bottom = frame.height - 10.0,
            by = frame.height - 1.0,
        );
    }
}
