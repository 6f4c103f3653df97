//! The lexer: a runbook is a sequence of lines, each an indentation, tokens
//! and an optional trailing comment. Blank and comment-only lines are kept so
//! the formatter can reproduce them (the syntax tree is lossless).
//!
//! Tokens: words (any run of characters other than whitespace, `,` and `"`),
//! double-quoted strings with `\"` and `\\` escapes, `,` and `->`. A `#` that
//! starts a token starts a comment to the end of the line; inside a word (as
//! in a URL fragment) it is part of the word.

use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};

/// Lines longer than this are refused rather than parsed.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    /// A string, with its escapes decoded.
    Str(String),
    Comma,
    Arrow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// Byte range in the file.
    pub start: usize,
    pub end: usize,
}

/// One source line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Bytes of leading spaces and tabs.
    pub indent: usize,
    pub tokens: Vec<Token>,
    /// Byte range of `# ...`, trailing whitespace excluded.
    pub comment: Option<(usize, usize)>,
    /// Byte range of the line, newline excluded.
    pub start: usize,
    pub end: usize,
}

impl Line {
    pub fn is_blank(&self) -> bool {
        self.tokens.is_empty() && self.comment.is_none()
    }
}

/// Splits `text` into lines of tokens; lexical faults are pushed to `diags`.
pub fn lex(file: FileId, text: &str, diags: &mut Vec<Diagnostic>) -> Vec<Line> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let mut pos = 0;
    loop {
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| pos + i);
        lines.push(lex_line(file, text, pos, end, diags));
        if end >= bytes.len() {
            break;
        }
        pos = end + 1;
    }
    lines
}

fn first_char_span(file: FileId, text: &str, at: usize) -> Span {
    let width = text[at..].chars().next().map_or(0, char::len_utf8);
    Span::new(file, at, at + width)
}

fn lex_line(
    file: FileId,
    text: &str,
    start: usize,
    end: usize,
    diags: &mut Vec<Diagnostic>,
) -> Line {
    let bytes = text.as_bytes();
    let content_end = if end > start && bytes[end - 1] == b'\r' {
        end - 1
    } else {
        end
    };
    let mut i = start;
    while i < content_end && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    let mut line = Line {
        indent: i - start,
        tokens: Vec::new(),
        comment: None,
        start,
        end: content_end,
    };
    if content_end - start > MAX_LINE_BYTES {
        diags.push(
            Diagnostic::error(
                Code::LineTooLong,
                format!(
                    "this line is {} bytes long; lines are limited to {MAX_LINE_BYTES} bytes",
                    content_end - start
                ),
                first_char_span(file, text, start),
            )
            .with_help(
                "split the item over several lines or shorten it; is this really a runbook file?",
            ),
        );
        return line;
    }
    while i < content_end {
        match bytes[i] {
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                let comment_end = start + text[start..content_end].trim_end().len();
                line.comment = Some((i, comment_end));
                break;
            }
            b',' => {
                line.tokens.push(Token {
                    kind: TokenKind::Comma,
                    start: i,
                    end: i + 1,
                });
                i += 1;
            }
            b'"' => i = lex_string(file, text, i, content_end, &mut line, diags),
            _ => {
                let word_start = i;
                while i < content_end && !matches!(bytes[i], b' ' | b'\t' | b'\r' | b',' | b'"') {
                    i += 1;
                }
                if let Some(comment) = push_word(text, word_start, i, &mut line.tokens) {
                    let comment_end = start + text[start..content_end].trim_end().len();
                    line.comment = Some((comment, comment_end));
                    break;
                }
            }
        }
    }
    line
}

/// Lexes the string starting at the quote at `start`; returns the offset after it.
fn lex_string(
    file: FileId,
    text: &str,
    start: usize,
    end: usize,
    line: &mut Line,
    diags: &mut Vec<Diagnostic>,
) -> usize {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    let mut value = String::new();
    let mut closed = false;
    while i < end {
        match bytes[i] {
            b'"' => {
                i += 1;
                closed = true;
                break;
            }
            b'\\' if i + 1 < end && matches!(bytes[i + 1], b'"' | b'\\') => {
                value.push(char::from(bytes[i + 1]));
                i += 2;
            }
            b'\\' => {
                let escape_end = first_char_span(file, text, i + 1).end.max(i + 1);
                diags.push(
                    Diagnostic::error(
                        Code::BadEscape,
                        "unknown escape in a string",
                        Span::new(file, i, escape_end),
                    )
                    .with_help(
                        r#"strings know two escapes: `\"` for a quote and `\\` for a backslash"#,
                    ),
                );
                value.push('\\');
                i += 1;
            }
            _ => {
                let Some(ch) = text[i..end].chars().next() else {
                    break;
                };
                if ch.is_control() && ch != '\t' {
                    // A NUL cannot reach a command or a file name, and an
                    // escape sequence would be replayed on every terminal
                    // that shows the step.
                    diags.push(
                        Diagnostic::error(
                            Code::ControlCharacter,
                            format!("a control character ({}) in a string", ch.escape_unicode()),
                            Span::new(file, i, i + ch.len_utf8()),
                        )
                        .with_help("strings hold printable text; remove the character"),
                    );
                }
                value.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if !closed {
        diags.push(
            Diagnostic::error(
                Code::UnterminatedString,
                "this string is not closed",
                Span::new(file, start, end),
            )
            .with_help("end the string with `\"` on the same line"),
        );
    }
    line.tokens.push(Token {
        kind: TokenKind::Str(value),
        start,
        end: i,
    });
    i
}

/// Pushes the word `text[start..end]`, split at every `->`. A piece after an
/// arrow that starts with `#` starts a comment: its offset is returned.
fn push_word(text: &str, start: usize, end: usize, tokens: &mut Vec<Token>) -> Option<usize> {
    let mut from = start;
    while let Some(found) = text[from..end].find("->") {
        let arrow = from + found;
        if arrow > from {
            tokens.push(Token {
                kind: TokenKind::Word,
                start: from,
                end: arrow,
            });
        }
        tokens.push(Token {
            kind: TokenKind::Arrow,
            start: arrow,
            end: arrow + 2,
        });
        from = arrow + 2;
        if text[from..end].starts_with('#') {
            return Some(from);
        }
    }
    if from < end {
        tokens.push(Token {
            kind: TokenKind::Word,
            start: from,
            end,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<String> {
        let mut diags = Vec::new();
        let lines = lex(FileId(0), text, &mut diags);
        assert!(diags.is_empty(), "{diags:?}");
        lines
            .iter()
            .flat_map(|l| l.tokens.iter())
            .map(|t| match &t.kind {
                TokenKind::Word => text[t.start..t.end].to_string(),
                TokenKind::Str(s) => format!("<{s}>"),
                TokenKind::Comma => ",".to_string(),
                TokenKind::Arrow => "->".to_string(),
            })
            .collect()
    }

    #[test]
    fn words_strings_commas_arrows() {
        assert_eq!(
            kinds(r#"  port.open a:80,b:443 "x \"y\" \\" old->new # note"#),
            [
                "port.open",
                "a:80",
                ",",
                "b:443",
                r#"<x "y" \>"#,
                "old",
                "->",
                "new"
            ]
        );
    }

    #[test]
    fn hash_inside_a_word_is_not_a_comment() {
        assert_eq!(
            kinds("http.check http://x/#top"),
            ["http.check", "http://x/#top"]
        );
    }

    #[test]
    fn comment_and_indent_are_recorded() {
        let mut diags = Vec::new();
        let lines = lex(FileId(0), "step a\n\t  wait 5m   # soon  \r\n", &mut diags);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1].indent, 3);
        let (s, e) = lines[1].comment.unwrap();
        assert_eq!(&"step a\n\t  wait 5m   # soon  \r\n"[s..e], "# soon");
        assert!(lines[2].is_blank());
    }

    #[test]
    fn faults_point_at_their_bytes() {
        let mut diags = Vec::new();
        lex(FileId(0), "manual \"a\\qb", &mut diags);
        let codes: Vec<_> = diags
            .iter()
            .map(|d| (d.code, d.primary_span().unwrap().start))
            .collect();
        assert_eq!(codes, [("bad-escape", 9), ("unterminated-string", 7)]);
    }
}
