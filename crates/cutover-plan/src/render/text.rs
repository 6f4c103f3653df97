//! The terminal plan: a summary, a step table, where each figure comes
//! from, DNS switch safety, findings, notes and a text Gantt chart, all
//! within 100 columns. Colours only when asked (the caller knows whether
//! stdout is a terminal).

use super::axis::Axis;
use super::{
    critical_path_text, duration_cell, findings_summary, location, offset_cell, window_line,
};
use crate::units_fmt;
use crate::{Plan, Provenance};
use cutover_lang::{Severity, SourceMap};
use std::fmt::Write;

/// Total width of every line.
pub const WIDTH: usize = 100;
const NAME_WIDTH: usize = 18;
const GANTT_LABEL: usize = 20;

struct Paint {
    color: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(&self, t: &str) -> String {
        self.wrap("1", t)
    }
    fn red(&self, t: &str) -> String {
        self.wrap("31", t)
    }
    fn yellow(&self, t: &str) -> String {
        self.wrap("33", t)
    }
    fn dim(&self, t: &str) -> String {
        self.wrap("2", t)
    }
}

/// The plan as the terminal shows it.
pub fn text(plan: &Plan, sources: &SourceMap, color: bool) -> String {
    let p = Paint { color };
    let mut out = String::new();
    let title = match &plan.title {
        Some(t) => format!("{}: {t}", plan.runbook),
        None => plan.runbook.clone(),
    };
    let _ = writeln!(out, "{}", p.bold(&format!("plan {title}")));
    for line in wrap(&window_line(plan), WIDTH, 2) {
        let _ = writeln!(out, "{line}");
    }
    for line in wrap(
        &format!("critical path: {}", critical_path_text(plan, " -> ")),
        WIDTH,
        2,
    ) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "findings: {}", findings_summary(plan));
    out.push('\n');
    table(&mut out, plan, &p);
    out.push('\n');
    figures(&mut out, plan, &p);
    switches(&mut out, plan, &p);
    findings(&mut out, plan, sources, &p);
    if plan.probed {
        let _ = writeln!(out, "\n{}", p.bold("live state (probed)"));
        if plan.live.is_empty() {
            let _ = writeln!(out, "  no DNS record to compare");
        }
        for change in &plan.live {
            for line in wrap(&format!("  {change}"), WIDTH, 4) {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("notes"));
        for note in &plan.notes {
            for line in wrap(&format!("- {note}"), WIDTH, 2) {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out.push('\n');
    out.push_str(&gantt(plan, color));
    out
}

fn table(out: &mut String, plan: &Plan, p: &Paint) {
    let header = format!(
        "{:>3}  {:<NAME_WIDTH$} {:<11} {:<10} {:<12} {:<10} {:>8}  {:<9} {:>7}",
        "#", "step", "kind", "start", "UTC", "end", "duration", "source", "slack"
    );
    let _ = writeln!(out, "{}", p.bold(header.trim_end()));
    for (i, s) in plan.chronological().into_iter().enumerate() {
        let utc = plan
            .utc(s.start)
            .map_or_else(|| "-".to_string(), |t| t.format("%m-%d %H:%M").to_string());
        let name = fit_width(&s.name, NAME_WIDTH);
        let name = if s.critical {
            p.red(&format!("{name:<NAME_WIDTH$}"))
        } else {
            format!("{name:<NAME_WIDTH$}")
        };
        let slack = if s.critical {
            "crit".to_string()
        } else {
            units_fmt::duration_ms(s.slack)
        };
        let source = s.duration.provenance.as_str();
        let source = match s.duration.provenance {
            Provenance::Guess | Provenance::Unknown => p.yellow(&format!("{source:<9}")),
            _ => format!("{source:<9}"),
        };
        let line = format!(
            "{:>3}  {name} {:<11} {:<10} {:<12} {:<10} {:>8}  {source} {:>7}",
            i + 1,
            s.kind,
            offset_cell(s.start, s.start_at_least),
            utc,
            offset_cell(s.end, s.at_least),
            duration_cell(s),
            slack
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn figures(out: &mut String, plan: &Plan, p: &Paint) {
    let _ = writeln!(out, "{}", p.bold("where the figures come from"));
    for s in plan.chronological() {
        let line = format!(
            "{}: {} — {}",
            s.name,
            s.duration.provenance.as_str(),
            s.duration.basis
        );
        for l in wrap(&line, WIDTH - 2, 4) {
            let _ = writeln!(out, "  {l}");
        }
        if let Some(wait) = &s.ttl_wait {
            let line = format!(
                "{}: TTL wait {} ({} .. {}) — {}",
                s.name,
                units_fmt::duration_ms(wait.end - wait.start),
                units_fmt::offset_ms(wait.start),
                units_fmt::offset_ms(wait.end),
                wait.basis
            );
            for l in wrap(&line, WIDTH - 2, 4) {
                let _ = writeln!(out, "  {}", p.yellow(&l));
            }
        }
    }
}

fn switches(out: &mut String, plan: &Plan, p: &Paint) {
    if plan.switches.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{}", p.bold("DNS switches"));
    for s in &plan.switches {
        let step = plan.step(s.step);
        let safe = match s.earliest_safe {
            Some(t) => {
                let utc = plan
                    .utc(t)
                    .map(|u| format!(" ({})", units_fmt::utc(u)))
                    .unwrap_or_default();
                format!("safe from {}{utc}", units_fmt::offset_ms(t))
            }
            None => "safe time unknown".to_string(),
        };
        let line = format!(
            "{} ({}): {safe}, acts at {} — {}",
            s.record,
            step.name,
            offset_cell(step.act_start, step.at_least),
            s.basis
        );
        for l in wrap(&line, WIDTH - 2, 4) {
            let _ = writeln!(out, "  {l}");
        }
    }
}

fn findings(out: &mut String, plan: &Plan, sources: &SourceMap, p: &Paint) {
    if plan.diagnostics.is_empty() {
        return;
    }
    let lines = super::LineIndex::new(sources);
    let _ = writeln!(out, "\n{}", p.bold("findings"));
    for d in &plan.diagnostics {
        let severity = match d.severity {
            Severity::Error => p.red("error"),
            Severity::Warning => p.yellow("warning"),
            Severity::Info => "info".to_string(),
        };
        let plain_len = match d.severity {
            Severity::Error => 5,
            Severity::Warning => 7,
            Severity::Info => 4,
        };
        let head = format!(
            "{}[{}] {}: ",
            "x".repeat(plain_len),
            d.code,
            location(d, &lines)
        );
        let lines = wrap(&format!("{head}{}", d.message), WIDTH - 2, 4);
        for (i, l) in lines.into_iter().enumerate() {
            let l = if i == 0 {
                l.replacen(&"x".repeat(plain_len), &severity, 1)
            } else {
                l
            };
            let _ = writeln!(out, "  {l}");
        }
    }
}

/// The text Gantt chart: one row per step on the shared axis.
pub fn gantt(plan: &Plan, color: bool) -> String {
    let p = Paint { color };
    let axis = Axis::new(plan);
    let width = WIDTH - GANTT_LABEL;
    let col = |t: i64| ((axis.x(t) * (width - 1) as f64).round() as usize).min(width - 1);
    let mut out = String::new();
    let _ = writeln!(out, "{}", p.bold("timeline"));

    let mut labels = vec![' '; width];
    let mut rule = vec!['─'; width];
    let mut free_from = 0;
    for (t, label) in axis.ticks(8) {
        let c = col(t);
        rule[c] = '┬';
        let start = c.saturating_sub(label.chars().count() / 2);
        if start >= free_from && start + label.chars().count() <= width {
            for (i, ch) in label.chars().enumerate() {
                labels[start + i] = ch;
            }
            free_from = start + label.chars().count() + 1;
        }
    }
    for b in &axis.breaks {
        let c = ((b * (width - 1) as f64).round() as usize).min(width - 1);
        rule[c] = '╫';
    }
    let pad = " ".repeat(GANTT_LABEL);
    let _ = writeln!(out, "{pad}{}", labels.iter().collect::<String>().trim_end());
    let _ = writeln!(out, "{pad}{}", rule.iter().collect::<String>());

    let window = plan.window.map(|w| (col(0), col(w.length)));
    for s in plan.chronological() {
        let mut cells: Vec<(char, u8)> = vec![(' ', 0); width];
        if let Some((a, b)) = window {
            cells[a] = ('┆', 0);
            cells[b] = ('┆', 0);
        }
        if let Some(wait) = &s.ttl_wait {
            let (a, b) = (col(wait.start), col(wait.end));
            for cell in cells.iter_mut().take(b.max(a + 1).min(width)).skip(a) {
                *cell = ('░', 2);
            }
        }
        let (a, b) = (col(s.act_start), col(s.end));
        let (ch, tone) = if s.critical { ('█', 1) } else { ('▒', 0) };
        for cell in cells.iter_mut().take(b.max(a + 1).min(width)).skip(a) {
            *cell = (ch, tone);
        }
        if s.duration.ms.is_none() {
            let q = b.max(a + 1).min(width - 1);
            cells[q] = ('?', 2);
        }
        let mut row = String::new();
        let mut run = String::new();
        let mut tone = 0u8;
        for (ch, t) in cells {
            if t != tone {
                row.push_str(&tint(&p, tone, &run));
                run.clear();
                tone = t;
            }
            run.push(ch);
        }
        row.push_str(&tint(&p, tone, &run));
        let name = fit_width(&s.name, GANTT_LABEL - 2);
        let name = format!("{name:<width$}", width = GANTT_LABEL - 2);
        let name = if s.critical { p.red(&name) } else { name };
        let _ = writeln!(out, "{name}  {}", row.trim_end());
    }
    let _ = writeln!(
        out,
        "{pad}{}",
        p.dim("█ critical path  ▒ other step  ░ TTL wait  ┆ window  ? unknown duration")
    );
    if !axis.breaks.is_empty() {
        let _ = writeln!(
            out,
            "{pad}{}",
            p.dim("╫ time beyond this mark is drawn compressed")
        );
    }
    out
}

fn tint(p: &Paint, tone: u8, text: &str) -> String {
    match tone {
        1 => p.red(text),
        2 => p.yellow(text),
        _ => text.to_string(),
    }
}

/// Cuts a name to `width` characters, ending in `…` when cut.
fn fit_width(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(width - 1).collect();
        s.push('…');
        s
    }
}

/// Word-wraps to `width` columns; continuation lines indented by `indent`.
pub(crate) fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
            line = " ".repeat(indent);
        } else if len > 0 && !line.trim().is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.trim().is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrap_keeps_lines_within_width() {
        let lines = wrap("aaaa bbbb cccc dddd", 10, 2);
        assert_eq!(lines, vec!["aaaa bbbb", "  cccc", "  dddd"]);
    }
}
