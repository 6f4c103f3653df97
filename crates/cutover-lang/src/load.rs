//! Loading a runbook: read the file and the files it includes, parse them,
//! resolve names. Every fault, I/O included, becomes a diagnostic; nothing
//! here panics or returns early with an error type.

use crate::code::Code;
use crate::diagnostic::{Diagnostic, Severity};
use crate::lexer::TokenKind;
use crate::model::Runbook;
use crate::resolve::{ItemRef, resolve};
use crate::source::{FileId, SourceMap, Span};
use crate::syntax::{SyntaxFile, parse_file};
use std::path::{Path, PathBuf};

/// Files larger than this are refused: a runbook is a page of text.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// How deep `include` may nest.
const MAX_INCLUDE_DEPTH: usize = 16;

/// A runbook as loaded: its source files, the resolved runbook (only when
/// no error was found) and every diagnostic, in file order.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub sources: SourceMap,
    pub runbook: Option<Runbook>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
}

/// Reads, parses and resolves the runbook at `path` and the files it includes.
pub fn load_file(path: &Path) -> Loaded {
    let mut loader = Loader::default();
    match read_source(path) {
        Ok(text) => loader.load_root(path.to_path_buf(), text),
        Err(fault) => {
            let id = loader.add_unreadable(path.to_path_buf(), &fault);
            loader.unusable = true;
            loader
                .diagnostics
                .push(fault.into_diagnostic(path, id, None));
        }
    }
    loader.finish()
}

/// Parses and resolves `text` as if read from `path`; `include`s are read
/// from disk relative to `path`.
pub fn parse_source(path: impl Into<PathBuf>, text: String) -> Loaded {
    let mut loader = Loader::default();
    loader.load_root(path.into(), text);
    loader.finish()
}

/// Reads a runbook file's text for tools that do not resolve it (the
/// formatter); a file that cannot be read comes back as a [`Loaded`] holding
/// the diagnostic.
pub fn read_text(path: &Path) -> Result<String, Box<Loaded>> {
    read_source(path).map_err(|fault| {
        let mut loader = Loader::default();
        let id = loader.add_unreadable(path.to_path_buf(), &fault);
        loader
            .diagnostics
            .push(fault.into_diagnostic(path, id, None));
        Box::new(Loaded {
            sources: loader.sources,
            runbook: None,
            diagnostics: loader.diagnostics,
        })
    })
}

/// Why a file could not be used.
#[derive(Debug)]
pub(crate) enum ReadFault {
    Io(std::io::Error),
    Directory,
    TooLarge(u64),
    /// Not UTF-8: the text with replacement characters, and the offset of
    /// the first bad byte in it.
    NotUtf8 {
        lossy: String,
        offset: usize,
        byte: u8,
    },
}

impl ReadFault {
    fn into_diagnostic(self, path: &Path, file: FileId, at: Option<Span>) -> Diagnostic {
        let shown = path.display();
        let located = |code: Code, message: String, help: &str| {
            let mut d = match at {
                Some(span) => Diagnostic::error(code, message, span),
                None => Diagnostic {
                    labels: Vec::new(),
                    ..Diagnostic::error(code, message, Span::default())
                },
            };
            d.help = Some(help.to_string());
            d
        };
        match self {
            ReadFault::Io(err) => located(
                Code::IoError,
                format!("cannot read `{shown}`: {err}"),
                "check the path and its permissions",
            ),
            ReadFault::Directory => located(
                Code::IoError,
                format!("`{shown}` is a directory, not a runbook file"),
                "name a `.runbook` file",
            ),
            ReadFault::TooLarge(size) => located(
                Code::FileTooLarge,
                format!(
                    "`{shown}` is {size} bytes; runbooks are limited to {MAX_FILE_BYTES} bytes"
                ),
                "is this really a runbook file?",
            ),
            ReadFault::NotUtf8 {
                offset,
                byte,
                lossy,
            } => {
                let width = lossy[offset..].chars().next().map_or(0, char::len_utf8);
                let span = Span::new(file, offset, offset + width);
                let mut d = Diagnostic::error(
                    Code::NotUtf8,
                    format!(
                        "`{shown}` is not UTF-8 text: byte 0x{byte:02X} cannot start a character here"
                    ),
                    span,
                );
                if let Some(include) = at {
                    d = d.with_label(include, "included here");
                }
                d.with_help("save the file as UTF-8")
            }
        }
    }
}

pub(crate) fn read_source(path: &Path) -> Result<String, ReadFault> {
    let meta = std::fs::metadata(path).map_err(ReadFault::Io)?;
    if meta.is_dir() {
        return Err(ReadFault::Directory);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadFault::TooLarge(meta.len()));
    }
    let mut bytes = std::fs::read(path).map_err(ReadFault::Io)?;
    // Editors on some systems start UTF-8 files with a byte order mark;
    // it is not part of the text.
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|err| {
        let offset = err.utf8_error().valid_up_to();
        let byte = err.as_bytes().get(offset).copied().unwrap_or(0);
        let lossy = String::from_utf8_lossy(err.as_bytes()).into_owned();
        ReadFault::NotUtf8 {
            lossy,
            offset,
            byte,
        }
    })
}

#[derive(Default)]
struct Loader {
    sources: SourceMap,
    syntax: Vec<SyntaxFile>,
    items: Vec<ItemRef>,
    diagnostics: Vec<Diagnostic>,
    /// The chain of files being included, canonicalised, to refuse cycles.
    chain: Vec<PathBuf>,
    /// Set when the root file could not be parsed at all.
    unusable: bool,
}

impl Loader {
    fn add(&mut self, path: PathBuf, text: String) -> FileId {
        let id = self.sources.add(path, text);
        let syntax = parse_file(id, &self.sources.file(id).text, &mut self.diagnostics);
        self.syntax.push(syntax);
        id
    }

    fn add_unreadable(&mut self, path: PathBuf, fault: &ReadFault) -> FileId {
        let text = match fault {
            ReadFault::NotUtf8 { lossy, .. } => lossy.clone(),
            _ => String::new(),
        };
        let id = self.sources.add(path, text);
        self.syntax.push(SyntaxFile {
            file: id,
            lines: Vec::new(),
            items: Vec::new(),
        });
        id
    }

    fn load_root(&mut self, path: PathBuf, text: String) {
        if text.trim().is_empty() {
            let id = self.add(path.clone(), text);
            self.unusable = true;
            self.diagnostics.push(
                Diagnostic::error(
                    Code::EmptyFile,
                    format!("`{}` is empty", path.display()),
                    Span::new(id, 0, 0),
                )
                .with_help("a runbook starts with `runbook NAME`; see docs/language.md"),
            );
            return;
        }
        self.chain
            .push(std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()));
        let id = self.add(path, text);
        self.walk(id);
    }

    /// Queues the items of `id` in order, splicing in included files.
    fn walk(&mut self, id: FileId) {
        for index in 0..self.syntax[id.0 as usize].items.len() {
            let syntax = &self.syntax[id.0 as usize];
            let item = &syntax.items[index];
            let header = &syntax.lines[item.header];
            let text = &self.sources.file(id).text;
            let first = &header.tokens[0];
            if first.kind == TokenKind::Word && &text[first.start..first.end] == "include" {
                let target = match header.tokens.get(1) {
                    Some(t) if header.tokens.len() == 2 => match &t.kind {
                        TokenKind::Str(s) => Ok((s.clone(), Span::new(id, t.start, t.end))),
                        TokenKind::Word => Ok((
                            text[t.start..t.end].to_string(),
                            Span::new(id, t.start, t.end),
                        )),
                        _ => Err(Span::new(id, t.start, t.end)),
                    },
                    Some(t) => Err(Span::new(
                        id,
                        t.start,
                        header.tokens.last().map_or(t.end, |l| l.end),
                    )),
                    None => Err(Span::new(id, first.start, first.end)),
                };
                let body = item.body.first().map(|&l| &syntax.lines[l]);
                if let Some(line) = body {
                    let t = &line.tokens[0];
                    self.diagnostics.push(
                        Diagnostic::error(
                            Code::UnexpectedIndent,
                            "an `include` takes no indented lines",
                            Span::new(id, t.start, t.end),
                        )
                        .with_help("write `include \"PATH\"` on one line, or unindent this line"),
                    );
                }
                match target {
                    Ok((relative, span)) => self.include(id, &relative, span),
                    Err(span) => self.diagnostics.push(
                        Diagnostic::error(Code::BadKindArgs, "`include` takes one path", span)
                            .with_help("write `include \"hosts.runbook\"` (relative to this file)"),
                    ),
                }
            } else {
                self.items.push(ItemRef {
                    file: id,
                    item: index,
                });
            }
        }
    }

    fn include(&mut self, from: FileId, relative: &str, span: Span) {
        let base = self
            .sources
            .file(from)
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = base.join(relative);
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if self.chain.contains(&canonical) {
            self.diagnostics.push(
                Diagnostic::error(
                    Code::IncludeCycle,
                    format!("`{relative}` includes itself (directly or through other files)"),
                    span,
                )
                .with_help("remove this `include`; each file is included once"),
            );
            return;
        }
        if self.chain.len() >= MAX_INCLUDE_DEPTH {
            self.diagnostics.push(
                Diagnostic::error(
                    Code::IncludeCycle,
                    format!("includes nest deeper than {MAX_INCLUDE_DEPTH} files"),
                    span,
                )
                .with_help("include the files from one place instead of from each other"),
            );
            return;
        }
        match read_source(&path) {
            Ok(text) => {
                self.chain.push(canonical);
                let id = self.add(path, text);
                self.walk(id);
                self.chain.pop();
            }
            Err(fault @ ReadFault::NotUtf8 { .. }) => {
                let id = self.add_unreadable(path.clone(), &fault);
                self.diagnostics
                    .push(fault.into_diagnostic(&path, id, Some(span)));
            }
            Err(fault) => {
                let d = fault.into_diagnostic(&path, from, Some(span));
                self.diagnostics.push(d);
            }
        }
    }

    fn finish(mut self) -> Loaded {
        let main = FileId(0);
        let runbook = if self.unusable {
            None
        } else {
            let (runbook, found) = resolve(&self.sources, &self.syntax, &self.items, main);
            self.diagnostics.extend(found);
            runbook.filter(|_| {
                !self
                    .diagnostics
                    .iter()
                    .any(|d| d.severity == Severity::Error)
            })
        };
        self.diagnostics
            .sort_by_key(|d| d.primary_span().map(|s| (s.file, s.start, s.end)));
        Loaded {
            sources: self.sources,
            runbook,
            diagnostics: self.diagnostics,
        }
    }
}
