//! The HTML export: one self-contained page (styles inline, no scripts,
//! nothing fetched) with the Gantt chart, for a browser or an e-mail.

use crate::facts::{Fact, facts};
use crate::gantt::{status_colour, svg};
use crate::model::{Report, StepReport};
use crate::text;
use cutover_plan::render::escape::html as escape;
use std::fmt::Write;

/// The styles shared with the dashboard.
pub const STYLE: &str = include_str!("../assets/style.css");

fn facts_html(data: &serde_json::Value) -> String {
    let mut out = String::new();
    let mut lines = String::new();
    for fact in facts(data) {
        match fact {
            Fact::Line { key, value } => {
                let _ = write!(
                    lines,
                    "<li><span class=\"key\">{}</span> {}</li>",
                    escape(&key),
                    escape(&value)
                );
            }
            Fact::Table {
                key,
                columns,
                rows,
                more,
            } => {
                let _ = write!(
                    out,
                    "<div class=\"facts-table\"><div class=\"key\">{}</div><table><tr>",
                    escape(&key)
                );
                for c in &columns {
                    let _ = write!(out, "<th>{}</th>", escape(c));
                }
                out.push_str("</tr>");
                for row in rows {
                    out.push_str("<tr>");
                    for c in row {
                        let _ = write!(out, "<td>{}</td>", escape(&c));
                    }
                    out.push_str("</tr>");
                }
                out.push_str("</table>");
                if more > 0 {
                    let _ = write!(
                        out,
                        "<p class=\"muted\">{more} more rows in the JSON export</p>"
                    );
                }
                out.push_str("</div>");
            }
        }
    }
    if lines.is_empty() {
        out
    } else {
        format!("<ul class=\"facts\">{lines}</ul>{out}")
    }
}

/// A timeline cell of a figure and, below it and smaller, what it is
/// (`T+3m11s` over `2026-03-14 17:03:11`, `6s` over `estimated`): the
/// table then fits a 1280 px screen.
fn two_lines((first, second): &(String, String)) -> String {
    if second.is_empty() {
        escape(first)
    } else {
        format!(
            "{}<br><small class=\"muted\">{}</small>",
            escape(first),
            escape(second)
        )
    }
}

/// A step's state as the page says it: a manual gate waiting for its
/// confirmation says so (as `cutover status` does), with its instructions.
fn status_text(step: &StepReport) -> String {
    match &step.waiting_for_confirmation {
        Some(text) => format!("waiting for confirmation: {text}"),
        None => step.status.as_str().to_owned(),
    }
}

pub fn html(report: &Report) -> String {
    let run = &report.run;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Cutover report: {name}</title><style>{STYLE}</style></head><body><main>\
         <h1>Cutover report: {name}</h1>",
        name = escape(&run.runbook)
    );
    if let Some(title) = &run.title {
        let _ = write!(out, "<p class=\"title\">{}</p>", escape(title));
    }
    out.push_str("<table class=\"header\">");
    for (label, value) in text::header(report) {
        let _ = write!(out, "<tr><th>{label}</th><td>{}</td></tr>", escape(&value));
    }
    out.push_str("</table>");

    if report.sessions.len() > 1 || report.sessions.iter().any(|s| s.end.is_crash()) {
        out.push_str("<h2>Crashes and resumes</h2><ol class=\"sessions\">");
        for s in &report.sessions {
            let class = if s.end.is_crash() { "crash" } else { "" };
            let _ = write!(
                out,
                "<li class=\"{class}\">Session {}: started {} UTC ({}), last record {} UTC — <strong>{}</strong>",
                s.number,
                text::utc(s.started_at.utc),
                escape(&text::offset(s.started_at)),
                text::utc(s.last_record_at.utc),
                escape(s.end.label())
            );
            if let Some(took) = &s.took_over {
                let _ = write!(out, "; {}", escape(took));
            }
            if !s.caught_mid_flight.is_empty() {
                let caught: Vec<String> = s
                    .caught_mid_flight
                    .iter()
                    .map(|c| match c.phase {
                        Some(p) => format!("<code>{}</code> (in {})", escape(&c.step), p.as_str()),
                        None => format!("<code>{}</code>", escape(&c.step)),
                    })
                    .collect();
                let _ = write!(out, "; caught mid-flight: {}", caught.join(", "));
            }
            out.push_str("</li>");
        }
        out.push_str("</ol>");
    }

    let _ = write!(
        out,
        "<h2>Timeline: planned vs actual</h2><div class=\"gantt-box\">{}</div>\
         <p class=\"legend\"><span class=\"planned-key\"></span> planned <span class=\"actual-key\"></span> actual (colour: status)</p>",
        svg(report, None)
    );
    out.push_str(
        "<div class=\"scroll\"><table class=\"timeline\"><tr><th>Step</th><th>Kind</th><th>Status</th><th>Attempts</th>\
         <th>Planned start</th><th>Actual start</th><th>Δ start</th><th>Planned</th><th>Actual</th><th>Δ duration</th></tr>",
    );
    for s in &report.steps {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td><span class=\"status\" style=\"background:{}\">{}</span></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            escape(&s.kind),
            status_colour(s.status),
            escape(&status_text(s)),
            s.attempts,
            two_lines(&s.planned.span.start.map_or_else(
                || ("–".to_owned(), String::new()),
                |i| (text::offset(i), text::utc(i.utc))
            )),
            two_lines(&s.actual.start.map_or_else(
                || ("–".to_owned(), String::new()),
                |i| (text::offset(i), text::utc(i.utc))
            )),
            escape(&text::delta(s.start_delta_ms)),
            two_lines(&match s.planned.span.duration_ms {
                Some(d) => (text::duration(Some(d)), s.planned.source.to_owned()),
                None => ("–".to_owned(), String::new()),
            }),
            two_lines(&(
                text::duration(s.actual.duration_ms),
                if s.stopped_s > 0 {
                    format!("+{} stopped", text::duration(Some(s.stopped_s * 1000)))
                } else {
                    String::new()
                }
            )),
            escape(&text::delta(s.duration_delta_ms)),
        );
    }
    out.push_str("</table></div>");

    out.push_str("<h2>Deviations</h2>");
    if report.deviations.is_empty() {
        out.push_str("<p>None: every step ran as planned.</p>");
    } else {
        out.push_str("<table><tr><th>Step</th><th>Deviation</th><th>Detail</th></tr>");
        for d in &report.deviations {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(d.step.as_deref().unwrap_or("(run)")),
                d.kind.label(),
                escape(&d.detail)
            );
        }
        out.push_str("</table>");
    }

    out.push_str("<h2>Manual confirmations</h2>");
    if report.confirmations.is_empty() {
        out.push_str("<p>None.</p>");
    } else {
        out.push_str(
            "<table><tr><th>Step</th><th>Confirmed by</th><th>When (UTC)</th><th>Note</th></tr>",
        );
        for c in &report.confirmations {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.step),
                escape(&c.user),
                escape(&text::instant(Some(c.at))),
                escape(c.note.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }

    out.push_str("<h2>Evidence</h2>");
    for s in &report.steps {
        let _ = write!(
            out,
            "<section class=\"evidence\"><h3><code>{}</code> <span class=\"status\" style=\"background:{}\">{}</span> {}</h3>",
            escape(&s.name),
            status_colour(s.status),
            escape(&status_text(s)),
            escape(&s.kind)
        );
        if s.evidence.is_empty() {
            out.push_str("<p class=\"muted\">No evidence recorded.</p>");
        }
        for e in &s.evidence {
            let _ = write!(
                out,
                "<div class=\"observation\"><p><strong>{}</strong>, attempt {}, {} UTC ({}): {}</p>{}</div>",
                e.phase.as_str(),
                e.attempt,
                text::utc(e.at.utc),
                escape(&text::offset(e.at)),
                escape(&e.summary),
                facts_html(&e.data)
            );
        }
        out.push_str("</section>");
    }

    out.push_str(
        "<h2>Event log</h2><div class=\"scroll\"><table class=\"events\"><tr><th>#</th><th>Time (UTC)</th><th>T</th><th>Step</th><th>Kind</th><th>Message</th></tr>",
    );
    for e in &report.events {
        let _ = write!(
            out,
            "<tr class=\"event-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&e.kind),
            e.id,
            text::utc(e.at.utc),
            escape(&text::offset(e.at)),
            escape(e.step.as_deref().unwrap_or("")),
            escape(&e.kind),
            escape(&e.message)
        );
    }
    out.push_str("</table></div>");
    if !report.notes.is_empty() {
        out.push_str("<h2>Notes</h2><ul>");
        for note in &report.notes {
            let _ = write!(out, "<li>{}</li>", escape(note));
        }
        out.push_str("</ul>");
    }
    out.push_str("</main></body></html>\n");
    out
}
