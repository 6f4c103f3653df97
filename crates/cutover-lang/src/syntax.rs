//! The syntax tree: a file's lines (every line kept, blank and comment lines
//! included) grouped into items. An item is a header line at column 1 and the
//! indented body lines below it, e.g. `step NAME ...` and its kind line.

use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::lexer::{Line, lex};
use crate::source::{FileId, Span};

/// A header line and its body lines, as indices into [`SyntaxFile::lines`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub header: usize,
    pub body: Vec<usize>,
}

/// One file, lossless: the formatter prints it back from here.
#[derive(Debug, Clone)]
pub struct SyntaxFile {
    pub file: FileId,
    pub lines: Vec<Line>,
    pub items: Vec<Item>,
}

/// Lexes `text` and groups its lines into items.
pub fn parse_file(file: FileId, text: &str, diags: &mut Vec<Diagnostic>) -> SyntaxFile {
    let lines = lex(file, text, diags);
    let mut items: Vec<Item> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(first) = line.tokens.first() else {
            continue;
        };
        if line.indent == 0 {
            items.push(Item {
                header: index,
                body: Vec::new(),
            });
        } else if let Some(item) = items.last_mut() {
            item.body.push(index);
        } else {
            diags.push(
                Diagnostic::error(
                    Code::UnexpectedIndent,
                    "this indented line does not belong to any item",
                    Span::new(file, first.start, first.end),
                )
                .with_help("items (runbook, include, key, zone, host, group, step) start at column 1; their lines are indented below them"),
            );
        }
    }
    SyntaxFile { file, lines, items }
}
