//! The canonical formatter. It works on the lossless syntax tree, so it
//! keeps every token and comment and changes only layout:
//! - items at column 1, their body lines indented by two spaces;
//! - one space between tokens, none before a comma;
//! - a trailing comment two spaces after the code, comment text as written;
//! - comment-only lines indented like body lines when they were indented;
//! - runs of blank lines collapsed to one, none at the start or the end;
//! - strings re-quoted with the two escapes `\"` and `\\`;
//! - `\n` line ends and a final newline.
//!
//! Formatting twice changes nothing, and the formatted text means the same
//! runbook (the token sequence of every line is unchanged).

use crate::diagnostic::{Diagnostic, Severity};
use crate::lexer::{Line, TokenKind, lex};
use crate::source::FileId;

/// Formats `text` canonically. Fails only when the text cannot be split into
/// tokens (an unclosed string, a bad escape, an over-long line); the
/// diagnostics then refer to `FileId(0)`, so render them with a
/// [`SourceMap`](crate::SourceMap) holding the file as its first file.
pub fn format_source(text: &str) -> Result<String, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let lines = lex(FileId(0), text, &mut diags);
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(diags);
    }
    let mut out = String::with_capacity(text.len());
    let mut blank_pending = false;
    for line in &lines {
        if line.is_blank() {
            blank_pending = !out.is_empty();
            continue;
        }
        if blank_pending {
            out.push('\n');
            blank_pending = false;
        }
        write_line(text, line, &mut out);
        out.push('\n');
    }
    Ok(out)
}

fn write_line(text: &str, line: &Line, out: &mut String) {
    if line.indent > 0 {
        out.push_str("  ");
    }
    for (i, token) in line.tokens.iter().enumerate() {
        if i > 0 && token.kind != TokenKind::Comma {
            out.push(' ');
        }
        match &token.kind {
            TokenKind::Word | TokenKind::Arrow | TokenKind::Comma => {
                out.push_str(&text[token.start..token.end])
            }
            TokenKind::Str(value) => out.push_str(&quote(value)),
        }
    }
    if let Some((start, end)) = line.comment {
        if !line.tokens.is_empty() {
            out.push_str("  ");
        }
        out.push_str(&text[start..end]);
    }
}

/// `value` as a runbook string literal.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for ch in value.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// A unified diff from `old` to `new`, headed with `path`, for `fmt --check`.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(&format!("{path} (current)"), &format!("{path} (formatted)"))
        .to_string()
}

/// A record value or similar word, quoted when it would not read back as one word.
pub(crate) fn word(value: &str) -> String {
    let plain = !value.is_empty()
        && !value.starts_with('#')
        && !value.contains("->")
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == '"');
    if plain {
        value.to_string()
    } else {
        quote(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_normalised_and_comments_kept() {
        let input = "\n\n# head\nstep   a   after b ,c # why\n\t  wait   5m\n    # inner\n\n\n\nhost x addr 1.2.3.4 via agent \"a \\\"b\\\"\"  \n\n";
        let expected = "# head\nstep a after b, c  # why\n  wait 5m\n  # inner\n\nhost x addr 1.2.3.4 via agent \"a \\\"b\\\"\"\n";
        assert_eq!(format_source(input).unwrap(), expected);
        assert_eq!(format_source(expected).unwrap(), expected);
    }

    #[test]
    fn refuses_untokenisable_text() {
        let errors = format_source("manual \"open").unwrap_err();
        assert_eq!(errors[0].code, "unterminated-string");
    }
}
