//! Rendering diagnostics: for a terminal with miette (file:line:col, the
//! source line, an underline, the message and the help), and as JSON for
//! tools. Very long source lines are clipped for display so that a runaway
//! line never floods the terminal. Each file is clipped and indexed by line
//! once per call, and a report reads only the lines around its spans, so
//! rendering many findings in a large runbook costs no more per finding
//! than in a small one.

use crate::diagnostic::{Diagnostic, Severity};
use crate::source::{SourceMap, Span};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, MietteError,
    MietteSpanContents, NamedSource, SourceCode, SourceSpan, SpanContents,
};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

/// Source lines longer than this are shown cut, ending in `…`.
const SHOWN_LINE_BYTES: usize = 300;
/// Rendering width, fixed so output is the same on every terminal.
const WIDTH: usize = 100;

/// Text for a terminal: every control character (the ESC of an escape
/// sequence, a bell, a carriage return; a line break or a tab too when
/// `one_line`) shown as `\u{1b}` instead of being sent raw, so that nothing
/// read from a runbook, a state file or a server moves the cursor,
/// retitles the window or hides what is printed.
pub fn printable(text: &str, one_line: bool) -> Cow<'_, str> {
    let raw = |c: char| c.is_control() && (one_line || (c != '\n' && c != '\t'));
    if !text.chars().any(raw) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if raw(c) {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A source text as the terminal is shown it: each control character but
/// a line break, a carriage return and a tab replaced by as many `?` as it
/// has bytes, so every offset into the text still points where it did.
fn masked(text: &str) -> Cow<'_, str> {
    let raw = |c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\t');
    if !text.chars().any(raw) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if raw(c) {
            out.extend(std::iter::repeat_n('?', c.len_utf8()));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Renders `diags` for a terminal: one miette report each, in order.
/// Without `color` the output is plain text, stable for snapshots.
pub fn render_human(sources: &SourceMap, diags: &[Diagnostic], color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(WIDTH)
        .with_links(false);
    let mut out = String::new();
    let mut files: Vec<Option<Arc<Indexed>>> = vec![None; sources.files.len()];
    for diag in diags {
        render_one(&handler, sources, &mut files, diag, &mut out);
    }
    out
}

/// A file's clipped text, made once and shared by every report on it.
fn indexed(
    sources: &SourceMap,
    files: &mut [Option<Arc<Indexed>>],
    file: crate::source::FileId,
) -> Arc<Indexed> {
    Arc::clone(
        files[file.0 as usize]
            .get_or_insert_with(|| Arc::new(Indexed::new(Clipped::new(&sources.file(file).text)))),
    )
}

fn severity(severity: Severity) -> miette::Severity {
    match severity {
        Severity::Error => miette::Severity::Error,
        Severity::Warning => miette::Severity::Warning,
        Severity::Info => miette::Severity::Advice,
    }
}

fn render_one(
    handler: &GraphicalReportHandler,
    sources: &SourceMap,
    files: &mut [Option<Arc<Indexed>>],
    diag: &Diagnostic,
    out: &mut String,
) {
    let mut report = MietteDiagnostic::new(printable(&diag.message, false))
        .with_code(diag.code)
        .with_severity(severity(diag.severity));
    if let Some(help) = &diag.help {
        report = report.with_help(printable(help, false));
    }
    let Some(primary) = diag
        .primary_span()
        .filter(|s| (s.file.0 as usize) < sources.files.len())
    else {
        let _ = handler.render_report(out, &report);
        return;
    };
    let file = sources.file(primary.file);
    let source = indexed(sources, files, primary.file);
    let clipped = &source.clipped;
    let mut elsewhere = Vec::new();
    let mut labels = Vec::new();
    for (index, label) in diag.labels.iter().enumerate() {
        if label.span.file != primary.file {
            elsewhere.push(label);
            continue;
        }
        let text = if label.message.is_empty() {
            "here".to_string()
        } else {
            printable(&label.message, false).into_owned()
        };
        let (start, end) = (
            clipped.map(label.span.start),
            clipped.map(label.span.end.max(label.span.start)),
        );
        let span = miette::SourceSpan::new(start.into(), end - start);
        labels.push(if index == 0 {
            LabeledSpan::new_primary_with_span(Some(text), span)
        } else {
            LabeledSpan::new_with_span(Some(text), span)
        });
    }
    report = report.with_labels(labels);
    let name = printable(&file.path.display().to_string(), true).into_owned();
    let source = NamedSource::new(name, Excerpts(source));
    let _ = handler.render_report(
        out,
        miette::Report::new(report)
            .with_source_code(source)
            .as_ref(),
    );
    for label in elsewhere {
        if (label.span.file.0 as usize) >= sources.files.len() {
            continue;
        }
        let other = sources.file(label.span.file);
        let source = indexed(sources, files, label.span.file);
        let clipped = &source.clipped;
        let (start, end) = (
            clipped.map(label.span.start),
            clipped.map(label.span.end.max(label.span.start)),
        );
        let note = MietteDiagnostic::new(printable(&label.message, false))
            .with_severity(miette::Severity::Advice)
            .with_label(LabeledSpan::new(None, start, end - start));
        let name = printable(&other.path.display().to_string(), true).into_owned();
        let source = NamedSource::new(name, Excerpts(source));
        let _ = handler.render_report(
            out,
            miette::Report::new(note).with_source_code(source).as_ref(),
        );
    }
}

/// A clipped text and where its lines start, as miette counts lines (a
/// line ends at `\n`, `\r\n` or a lone `\r`).
struct Indexed {
    clipped: Clipped,
    /// The offset of every line's first byte; `starts[0]` is 0.
    starts: Vec<usize>,
}

impl Indexed {
    fn new(clipped: Clipped) -> Indexed {
        let bytes = clipped.text.as_bytes();
        let mut starts = vec![0];
        for (i, &b) in bytes.iter().enumerate() {
            let ends = b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
            if ends {
                starts.push(i + 1);
            }
        }
        Indexed { clipped, starts }
    }
}

/// The source miette reads: it hands miette's own reader only the text
/// from a few lines before the span on (miette's reader counts lines from
/// the start of what it is given), and shifts the answer back, so the
/// result is the same as for the whole text.
struct Excerpts(Arc<Indexed>);

impl SourceCode for Excerpts {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let Indexed { clipped, starts } = &*self.0;
        let line = starts
            .partition_point(|&s| s <= span.offset())
            .saturating_sub(1);
        // With more than `context_lines_before` whole lines between the cut
        // and the span, miette's reader starts where it would have anyway.
        let first = line.saturating_sub(context_lines_before + 1);
        let from = starts[first];
        if span.offset() < from {
            return Err(MietteError::OutOfBounds);
        }
        let inner = clipped.text[from..].read_span(
            &SourceSpan::new((span.offset() - from).into(), span.len()),
            context_lines_before,
            context_lines_after,
        )?;
        Ok(Box::new(MietteSpanContents::new(
            inner.data(),
            SourceSpan::new((inner.span().offset() + from).into(), inner.span().len()),
            inner.line() + first,
            inner.column(),
            inner.line_count() + first,
        )))
    }
}

/// A file's text with over-long lines cut, and the offset translation.
struct Clipped {
    text: String,
    /// (cut offset, line end, bytes removed up to and including this cut),
    /// all in the original text, in order.
    cuts: Vec<(usize, usize, isize)>,
}

impl Clipped {
    fn new(text: &str) -> Clipped {
        let text = &*masked(text);
        if text.split('\n').all(|line| line.len() <= SHOWN_LINE_BYTES) {
            return Clipped {
                text: text.to_string(),
                cuts: Vec::new(),
            };
        }
        let mut out = String::new();
        let mut cuts = Vec::new();
        let mut removed: isize = 0;
        let mut pos = 0;
        for line in text.split_inclusive('\n') {
            let body = line.strip_suffix('\n').unwrap_or(line);
            if body.len() > SHOWN_LINE_BYTES {
                let cut = body.floor_char_boundary(SHOWN_LINE_BYTES);
                out.push_str(&body[..cut]);
                out.push('…');
                out.push_str(&line[body.len()..]);
                removed += (body.len() - cut) as isize - '…'.len_utf8() as isize;
                cuts.push((pos + cut, pos + body.len(), removed));
            } else {
                out.push_str(line);
            }
            pos += line.len();
        }
        Clipped { text: out, cuts }
    }

    /// Where an offset of the original text is in the clipped text.
    fn map(&self, offset: usize) -> usize {
        let mut removed: isize = 0;
        for &(cut, end, removed_after) in &self.cuts {
            if offset <= cut {
                break;
            }
            if offset <= end {
                return (cut as isize - removed) as usize;
            }
            removed = removed_after;
        }
        ((offset as isize - removed).max(0) as usize).min(self.text.len())
    }
}

fn location(sources: &SourceMap, span: Span) -> Value {
    if (span.file.0 as usize) >= sources.files.len() {
        return json!({});
    }
    let (line, column) = sources.line_col(span);
    let (end_line, end_column) = sources.line_col(Span::new(span.file, span.end, span.end));
    json!({
        "file": sources.file(span.file).path.display().to_string(),
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
    })
}

/// Renders `diags` as a JSON array of objects with `file`, `line`, `column`,
/// `end_line`, `end_column` (1-based, columns in characters; absent when the
/// fault has no place in a file), `severity`, `code`, `message`, `help` and
/// the secondary `labels`.
pub fn render_json(sources: &SourceMap, diags: &[Diagnostic]) -> Value {
    Value::Array(
        diags
            .iter()
            .map(|diag| {
                let mut object = match diag.primary_span() {
                    Some(span) => location(sources, span),
                    None => json!({}),
                };
                object["severity"] = json!(diag.severity);
                object["code"] = json!(diag.code);
                object["message"] = json!(diag.message);
                object["help"] = json!(diag.help);
                if !diag.data.is_empty() {
                    object["data"] = Value::Object(diag.data.clone());
                }
                object["labels"] = Value::Array(
                    diag.labels
                        .iter()
                        .skip(1)
                        .map(|label| {
                            let mut l = location(sources, label.span);
                            l["message"] = json!(label.message);
                            l
                        })
                        .collect(),
                );
                object
            })
            .collect(),
    )
}

/// Renders `diags` one line each, `FILE:LINE:COL: SEVERITY[CODE]: MESSAGE`
/// (the place left out when the fault has none), for editors and CI logs.
pub fn render_short(sources: &SourceMap, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for diag in diags {
        if let Some(span) = diag
            .primary_span()
            .filter(|s| (s.file.0 as usize) < sources.files.len())
        {
            let (line, column) = sources.line_col(span);
            let path = sources.file(span.file).path.display().to_string();
            let _ = write!(out, "{}:{line}:{column}: ", printable(&path, true));
        }
        let severity = match diag.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let message = printable(&diag.message.replace('\n', " "), true).into_owned();
        let _ = writeln!(out, "{severity}[{}]: {message}", diag.code);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_offsets_after_a_long_line() {
        let text = format!("a\n{}\nb c\n", "x".repeat(1000));
        let clipped = Clipped::new(&text);
        let b = text.rfind('b').unwrap();
        assert_eq!(&clipped.text[clipped.map(b)..clipped.map(b) + 3], "b c");
        assert_eq!(clipped.map(2 + 500), 2 + SHOWN_LINE_BYTES);
        assert!(clipped.text.len() < 400);
    }

    /// A report read through [`Excerpts`] is the report miette makes from
    /// the whole text, wherever the span is (first lines, last line,
    /// across lines, after `\r\n`, a lone `\r` and a clipped line).
    #[test]
    fn excerpts_render_like_the_whole_text() {
        let text = format!(
            "runbook x\r\n  title \"t\"\rhost a addr 1.2.3.4 via local ./a\n{}\n\nstep s\n  wait 1m\n  expect 5m\nstep t\n  manual \"x\"",
            "y".repeat(700)
        );
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(WIDTH)
            .with_links(false);
        let source = Arc::new(Indexed::new(Clipped::new(&text)));
        let len = source.clipped.text.len();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for start in (0..len).step_by(7).chain([len - 1, len]) {
            if !source.clipped.text.is_char_boundary(start) {
                continue;
            }
            for width in [0, 1, 5, 40] {
                let end = (start + width).min(len);
                if source.clipped.text.is_char_boundary(end) {
                    spans.push((start, end));
                }
            }
        }
        for (start, end) in spans {
            let report = || {
                MietteDiagnostic::new("m").with_label(LabeledSpan::new_primary_with_span(
                    Some("here".into()),
                    SourceSpan::new(start.into(), end - start),
                ))
            };
            let mut whole = String::new();
            let named = NamedSource::new("x.runbook", source.clipped.text.clone());
            let _ = handler.render_report(
                &mut whole,
                miette::Report::new(report())
                    .with_source_code(named)
                    .as_ref(),
            );
            let mut excerpt = String::new();
            let named = NamedSource::new("x.runbook", Excerpts(Arc::clone(&source)));
            let _ = handler.render_report(
                &mut excerpt,
                miette::Report::new(report())
                    .with_source_code(named)
                    .as_ref(),
            );
            assert_eq!(excerpt, whole, "span {start}..{end}");
        }
    }

    #[test]
    fn json_has_one_based_positions() {
        let mut sources = SourceMap::default();
        let file = sources.add("x.runbook".into(), "runbook x\n  titel \"y\"\n".into());
        let diag = Diagnostic::error(
            "unknown-keyword",
            "unknown keyword `titel` here",
            Span::new(file, 12, 17),
        );
        let json = render_json(&sources, &[diag]);
        assert_eq!(json[0]["line"], 2);
        assert_eq!(json[0]["column"], 3);
        assert_eq!(json[0]["end_column"], 8);
        assert_eq!(json[0]["file"], "x.runbook");
    }
}
