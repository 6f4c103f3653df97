//! The plan as Markdown, for a pull request: summary, step table, where the
//! figures come from, DNS switch safety, findings, notes and the text Gantt.

use super::{
    critical_path_text, duration_cell, findings_summary, location, offset_cell, window_line,
};
use crate::Plan;
use crate::units_fmt;
use cutover_lang::{Severity, SourceMap};
use std::fmt::Write;

use super::escape::markdown_cell as cell;

pub fn markdown(plan: &Plan, sources: &SourceMap) -> String {
    let mut out = String::new();
    let title = plan
        .title
        .as_deref()
        .map(|t| format!(" — {t}"))
        .unwrap_or_default();
    let _ = writeln!(out, "## Plan: `{}`{}\n", plan.runbook, cell(&title));
    let _ = writeln!(out, "- **Window:** {}", window_line(plan));
    let _ = writeln!(
        out,
        "- **Critical path:** {}",
        critical_path_text(plan, " → ")
    );
    let _ = writeln!(out, "- **Findings:** {}\n", findings_summary(plan));

    let _ = writeln!(
        out,
        "| # | step | kind | start | start (UTC) | end | duration | source | slack |"
    );
    let _ = writeln!(out, "|--:|---|---|---|---|---|--:|---|--:|");
    for (i, s) in plan.chronological().into_iter().enumerate() {
        let utc = plan
            .utc(s.start)
            .map_or_else(|| "–".to_string(), units_fmt::utc);
        let name = if s.critical {
            format!("**{}**", s.name)
        } else {
            s.name.clone()
        };
        let slack = if s.critical {
            "critical".to_string()
        } else {
            units_fmt::duration_ms(s.slack)
        };
        let _ = writeln!(
            out,
            "| {} | {name} | `{}` | {} | {utc} | {} | {} | {} | {slack} |",
            i + 1,
            s.kind,
            offset_cell(s.start, s.start_at_least),
            offset_cell(s.end, s.at_least),
            duration_cell(s),
            s.duration.provenance.as_str(),
        );
    }

    let _ = writeln!(out, "\n### Where the figures come from\n");
    for s in plan.chronological() {
        let _ = writeln!(
            out,
            "- `{}`: {} {} — {}",
            s.name,
            duration_cell(s),
            s.duration.provenance.as_str(),
            s.duration.basis
        );
        if let Some(w) = &s.ttl_wait {
            let _ = writeln!(
                out,
                "  - TTL wait {} ({} → {}): {}",
                units_fmt::duration_ms(w.end - w.start),
                units_fmt::offset_ms(w.start),
                units_fmt::offset_ms(w.end),
                w.basis
            );
        }
    }

    if !plan.switches.is_empty() {
        let _ = writeln!(out, "\n### DNS switches\n");
        let _ = writeln!(out, "| record | step | earliest safe | acts at | basis |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for s in &plan.switches {
            let step = plan.step(s.step);
            let safe = s.earliest_safe.map_or_else(
                || "unknown".to_string(),
                |t| {
                    let utc = plan
                        .utc(t)
                        .map(|u| format!(" ({})", units_fmt::utc(u)))
                        .unwrap_or_default();
                    format!("{}{utc}", units_fmt::offset_ms(t))
                },
            );
            let _ = writeln!(
                out,
                "| `{}` | {} | {safe} | {} | {} |",
                s.record,
                step.name,
                offset_cell(step.act_start, step.at_least),
                cell(&s.basis)
            );
        }
    }

    if !plan.diagnostics.is_empty() {
        let lines = super::LineIndex::new(sources);
        let _ = writeln!(out, "\n### Findings\n");
        let _ = writeln!(
            out,
            "`cutover explain CODE` prints what a finding's code means and how to fix it.\n"
        );
        for d in &plan.diagnostics {
            let severity = match d.severity {
                Severity::Error => "**error**",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            let help = d
                .help
                .as_deref()
                .map(|h| format!(" — fix: {h}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- {severity} `{}` at line {}: {}{help}",
                d.code,
                location(d, &lines),
                d.message
            );
        }
    }
    if plan.probed {
        let _ = writeln!(out, "\n### Live state (probed)\n");
        if plan.live.is_empty() {
            let _ = writeln!(out, "- no DNS record to compare");
        }
        for change in &plan.live {
            let _ = writeln!(out, "- `{change}` (step `{}`)", plan.step(change.step).name);
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "\n### Notes\n");
        for n in &plan.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    let _ = writeln!(out, "\n<details><summary>Timeline</summary>\n\n```text");
    out.push_str(&super::text::gantt(plan, false));
    let _ = writeln!(out, "```\n\n</details>");
    out
}
