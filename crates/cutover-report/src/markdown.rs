//! The Markdown export: for the post-mortem document or a pull request.

use crate::facts::{Fact, facts};
use crate::model::Report;
use crate::sessions::SessionEnd;
use crate::text;
use std::fmt::Write;

use cutover_plan::render::escape::markdown_cell as cell;

/// Inline code that survives backticks in the text.
fn code(text: &str) -> String {
    let text = text.replace(['\n', '\r'], " ");
    if text.contains('`') {
        format!("`` {} ``", cell(&text))
    } else {
        format!("`{}`", cell(&text))
    }
}

pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let run = &report.run;
    let _ = writeln!(out, "# Cutover report: {}", run.runbook);
    if let Some(title) = &run.title {
        let _ = writeln!(out, "\n{}", cell(title));
    }
    out.push_str("\n| | |\n|---|---|\n");
    for (label, value) in text::header(report) {
        let _ = writeln!(out, "| {label} | {} |", cell(&value));
    }

    let crashes = report.sessions.iter().any(|s| s.end.is_crash());
    if report.sessions.len() > 1 || crashes {
        out.push_str("\n## Crashes and resumes\n\n");
        for s in &report.sessions {
            let mut line = format!(
                "- **Session {}**: started {} UTC ({}), last record {} UTC — **{}**",
                s.number,
                text::utc(s.started_at.utc),
                text::offset(s.started_at),
                text::utc(s.last_record_at.utc),
                s.end.label()
            );
            if let Some(took) = &s.took_over {
                let _ = write!(line, "; {}", cell(took));
            }
            if !s.caught_mid_flight.is_empty() {
                let caught: Vec<String> = s
                    .caught_mid_flight
                    .iter()
                    .map(|c| match c.phase {
                        Some(p) => format!("{} (in {})", code(&c.step), p.as_str()),
                        None => code(&c.step),
                    })
                    .collect();
                let _ = write!(line, "; caught mid-flight: {}", caught.join(", "));
            }
            if s.end == SessionEnd::Crashed {
                line.push_str("; the next session resumed it");
            }
            out.push_str(&line);
            out.push('\n');
        }
    }

    out.push_str("\n## Timeline: planned vs actual\n\nTimes in UTC, offsets from T0.\n\n");
    out.push_str("| Step | Kind | Status | Attempts | Planned start | Actual start | Δ start | Planned | Actual | Δ duration |\n");
    out.push_str("|---|---|---|---:|---|---|---:|---:|---:|---:|\n");
    for s in &report.steps {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            code(&s.name),
            cell(&s.kind),
            s.status.as_str(),
            s.attempts,
            text::instant(s.planned.span.start),
            text::instant(s.actual.start),
            text::delta(s.start_delta_ms),
            match s.planned.span.duration_ms {
                Some(d) => format!("{} ({})", text::duration(Some(d)), s.planned.source),
                None => "–".to_owned(),
            },
            text::took(s),
            text::delta(s.duration_delta_ms),
        );
    }

    out.push_str("\n## Deviations\n\n");
    if report.deviations.is_empty() {
        out.push_str("None: every step ran as planned.\n");
    } else {
        out.push_str("| Step | Deviation | Detail |\n|---|---|---|\n");
        for d in &report.deviations {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                d.step.as_deref().map_or_else(|| "(run)".to_owned(), code),
                d.kind.label(),
                cell(&d.detail)
            );
        }
    }

    out.push_str("\n## Manual confirmations\n\n");
    if report.confirmations.is_empty() {
        out.push_str("None.\n");
    } else {
        out.push_str("| Step | Confirmed by | When (UTC) | Note |\n|---|---|---|---|\n");
        for c in &report.confirmations {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                code(&c.step),
                cell(&c.user),
                text::instant(Some(c.at)),
                cell(c.note.as_deref().unwrap_or(""))
            );
        }
    }

    out.push_str("\n## Evidence\n");
    for s in &report.steps {
        let _ = writeln!(
            out,
            "\n### {} — {} ({})\n",
            code(&s.name),
            s.status.as_str(),
            cell(&s.kind)
        );
        if s.evidence.is_empty() {
            out.push_str("No evidence recorded.\n");
        }
        for e in &s.evidence {
            let _ = writeln!(
                out,
                "- **{}**, attempt {}, {} UTC ({}): {}",
                e.phase.as_str(),
                e.attempt,
                text::utc(e.at.utc),
                text::offset(e.at),
                cell(&e.summary)
            );
            for fact in facts(&e.data) {
                match fact {
                    Fact::Line { key, value } if key.is_empty() => {
                        let _ = writeln!(out, "  - {}", cell(&value));
                    }
                    Fact::Line { key, value } => {
                        let _ = writeln!(out, "  - {}: {}", cell(&key), cell(&value));
                    }
                    Fact::Table {
                        key,
                        columns,
                        rows,
                        more,
                    } => {
                        if !key.is_empty() {
                            let _ = writeln!(out, "  - {}:", cell(&key));
                        }
                        out.push('\n');
                        let header: Vec<String> = columns.iter().map(|c| cell(c)).collect();
                        let _ = writeln!(out, "    | {} |", header.join(" | "));
                        let _ = writeln!(out, "    |{}", "---|".repeat(columns.len()));
                        for row in rows {
                            let row: Vec<String> = row.iter().map(|c| cell(c)).collect();
                            let _ = writeln!(out, "    | {} |", row.join(" | "));
                        }
                        if more > 0 {
                            let _ = writeln!(out, "\n    ({more} more rows in the JSON export)");
                        }
                        out.push('\n');
                    }
                }
            }
        }
    }

    out.push_str("\n## Event log\n\n| # | Time (UTC) | T | Step | Kind | Message |\n|---:|---|---|---|---|---|\n");
    for e in &report.events {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            e.id,
            text::utc(e.at.utc),
            text::offset(e.at),
            e.step.as_deref().map_or_else(String::new, code),
            cell(&e.kind),
            cell(&e.message)
        );
    }

    if !report.notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for note in &report.notes {
            let _ = writeln!(out, "- {}", cell(note));
        }
    }
    out
}
