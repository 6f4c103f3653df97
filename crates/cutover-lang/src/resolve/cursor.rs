//! The token cursor: reads one line's tokens left to right and words what it
//! expected when a token is not there. Every parser of the language (items,
//! kinds, values) takes its tokens through it, so "expected X, found Y" reads
//! the same everywhere.

use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::lexer::{Line, Token, TokenKind};
use crate::source::{FileId, Span};

/// The longest name: a runbook's name is its state file's name
/// (`.cutover/NAME.db`), which a file system bounds at 255 bytes.
pub(super) const MAX_NAME: usize = 128;

/// A name of a runbook, host, group, key, step or site.
pub(super) fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A parse result: the value, or the one diagnostic that stopped it.
pub(super) type PResult<T> = Result<T, Diagnostic>;

/// The smallest span covering both.
pub(super) fn join(a: Span, b: Span) -> Span {
    Span::new(a.file, a.start.min(b.start), a.end.max(b.end))
}

/// A line's span, from its first token to its last.
pub(super) fn line_span(file: FileId, line: &Line) -> Span {
    match (line.tokens.first(), line.tokens.last()) {
        (Some(first), Some(last)) => Span::new(file, first.start, last.end),
        _ => Span::new(file, line.start, line.start),
    }
}

/// Long user text cut to 40 characters, for messages.
pub(super) fn short(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text.to_string()
    }
}

/// Reads one line's tokens left to right.
#[derive(Clone)]
pub(super) struct Cursor<'a> {
    pub(super) file: FileId,
    pub(super) text: &'a str,
    pub(super) tokens: &'a [Token],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(file: FileId, text: &'a str, line: &'a Line) -> Self {
        Cursor {
            file,
            text,
            tokens: &line.tokens,
            pos: 0,
        }
    }

    pub(super) fn span(&self, token: &Token) -> Span {
        Span::new(self.file, token.start, token.end)
    }

    pub(super) fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    pub(super) fn peek_word(&self) -> Option<&'a str> {
        self.peek()
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| &self.text[t.start..t.end])
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    /// A zero-width span just after the last token.
    pub(super) fn end_span(&self) -> Span {
        let end = self.tokens.last().map_or(0, |t| t.end);
        Span::new(self.file, end, end)
    }

    fn show(&self, token: &Token) -> String {
        match &token.kind {
            TokenKind::Word => format!("`{}`", short(&self.text[token.start..token.end])),
            TokenKind::Str(s) => format!("the string \"{}\"", short(s)),
            TokenKind::Comma => "`,`".to_string(),
            TokenKind::Arrow => "`->`".to_string(),
        }
    }

    pub(super) fn expected(&self, what: &str) -> Diagnostic {
        match self.peek() {
            Some(token) => Diagnostic::error(
                Code::UnexpectedToken,
                format!("expected {what}, found {}", self.show(token)),
                self.span(token),
            ),
            None => Diagnostic::error(
                Code::UnexpectedToken,
                format!("expected {what} at the end of this line"),
                self.end_span(),
            ),
        }
    }

    pub(super) fn word(&mut self, what: &str) -> PResult<(&'a str, Span)> {
        match self.peek_word() {
            Some(word) => {
                let span = self.peek().map(|t| self.span(t)).unwrap_or_default();
                self.pos += 1;
                Ok((word, span))
            }
            None => Err(self.expected(what)),
        }
    }

    pub(super) fn name(&mut self, what: &str) -> PResult<(&'a str, Span)> {
        let (word, span) = self.word(what)?;
        if is_name(word) && word.len() > MAX_NAME {
            Err(Diagnostic::error(
                Code::BadName,
                format!(
                    "`{}` is {} characters long; a name has at most {MAX_NAME}",
                    short(word),
                    word.len()
                ),
                span,
            )
            .with_help("a run's state file and every report are named after the runbook and its steps: use a shorter name"))
        } else if is_name(word) {
            Ok((word, span))
        } else {
            Err(Diagnostic::error(
                Code::BadName,
                format!("`{}` is not a valid name", short(word)),
                span,
            )
            .with_help("names are letters, digits, `-` and `_`, starting with a letter"))
        }
    }

    pub(super) fn string(&mut self, what: &str) -> PResult<(String, Span)> {
        match self.peek() {
            Some(
                token @ Token {
                    kind: TokenKind::Str(value),
                    ..
                },
            ) => {
                self.pos += 1;
                Ok((value.clone(), self.span(token)))
            }
            Some(token) if token.kind == TokenKind::Word => Err(self
                .expected(what)
                .with_help("put the text in double quotes: \"...\"")),
            _ => Err(self.expected(what)),
        }
    }

    pub(super) fn word_or_string(&mut self, what: &str) -> PResult<(String, Span)> {
        match self.peek() {
            Some(
                token @ Token {
                    kind: TokenKind::Str(value),
                    ..
                },
            ) => {
                self.pos += 1;
                Ok((value.clone(), self.span(token)))
            }
            _ => self.word(what).map(|(w, s)| (w.to_string(), s)),
        }
    }

    pub(super) fn eat(&mut self, keyword: &str) -> Option<Span> {
        if self.peek_word() == Some(keyword) {
            let span = self.peek().map(|t| self.span(t));
            self.pos += 1;
            span
        } else {
            None
        }
    }

    pub(super) fn eat_comma(&mut self) -> bool {
        if self.peek().is_some_and(|t| t.kind == TokenKind::Comma) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn arrow(&mut self) -> PResult<Span> {
        match self.peek() {
            Some(token) if token.kind == TokenKind::Arrow => {
                self.pos += 1;
                Ok(self.span(token))
            }
            _ => Err(self.expected("`->`")),
        }
    }

    pub(super) fn finish(&self) -> PResult<()> {
        match self.peek() {
            None => Ok(()),
            Some(token) => Err(Diagnostic::error(
                Code::UnexpectedToken,
                format!("unexpected {} at the end of this line", self.show(token)),
                Span::new(
                    self.file,
                    token.start,
                    self.tokens.last().map_or(token.end, |t| t.end),
                ),
            )
            .with_help("remove it, or start a new line for another fact")),
        }
    }

    /// `ELEMENT, ELEMENT, ...` — at least one.
    pub(super) fn list<T>(
        &mut self,
        mut element: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        let mut out = vec![element(self)?];
        while self.eat_comma() {
            out.push(element(self)?);
        }
        Ok(out)
    }
}
