//! Name resolution and checking: turns the items of a runbook's files into
//! the typed [`Runbook`]. Every line is read on its own, so one faulty line
//! costs one diagnostic and the rest of the file is still checked.
//!
//! Names are declared first (so a step may name a later step in `after`),
//! then each item is built with its references resolved, then the checks that
//! need the whole runbook run (the `after` graph, window-relative times).

use crate::diagnostic::{Diagnostic, Severity};
use crate::lexer::{Line, Token, TokenKind};
use crate::model::*;
use crate::source::{FileId, SourceMap, Span};
use crate::suggest::closest;
use crate::syntax::{Item, SyntaxFile};
use crate::units::{Bandwidth, Size, TimeSpec, parse_duration, parse_utc};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

type PResult<T> = Result<T, Diagnostic>;

/// An item to resolve: which file, which item in it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ItemRef {
    pub file: FileId,
    pub item: usize,
}

/// The kind keywords, their argument syntax, and whether they may follow `verify`.
const KINDS: &[(&str, &str, bool)] = &[
    ("dns.ttl", "dns.ttl ZONE NAME... TYPE TTL [was TTL]", false),
    ("dns.switch", "dns.switch ZONE NAME TYPE OLD -> NEW", false),
    (
        "image.copy",
        "image.copy HOST:/PATH -> HOST:/PATH [size SIZE]",
        false,
    ),
    (
        "db.sync",
        "db.sync sqlite HOST:/PATH -> HOST:/PATH [size SIZE], or db.sync postgres|mysql HOST[:PORT]/DATABASE user USER [password env:VAR|file:PATH] -> (the same) [freeze STEP] [size SIZE]",
        false,
    ),
    ("port.open", "port.open HOST:PORT, GROUP:PORT, ...", true),
    (
        "port.closed",
        "port.closed HOST:PORT, GROUP:PORT, ...",
        true,
    ),
    (
        "http.check",
        "http.check URL [at HOST] [status CODE] [body \"TEXT\"] [ca FILE] [cert-days N]",
        true,
    ),
    (
        "exec",
        "exec [on HOST|GROUP, ...] \"COMMAND\" [env NAME, ...]",
        true,
    ),
    ("manual", "manual \"INSTRUCTIONS\"", false),
    ("wait", "wait DURATION | wait until TIME", false),
];

const ITEM_KEYWORDS: &[&str] = &["runbook", "include", "key", "zone", "host", "group", "step"];
const STEP_ATTRIBUTES: &[&str] = &["undo", "verify", "timeout", "retry", "expect"];
const RECORD_TYPES: &str = "A, AAAA, CNAME, MX, TXT, NS or SRV";

fn join(a: Span, b: Span) -> Span {
    Span::new(a.file, a.start.min(b.start), a.end.max(b.end))
}

fn line_span(file: FileId, line: &Line) -> Span {
    match (line.tokens.first(), line.tokens.last()) {
        (Some(first), Some(last)) => Span::new(file, first.start, last.end),
        _ => Span::new(file, line.start, line.start),
    }
}

/// The longest name: a runbook's name is its state file's name
/// (`.cutover/NAME.db`), which a file system bounds at 255 bytes.
const MAX_NAME: usize = 128;

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_domain(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn is_record_name(text: &str) -> bool {
    text == "@"
        || (!text.ends_with('.')
            && text.split('.').enumerate().all(|(i, label)| {
                (i == 0 && label == "*")
                    || (!label.is_empty()
                        && label.len() <= 63
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            }))
}

fn record_type(text: &str) -> Option<RecordType> {
    Some(match text {
        "A" => RecordType::A,
        "AAAA" => RecordType::Aaaa,
        "CNAME" => RecordType::Cname,
        "MX" => RecordType::Mx,
        "TXT" => RecordType::Txt,
        "NS" => RecordType::Ns,
        "SRV" => RecordType::Srv,
        _ => return None,
    })
}

/// Zone names are compared without case and without a trailing dot.
pub(crate) fn zone_key(text: &str) -> String {
    text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase()
}

fn short(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text.to_string()
    }
}

/// Reads one line's tokens left to right.
#[derive(Clone)]
struct Cursor<'a> {
    file: FileId,
    text: &'a str,
    tokens: &'a [Token],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(file: FileId, text: &'a str, line: &'a Line) -> Self {
        Cursor {
            file,
            text,
            tokens: &line.tokens,
            pos: 0,
        }
    }

    fn span(&self, token: &Token) -> Span {
        Span::new(self.file, token.start, token.end)
    }

    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    fn peek_word(&self) -> Option<&'a str> {
        self.peek()
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| &self.text[t.start..t.end])
    }

    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    /// A zero-width span just after the last token.
    fn end_span(&self) -> Span {
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

    fn expected(&self, what: &str) -> Diagnostic {
        match self.peek() {
            Some(token) => Diagnostic::error(
                "unexpected-token",
                format!("expected {what}, found {}", self.show(token)),
                self.span(token),
            ),
            None => Diagnostic::error(
                "unexpected-token",
                format!("expected {what} at the end of this line"),
                self.end_span(),
            ),
        }
    }

    fn word(&mut self, what: &str) -> PResult<(&'a str, Span)> {
        match self.peek_word() {
            Some(word) => {
                let span = self.peek().map(|t| self.span(t)).unwrap_or_default();
                self.pos += 1;
                Ok((word, span))
            }
            None => Err(self.expected(what)),
        }
    }

    fn name(&mut self, what: &str) -> PResult<(&'a str, Span)> {
        let (word, span) = self.word(what)?;
        if is_name(word) && word.len() > MAX_NAME {
            Err(Diagnostic::error(
                "bad-name",
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
                "bad-name",
                format!("`{}` is not a valid name", short(word)),
                span,
            )
            .with_help("names are letters, digits, `-` and `_`, starting with a letter"))
        }
    }

    fn string(&mut self, what: &str) -> PResult<(String, Span)> {
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

    fn word_or_string(&mut self, what: &str) -> PResult<(String, Span)> {
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

    fn eat(&mut self, keyword: &str) -> Option<Span> {
        if self.peek_word() == Some(keyword) {
            let span = self.peek().map(|t| self.span(t));
            self.pos += 1;
            span
        } else {
            None
        }
    }

    fn eat_comma(&mut self) -> bool {
        if self.peek().is_some_and(|t| t.kind == TokenKind::Comma) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn arrow(&mut self) -> PResult<Span> {
        match self.peek() {
            Some(token) if token.kind == TokenKind::Arrow => {
                self.pos += 1;
                Ok(self.span(token))
            }
            _ => Err(self.expected("`->`")),
        }
    }

    fn finish(&self) -> PResult<()> {
        match self.peek() {
            None => Ok(()),
            Some(token) => Err(Diagnostic::error(
                "unexpected-token",
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
    fn list<T>(&mut self, mut element: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let mut out = vec![element(self)?];
        while self.eat_comma() {
            out.push(element(self)?);
        }
        Ok(out)
    }
}

/// A name declared by an item, for lookups and "first declared here".
#[derive(Debug, Clone, Copy)]
enum HostLike {
    Host(usize),
    Group(usize),
}

struct Declared<'a> {
    file: FileId,
    text: &'a str,
    lines: &'a [Line],
    item: &'a Item,
    name: &'a str,
    name_span: Span,
}

impl<'a> Declared<'a> {
    fn header(&self) -> &'a Line {
        &self.lines[self.item.header]
    }
    /// A cursor just after `KEYWORD NAME`.
    fn header_rest(&self) -> Cursor<'a> {
        let mut cursor = Cursor::new(self.file, self.text, self.header());
        cursor.pos = 2;
        cursor
    }
    fn header_span(&self) -> Span {
        line_span(self.file, self.header())
    }
    fn body(&self) -> impl Iterator<Item = Cursor<'a>> + '_ {
        self.item
            .body
            .iter()
            .map(|&i| Cursor::new(self.file, self.text, &self.lines[i]))
    }
}

struct Resolver<'a> {
    diags: Vec<Diagnostic>,
    keys: Vec<Declared<'a>>,
    zones: Vec<Declared<'a>>,
    hosts: Vec<Declared<'a>>,
    groups: Vec<Declared<'a>>,
    steps: Vec<Declared<'a>>,
    key_index: HashMap<&'a str, usize>,
    zone_index: HashMap<String, usize>,
    host_index: HashMap<&'a str, HostLike>,
    step_index: HashMap<&'a str, usize>,
    /// Every group's members (also of groups with errors, so indices match),
    /// shared with the [`Group`] and every step that names it.
    group_members: Vec<Arc<[HostId]>>,
    /// Window-relative times, which need a `window`.
    relative_times: Vec<Span>,
    /// Variables handed to `exec` commands (`env NAME`): none may hold a
    /// key's secret.
    exec_env: Vec<(String, Span)>,
}

/// Resolves and checks the items, in order; returns the runbook when no
/// error was found, and every diagnostic.
pub(crate) fn resolve(
    sources: &SourceMap,
    syntax: &[SyntaxFile],
    items: &[ItemRef],
    main: FileId,
) -> (Option<Runbook>, Vec<Diagnostic>) {
    let mut r = Resolver {
        diags: Vec::new(),
        keys: Vec::new(),
        zones: Vec::new(),
        hosts: Vec::new(),
        groups: Vec::new(),
        steps: Vec::new(),
        key_index: HashMap::new(),
        zone_index: HashMap::new(),
        host_index: HashMap::new(),
        step_index: HashMap::new(),
        group_members: Vec::new(),
        relative_times: Vec::new(),
        exec_env: Vec::new(),
    };
    let mut runbook_items = Vec::new();
    for item_ref in items {
        let text = sources.file(item_ref.file).text.as_str();
        let file = &syntax[item_ref.file.0 as usize];
        let item = &file.items[item_ref.item];
        r.declare(item_ref.file, text, &file.lines, item, &mut runbook_items);
    }
    let keys = r.build_all(|r, i| r.build_key(i), |r| r.keys.len());
    let zones = r.build_all(|r, i| r.build_zone(i), |r| r.zones.len());
    let hosts = r.build_all(|r, i| r.build_host(i), |r| r.hosts.len());
    let groups = r.build_all(|r, i| r.build_group(i), |r| r.groups.len());
    let steps = r.build_all(|r, i| r.build_step(i), |r| r.steps.len());
    let header = r.build_header(&runbook_items, main);
    if let Some(steps) = &steps {
        r.check_cycles(steps);
    }
    if let Some(steps) = &steps {
        r.check_db_sync(steps);
    }
    if let Some(keys) = &keys {
        r.check_exec_env(keys);
    }
    if header.as_ref().is_some_and(|h| h.window.is_none()) {
        for &span in &r.relative_times {
            r.diags.push(
                Diagnostic::error("no-window", "a time relative to T0 needs a window", span)
                    .with_help(
                        "declare the window under `runbook`: `window 2013-03-14 17:00 UTC for 6h`",
                    ),
            );
        }
    }
    let mut diags = r.diags;
    // By position; at one position a whole-file finding (an empty span) comes first.
    diags.sort_by_key(|d| d.primary_span().map(|s| (s.file, s.start, s.end)));
    let failed = diags.iter().any(|d| d.severity == Severity::Error);
    let runbook = match (failed, header, keys, zones, hosts, groups, steps) {
        (false, Some(header), Some(keys), Some(zones), Some(hosts), Some(groups), Some(steps)) => {
            Some(Runbook {
                name: header.name,
                title: header.title,
                window: header.window,
                links: header.links,
                keys,
                zones,
                hosts,
                groups,
                steps,
                span: header.span,
            })
        }
        _ => None,
    };
    (runbook, diags)
}

struct Header {
    name: String,
    title: Option<String>,
    window: Option<Window>,
    links: Vec<Link>,
    span: Span,
}

impl<'a> Resolver<'a> {
    fn declare(
        &mut self,
        file: FileId,
        text: &'a str,
        lines: &'a [Line],
        item: &'a Item,
        runbook_items: &mut Vec<(FileId, &'a str, &'a [Line], &'a Item)>,
    ) {
        let header = &lines[item.header];
        let mut cursor = Cursor::new(file, text, header);
        let Ok((keyword, keyword_span)) = cursor.word("an item keyword") else {
            self.diags
                .push(cursor.expected(
                    "an item keyword (runbook, include, key, zone, host, group or step)",
                ));
            return;
        };
        if keyword == "runbook" {
            runbook_items.push((file, text, lines, item));
            return;
        }
        let what = match keyword {
            "key" | "host" | "group" | "step" => keyword,
            "zone" => "zone",
            _ => {
                self.diags.push(self.unknown_keyword(
                    keyword,
                    keyword_span,
                    ITEM_KEYWORDS,
                    "an item",
                ));
                return;
            }
        };
        let name = if what == "zone" {
            cursor
                .word("a zone name like `example.org`")
                .and_then(|(w, s)| {
                    if is_domain(w) {
                        Ok((w, s))
                    } else {
                        Err(Diagnostic::error(
                            "bad-name",
                            format!("`{}` is not a domain name", short(w)),
                            s,
                        )
                        .with_help("a zone is a domain name such as `maemo.org`"))
                    }
                })
        } else {
            cursor.name(&format!("the {what}'s name"))
        };
        let (name, name_span) = match name {
            Ok(found) => found,
            Err(d) => return self.diags.push(d),
        };
        let declared = Declared {
            file,
            text,
            lines,
            item,
            name,
            name_span,
        };
        let previous = match what {
            "key" => self.key_index.get(name).map(|&i| self.keys[i].name_span),
            "zone" => self
                .zone_index
                .get(&zone_key(name))
                .map(|&i| self.zones[i].name_span),
            "step" => self.step_index.get(name).map(|&i| self.steps[i].name_span),
            _ => self.host_index.get(name).map(|&h| match h {
                HostLike::Host(i) => self.hosts[i].name_span,
                HostLike::Group(i) => self.groups[i].name_span,
            }),
        };
        if let Some(first) = previous {
            let namespace = if what == "host" || what == "group" {
                "host or group"
            } else {
                what
            };
            self.diags.push(
                Diagnostic::error(
                    "duplicate-name",
                    format!("the {namespace} `{name}` is declared twice"),
                    name_span,
                )
                .with_label(first, "first declared here")
                .with_help(format!(
                    "rename one of them; every {namespace} needs a name of its own"
                )),
            );
            return;
        }
        match what {
            "key" => {
                self.key_index.insert(name, self.keys.len());
                self.keys.push(declared);
            }
            "zone" => {
                self.zone_index.insert(zone_key(name), self.zones.len());
                self.zones.push(declared);
            }
            "host" => {
                self.host_index
                    .insert(name, HostLike::Host(self.hosts.len()));
                self.hosts.push(declared);
            }
            "group" => {
                self.host_index
                    .insert(name, HostLike::Group(self.groups.len()));
                self.groups.push(declared);
            }
            _ => {
                self.step_index.insert(name, self.steps.len());
                self.steps.push(declared);
            }
        }
    }

    /// Builds every declared item of one sort; `None` if any failed.
    fn build_all<T>(
        &mut self,
        mut build: impl FnMut(&mut Self, usize) -> Option<T>,
        count: impl Fn(&Self) -> usize,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        let mut complete = true;
        for index in 0..count(self) {
            match build(self, index) {
                Some(value) => out.push(value),
                None => complete = false,
            }
        }
        complete.then_some(out)
    }

    fn push<T>(&mut self, result: PResult<T>) -> Option<T> {
        result.map_err(|d| self.diags.push(d)).ok()
    }

    fn unknown_keyword(&self, word: &str, span: Span, allowed: &[&str], place: &str) -> Diagnostic {
        let help = match closest(word, allowed.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("{place} line starts with one of: {}", allowed.join(", ")),
        };
        Diagnostic::error(
            "unknown-keyword",
            format!("unknown keyword `{}` here", short(word)),
            span,
        )
        .with_help(help)
    }

    fn no_body(&mut self, declared_index: &Declared<'a>, what: &str) {
        let file = declared_index.file;
        if let Some(&first) = declared_index.item.body.first() {
            let span = line_span(file, &declared_index.lines[first]);
            self.diags.push(
                Diagnostic::error(
                    "unexpected-indent",
                    format!("a `{what}` takes no indented lines"),
                    span,
                )
                .with_help(format!(
                    "write the whole `{what}` on one line, or unindent this line"
                )),
            );
        }
    }

    fn build_header(
        &mut self,
        items: &[(FileId, &'a str, &'a [Line], &'a Item)],
        main: FileId,
    ) -> Option<Header> {
        let Some(&(file, text, lines, item)) = items.first() else {
            self.diags.push(
                Diagnostic::error(
                    "missing-runbook",
                    "this file has no `runbook` line",
                    Span::new(main, 0, 0),
                )
                .with_help(
                    "start the file with `runbook NAME`, followed by its title, window and links",
                ),
            );
            return None;
        };
        for &(dup_file, _, dup_lines, dup_item) in &items[1..] {
            self.diags.push(
                Diagnostic::error(
                    "duplicate-name",
                    "a second `runbook` line",
                    line_span(dup_file, &dup_lines[dup_item.header]),
                )
                .with_label(
                    line_span(file, &lines[item.header]),
                    "the runbook is declared here",
                )
                .with_help("one runbook per file set; remove this line or split the files"),
            );
        }
        let header_line = &lines[item.header];
        let span = line_span(file, header_line);
        let mut cursor = Cursor::new(file, text, header_line);
        cursor.pos = 1;
        let name = self.push(
            cursor
                .name("the runbook's name")
                .and_then(|(n, _)| cursor.finish().map(|()| n)),
        );
        let mut title: Option<(String, Span)> = None;
        let mut window: Option<Window> = None;
        let mut links = Vec::new();
        for &index in &item.body {
            let line = &lines[index];
            let mut cursor = Cursor::new(file, text, line);
            let Some((keyword, keyword_span)) =
                self.push(cursor.word("`title`, `window` or `link`"))
            else {
                continue;
            };
            let line_span = line_span(file, line);
            let result: PResult<()> = match keyword {
                "title" => cursor
                    .string("the title in double quotes")
                    .and_then(|(t, _)| {
                        cursor.finish()?;
                        match &title {
                            Some((_, first)) => {
                                Err(duplicate_attribute("title", line_span, *first))
                            }
                            None => {
                                title = Some((t, line_span));
                                Ok(())
                            }
                        }
                    }),
                "window" => parse_window(&mut cursor, line_span).and_then(|w| match &window {
                    Some(first) => Err(duplicate_attribute("window", line_span, first.span)),
                    None => {
                        window = Some(w);
                        Ok(())
                    }
                }),
                "link" => parse_link(&mut cursor, line_span).map(|l| links.push(l)),
                _ => Err(self.unknown_keyword(
                    keyword,
                    keyword_span,
                    &["title", "window", "link"],
                    "a `runbook`",
                )),
            };
            self.push(result);
        }
        Some(Header {
            name: name?.to_string(),
            title: title.map(|(t, _)| t),
            window,
            links,
            span,
        })
    }

    fn build_key(&mut self, index: usize) -> Option<Key> {
        let declared = self.keys[index].clone_ref();
        let span = declared.header_span();
        let mut cursor = declared.header_rest();
        let name = declared.name.to_string();
        self.no_body(&declared, "key");
        let result = (|| {
            let (algorithm, algorithm_span) =
                cursor.word("the algorithm: hmac-sha256, hmac-sha384 or hmac-sha512")?;
            let algorithm = match algorithm {
                "hmac-sha256" => TsigAlgorithm::HmacSha256,
                "hmac-sha384" => TsigAlgorithm::HmacSha384,
                "hmac-sha512" => TsigAlgorithm::HmacSha512,
                other => {
                    let mut d = Diagnostic::error(
                        "bad-value",
                        format!("unknown TSIG algorithm `{}`", short(other)),
                        algorithm_span,
                    );
                    d.help = Some(
                        match closest(other, ["hmac-sha256", "hmac-sha384", "hmac-sha512"]) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => "use hmac-sha256, hmac-sha384 or hmac-sha512".to_string(),
                        },
                    );
                    return Err(d);
                }
            };
            let (secret, secret_span) =
                cursor.word_or_string("the secret's source: `env:VARIABLE` or `file:PATH`")?;
            let secret = parse_secret(&secret, secret_span)?;
            cursor.finish()?;
            Ok(Key {
                name,
                algorithm,
                secret,
                span,
            })
        })();
        self.push(result)
    }

    fn build_zone(&mut self, index: usize) -> Option<Zone> {
        let declared = self.zones[index].clone_ref();
        let span = declared.header_span();
        self.push(declared.header_rest().finish());
        let mut primary: Option<(SocketAddr, Option<KeyId>, Span)> = None;
        let mut verify: Option<(Vec<SocketAddr>, Span)> = None;
        let mut resolvers: Option<(Vec<SocketAddr>, Span)> = None;
        let mut failed = false;
        for mut cursor in declared.body() {
            let Some((keyword, keyword_span)) =
                self.push(cursor.word("`primary`, `verify` or `resolvers`"))
            else {
                failed = true;
                continue;
            };
            let this_line = join(
                keyword_span,
                cursor
                    .tokens
                    .last()
                    .map_or(keyword_span, |t| cursor.span(t)),
            );
            let result: PResult<()> = match keyword {
                "primary" => (|| {
                    let (addr, _) = server_address(&mut cursor)?;
                    let key = match cursor.eat("key") {
                        Some(_) => {
                            let (name, name_span) = cursor.name("the key's name")?;
                            Some(self.key_ref(name, name_span)?)
                        }
                        None => None,
                    };
                    cursor.finish()?;
                    if let Some((_, _, first)) = primary {
                        return Err(duplicate_attribute("primary", this_line, first));
                    }
                    primary = Some((addr, key, this_line));
                    Ok(())
                })(),
                "verify" | "resolvers" => (|| {
                    let addrs = cursor.list(|c| server_address(c).map(|(a, _)| a))?;
                    cursor.finish()?;
                    let slot = if keyword == "verify" {
                        &mut verify
                    } else {
                        &mut resolvers
                    };
                    if let Some((_, first)) = slot {
                        return Err(duplicate_attribute(keyword, this_line, *first));
                    }
                    *slot = Some((addrs, this_line));
                    Ok(())
                })(),
                _ => Err(self.unknown_keyword(
                    keyword,
                    keyword_span,
                    &["primary", "verify", "resolvers"],
                    "a `zone`",
                )),
            };
            failed |= self.push(result).is_none();
        }
        if failed {
            return None;
        }
        let Some((primary, key, _)) = primary else {
            self.diags.push(
                Diagnostic::error("missing-primary", format!("zone `{}` has no `primary` server", declared.name), span)
                    .with_help("add an indented line: `primary 192.0.2.53:53 key KEY` (the server that takes updates)"),
            );
            return None;
        };
        Some(Zone {
            name: zone_key(declared.name),
            primary,
            key,
            verify: verify.map_or_else(|| vec![primary], |(v, _)| v),
            resolvers: resolvers.map(|(r, _)| r).unwrap_or_default(),
            span,
        })
    }

    fn build_host(&mut self, index: usize) -> Option<Host> {
        let declared = self.hosts[index].clone_ref();
        let span = declared.header_span();
        let mut site: Option<(String, Span)> = None;
        let mut addr: Option<(IpAddr, Span)> = None;
        let mut transport: Option<(Transport, Span)> = None;
        let mut failed = false;
        for mut cursor in std::iter::once(declared.header_rest()).chain(declared.body()) {
            let result = (|| {
                while !cursor.at_end() {
                    let (keyword, keyword_span) = cursor.word("`site`, `addr` or `via`")?;
                    match keyword {
                        "site" => {
                            let (name, name_span) = cursor.name("the site's name")?;
                            let whole = join(keyword_span, name_span);
                            if let Some((_, first)) = &site {
                                return Err(duplicate_attribute("site", whole, *first));
                            }
                            site = Some((name.to_string(), whole));
                        }
                        "addr" => {
                            let (text, text_span) = cursor.word("the host's IP address")?;
                            let ip = IpAddr::from_str(text).map_err(|_| {
                                Diagnostic::error("bad-address", format!("`{}` is not an IP address", short(text)), text_span)
                                    .with_help("write an IPv4 or IPv6 address, like `192.0.2.10` or `2001:db8::10`")
                            })?;
                            let whole = join(keyword_span, text_span);
                            if let Some((_, first)) = &addr {
                                return Err(duplicate_attribute("addr", whole, *first));
                            }
                            addr = Some((ip, whole));
                        }
                        "via" => {
                            let (how, whole) = parse_transport(&mut cursor, keyword_span)?;
                            if let Some((_, first)) = &transport {
                                return Err(duplicate_attribute("via", whole, *first));
                            }
                            transport = Some((how, whole));
                        }
                        other => {
                            return Err(Diagnostic::error(
                                "unexpected-token",
                                format!("unknown host attribute `{}`", short(other)),
                                keyword_span,
                            )
                            .with_help("a host line is `host NAME [site SITE] addr IP via local PATH|ssh USER@HOST|agent \"COMMAND\"`"));
                        }
                    }
                }
                Ok(())
            })();
            failed |= self.push(result).is_none();
        }
        let missing = |what: &str, example: &str| {
            Diagnostic::error(
                "missing-attribute",
                format!("host `{}` has no `{what}`", declared.name),
                declared.name_span,
            )
            .with_help(format!("add `{example}` to the host line"))
        };
        if failed {
            return None;
        }
        if addr.is_none() {
            self.diags.push(missing("addr", "addr 192.0.2.10"));
        }
        if transport.is_none() {
            self.diags.push(missing("via", "via ssh root@192.0.2.10"));
        }
        Some(Host {
            name: declared.name.to_string(),
            site: site.map(|(s, _)| s),
            addr: addr?.0,
            transport: transport?.0,
            span,
        })
    }

    fn build_group(&mut self, index: usize) -> Option<Group> {
        let declared = self.groups[index].clone_ref();
        let mut members: Vec<HostId> = Vec::new();
        let mut taken: HashSet<HostId> = HashSet::new();
        let mut failed = false;
        let mut seen_any = false;
        for mut cursor in std::iter::once(declared.header_rest()).chain(declared.body()) {
            if cursor.at_end() {
                continue;
            }
            seen_any = true;
            let result = cursor
                .list(|c| {
                    let (name, span) = c.name("a host name")?;
                    match self.host_index.get(name) {
                        Some(HostLike::Host(i)) => Ok(HostId(*i)),
                        Some(HostLike::Group(_)) => Err(Diagnostic::error(
                            "nested-group",
                            format!("`{name}` is a group; groups list hosts"),
                            span,
                        )
                        .with_help(format!("list the hosts of `{name}` here instead"))),
                        None => Err(self.unknown("host", name, span)),
                    }
                })
                .and_then(|ids| cursor.finish().map(|()| ids));
            match self.push(result) {
                Some(ids) => {
                    for id in ids {
                        if taken.insert(id) {
                            members.push(id);
                        }
                    }
                }
                None => failed = true,
            }
        }
        if !seen_any {
            self.diags.push(
                Diagnostic::error(
                    "empty-group",
                    format!("group `{}` has no hosts", declared.name),
                    declared.name_span,
                )
                .with_help(format!(
                    "list its hosts: `group {} HOST, HOST`",
                    declared.name
                )),
            );
            failed = true;
        }
        let members: Arc<[HostId]> = members.into();
        self.group_members.push(Arc::clone(&members));
        (!failed).then(|| Group {
            name: declared.name.to_string(),
            members,
            span: declared.header_span(),
        })
    }

    fn build_step(&mut self, index: usize) -> Option<Step> {
        let declared = self.steps[index].clone_ref();
        let span = declared.header_span();
        let mut at: Option<TimeSpec> = None;
        let mut after: Vec<StepId> = Vec::new();
        let mut failed = false;
        let mut header = declared.header_rest();
        let header_result: PResult<()> = (|| {
            let mut at_span: Option<Span> = None;
            let mut after_span: Option<Span> = None;
            while !header.at_end() {
                let (keyword, keyword_span) = header.word("`at TIME` or `after STEP, ...`")?;
                match keyword {
                    "at" => {
                        let (time, time_span) = parse_time(&mut header)?;
                        if let Some(first) = at_span {
                            return Err(duplicate_attribute("at", time_span, first));
                        }
                        if matches!(time, TimeSpec::Relative(_)) {
                            self.relative_times.push(time_span);
                        }
                        at = Some(time);
                        at_span = Some(join(keyword_span, time_span));
                    }
                    "after" => {
                        if let Some(first) = after_span {
                            return Err(duplicate_attribute("after", keyword_span, first));
                        }
                        after_span = Some(keyword_span);
                        let ids = header.list(|c| {
                            let (name, name_span) = c.name("a step name")?;
                            self.step_ref(name, name_span)
                        })?;
                        for id in ids {
                            if !after.contains(&id) {
                                after.push(id);
                            }
                        }
                    }
                    other => {
                        return Err(Diagnostic::error(
                            "unexpected-token",
                            format!("expected `at` or `after`, found `{}`", short(other)),
                            keyword_span,
                        )
                        .with_help("a step line is `step NAME [at TIME] [after STEP, STEP...]`"));
                    }
                }
            }
            Ok(())
        })();
        failed |= self.push(header_result).is_none();

        let mut action: Option<Action> = None;
        let mut undo: Option<Action> = None;
        let mut verify = Vec::new();
        let mut timeout: Option<(Duration, Span)> = None;
        let mut retry: Option<(u32, Span)> = None;
        let mut expect: Option<(Duration, Span)> = None;
        let mut kind_seen = false;
        for mut cursor in declared.body() {
            let Some(keyword) = cursor.peek_word() else {
                failed |= self
                    .push::<()>(Err(cursor.expected("a kind or a step attribute")))
                    .is_none();
                continue;
            };
            let line = join(cursor.span(&cursor.tokens[0]), cursor.end_span());
            let result: PResult<()> = match keyword {
                "undo" | "verify" => {
                    cursor.pos += 1;
                    self.parse_action(&mut cursor).and_then(|a| {
                        if keyword == "undo" {
                            if let Some(first) = &undo {
                                return Err(duplicate_attribute("undo", line, first.span));
                            }
                            if matches!(a.kind, ActionKind::DbReplicate { .. }) {
                                return Err(Diagnostic::error(
                                    "bad-undo-kind",
                                    "replication back to the old database server is not built yet",
                                    a.span,
                                )
                                .with_help("undo with `manual` or `exec` steps for now (see docs/databases.md)"));
                            }
                            undo = Some(a);
                        } else {
                            let checking = KINDS.iter().any(|&(k, _, check)| check && k == a.kind.keyword());
                            if !checking {
                                return Err(Diagnostic::error(
                                    "bad-verify-kind",
                                    format!("`{}` cannot verify a step", a.kind.keyword()),
                                    a.span,
                                )
                                .with_help("`verify` takes a checking kind: port.open, port.closed, http.check or exec"));
                            }
                            verify.push(a);
                        }
                        Ok(())
                    })
                }
                "timeout" | "expect" | "retry" => {
                    cursor.pos += 1;
                    let keyword_span = line;
                    (|| {
                        if keyword == "retry" {
                            let (count, count_span) = cursor.word("a number of retries")?;
                            let count: u32 = count.parse().map_err(|_| {
                                Diagnostic::error(
                                    "bad-value",
                                    format!("`{}` is not a number of retries", short(count)),
                                    count_span,
                                )
                                .with_help("write a whole number, like `retry 2`")
                            })?;
                            cursor.finish()?;
                            if let Some((_, first)) = retry {
                                return Err(duplicate_attribute("retry", keyword_span, first));
                            }
                            retry = Some((count, keyword_span));
                        } else {
                            let duration = duration_word(&mut cursor, "a duration like `10m`")?;
                            cursor.finish()?;
                            let slot = if keyword == "timeout" {
                                &mut timeout
                            } else {
                                &mut expect
                            };
                            if let Some((_, first)) = slot {
                                return Err(duplicate_attribute(keyword, keyword_span, *first));
                            }
                            *slot = Some((duration, keyword_span));
                        }
                        Ok(())
                    })()
                }
                _ => {
                    let had_kind = kind_seen;
                    kind_seen = true;
                    self.parse_action(&mut cursor).and_then(|a| match &action {
                        Some(first) if had_kind => Err(Diagnostic::error(
                            "extra-kind",
                            format!("step `{}` already has a kind line", declared.name),
                            a.span,
                        )
                        .with_label(first.span, "its kind line")
                        .with_help("a step does one thing: move this line into a step of its own, ordered with `after`")),
                        _ => {
                            action = Some(a);
                            Ok(())
                        }
                    })
                }
            };
            failed |= self.push(result).is_none();
        }
        if !kind_seen {
            self.diags.push(
                Diagnostic::error("missing-kind", format!("step `{}` has no kind line", declared.name), declared.name_span)
                    .with_help("add an indented line saying what the step does, e.g. `manual \"Stop the services\"` or `wait 5m`"),
            );
            return None;
        }
        if failed {
            return None;
        }
        Some(Step {
            name: declared.name.to_string(),
            at,
            after,
            action: action?,
            undo,
            verify,
            timeout: timeout.map(|(t, _)| t),
            retry: retry.map_or(0, |(r, _)| r),
            expect: expect.map(|(e, _)| e),
            span,
        })
    }

    /// A kind line from the kind keyword on.
    fn parse_action(&mut self, cursor: &mut Cursor<'a>) -> PResult<Action> {
        let (keyword, keyword_span) = cursor.word("a kind (dns.ttl, dns.switch, image.copy, db.sync, port.open, port.closed, http.check, exec, manual or wait)")?;
        let Some(&(_, usage, _)) = KINDS.iter().find(|(k, _, _)| *k == keyword) else {
            let all: Vec<&str> = KINDS
                .iter()
                .map(|(k, _, _)| *k)
                .chain(STEP_ATTRIBUTES.iter().copied())
                .collect();
            let help = match closest(keyword, all.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!(
                    "the kinds are: {}",
                    KINDS
                        .iter()
                        .map(|(k, _, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(Diagnostic::error(
                "unknown-kind",
                format!("unknown step kind `{}`", short(keyword)),
                keyword_span,
            )
            .with_help(help));
        };
        let span = join(keyword_span, cursor.end_span());
        let kind = self
            .parse_kind(keyword, cursor)
            .and_then(|kind| cursor.finish().map(|()| kind));
        match kind {
            Ok(kind) => Ok(Action { kind, span }),
            Err(mut d) => {
                if d.code == "unexpected-token" {
                    d.code = "bad-kind-args";
                    d.message = format!("{keyword}: {}", d.message);
                    d.help = Some(format!("`{keyword}` takes: {usage}"));
                } else if d.help.is_none() {
                    d.help = Some(format!("`{keyword}` takes: {usage}"));
                }
                Err(d)
            }
        }
    }

    fn parse_kind(&mut self, keyword: &str, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        Ok(match keyword {
            "dns.ttl" => {
                let zone = self.zone_word(cursor)?;
                let mut names = Vec::new();
                loop {
                    match cursor.peek_word() {
                        Some(word) if record_type(word).is_some() && !names.is_empty() => break,
                        Some(word)
                            if record_type(word).is_none()
                                && record_type(&word.to_ascii_uppercase()).is_some()
                                && cursor.tokens.get(cursor.pos + 1).is_some_and(|t| {
                                    t.kind == TokenKind::Word
                                        && cursor.text[t.start..t.end]
                                            .starts_with(|c: char| c.is_ascii_digit())
                                }) =>
                        {
                            let fault = record_type_word(cursor).err();
                            return Err(fault.unwrap_or_else(|| cursor.expected("a record name")));
                        }
                        Some(_) => {
                            let (name, span) = cursor.word("a record name")?;
                            check_record_name(name, span)?;
                            names.push(name.to_string());
                            cursor.eat_comma();
                        }
                        None if names.is_empty() => {
                            return Err(cursor.expected("a record name (`@` for the zone's apex)"));
                        }
                        None => {
                            return Err(cursor.expected(&format!("a record type ({RECORD_TYPES})")));
                        }
                    }
                }
                let rtype = record_type_word(cursor)?;
                let ttl = ttl_word(cursor, "the new TTL, like `300`")?;
                let previous_ttl = match cursor.eat("was") {
                    Some(_) => Some(ttl_word(cursor, "the TTL before the change, like `1d`")?),
                    None => None,
                };
                ActionKind::DnsTtl {
                    zone,
                    names,
                    rtype,
                    ttl,
                    previous_ttl,
                }
            }
            "dns.switch" => {
                let zone = self.zone_word(cursor)?;
                let (name, name_span) = cursor.word("a record name (`@` for the zone's apex)")?;
                check_record_name(name, name_span)?;
                let rtype = record_type_word(cursor)?;
                let (old, old_span) = cursor.word_or_string("the record's current value")?;
                check_record_value(rtype, &old, old_span)?;
                cursor.arrow()?;
                let (new, new_span) = cursor.word_or_string("the record's new value")?;
                check_record_value(rtype, &new, new_span)?;
                if old == new {
                    return Err(Diagnostic::error(
                        "bad-value",
                        "the old and the new value are the same",
                        join(old_span, new_span),
                    )
                    .with_help(
                        "a switch changes the value; to change only the TTL use `dns.ttl`",
                    ));
                }
                ActionKind::DnsSwitch {
                    zone,
                    name: name.to_string(),
                    rtype,
                    old,
                    new,
                }
            }
            "image.copy" | "db.sync" => {
                let engine = if keyword == "db.sync" {
                    let (engine, engine_span) =
                        cursor.word("the database engine (`sqlite`, `postgres` or `mysql`)")?;
                    match engine {
                        "sqlite" => {}
                        "postgres" => return self.db_replicate(ServerEngine::Postgres, cursor),
                        "mysql" | "mariadb" => {
                            return self.db_replicate(ServerEngine::Mysql, cursor);
                        }
                        _ => {
                            return Err(Diagnostic::error(
                                "bad-value",
                                format!("unknown database engine `{}`", short(engine)),
                                engine_span,
                            )
                            .with_help("cutover syncs `sqlite`, `postgres` and `mysql` (MariaDB or MySQL) databases"));
                        }
                    }
                    Some(DbEngine::Sqlite)
                } else {
                    None
                };
                let (from, from_span) = self.endpoint(cursor, keyword)?;
                cursor.arrow()?;
                let (to, to_span) = self.endpoint(cursor, keyword)?;
                if from == to {
                    return Err(Diagnostic::error(
                        "bad-value",
                        "the source and the destination are the same file",
                        join(from_span, to_span),
                    )
                    .with_help("copy to another host or another path"));
                }
                let size = match cursor.eat("size") {
                    Some(_) => {
                        let (text, span) = cursor.word("a size like `40G`")?;
                        Some(Size::parse(text).map_err(|m| bad_unit(m, span))?)
                    }
                    None => None,
                };
                match engine {
                    Some(engine) => ActionKind::DbSync {
                        engine,
                        from,
                        to,
                        size,
                    },
                    None => ActionKind::ImageCopy { from, to, size },
                }
            }
            "port.open" | "port.closed" => {
                let targets = PortTargets::new(cursor.list(|c| self.port_targets(c))?);
                let from = match cursor.eat("from") {
                    Some(_) => Some(self.vantage(cursor)?),
                    None => None,
                };
                if keyword == "port.open" {
                    ActionKind::PortOpen { targets, from }
                } else {
                    ActionKind::PortClosed { targets, from }
                }
            }
            "http.check" => {
                let (url, url_span) = cursor.word("a URL like `http://wiki-new/`")?;
                let Some(url_host) = url_host(url) else {
                    return Err(Diagnostic::error("bad-value", format!("`{}` is not an http:// or https:// URL", short(url)), url_span)
                        .with_help("write a full URL, like `http://wiki-new/` or `https://203.0.113.5:8443/health`"));
                };
                let mut host = match self.host_index.get(url_host) {
                    Some(HostLike::Host(i)) => Some(HostId(*i)),
                    _ => None,
                };
                let https = url.starts_with("https://");
                let mut at: Option<Span> = None;
                let mut status: Option<(u16, Span)> = None;
                let mut body: Option<(String, Span)> = None;
                let mut ca: Option<(PathBuf, Span)> = None;
                let mut cert_days: Option<(u32, Span)> = None;
                let mut from: Option<(HostId, Span)> = None;
                const HTTP_ATTRIBUTES: &str = "`at HOST`, `from HOST`, `status CODE`, `body \"TEXT\"`, `ca FILE` or `cert-days N`";
                while !cursor.at_end() {
                    let (word, word_span) = cursor.word(HTTP_ATTRIBUTES)?;
                    if matches!(word, "ca" | "cert-days") && !https {
                        return Err(Diagnostic::error(
                            "bad-kind-args",
                            format!("`{word}` is about the TLS certificate, and `{}` is not an https:// URL", short(url)),
                            word_span,
                        )
                        .with_help("use an https:// URL, or leave out `ca` and `cert-days`"));
                    }
                    match word {
                        "at" => {
                            let (name, name_span) = cursor.name("a host name")?;
                            if let Some(first) = at {
                                return Err(duplicate_attribute("at", word_span, first));
                            }
                            if url_host.parse::<IpAddr>().is_ok() {
                                return Err(Diagnostic::error(
                                    "bad-kind-args",
                                    format!("`{}` names an address, so `at` has no name to send there", short(url)),
                                    word_span,
                                )
                                .with_help("write the site's name in the URL (`https://wiki.example.org/ at wiki-new`), or leave out `at`"));
                            }
                            host = Some(match self.host_index.get(name) {
                                Some(HostLike::Host(i)) => HostId(*i),
                                Some(HostLike::Group(_)) => {
                                    return Err(Diagnostic::error(
                                        "group-not-allowed",
                                        format!("`{name}` is a group, but `at` names the one host the request goes to"),
                                        name_span,
                                    )
                                    .with_help("name one host of the group, one check per host"));
                                }
                                None => return Err(self.unknown("host", name, name_span)),
                            });
                            at = Some(word_span);
                        }
                        "from" => {
                            let host = self.vantage(cursor)?;
                            if let Some((_, first)) = from {
                                return Err(duplicate_attribute("from", word_span, first));
                            }
                            from = Some((host, word_span));
                        }
                        "ca" => {
                            let (path, _) =
                                cursor.word_or_string("the CA certificate file (PEM)")?;
                            if let Some((_, first)) = ca {
                                return Err(duplicate_attribute("ca", word_span, first));
                            }
                            ca = Some((PathBuf::from(path), word_span));
                        }
                        "cert-days" => {
                            let (days, days_span) = cursor.word("a number of days like `14`")?;
                            let value = days
                                .parse::<u32>()
                                .ok()
                                .filter(|d| (1..=36500).contains(d))
                                .ok_or_else(|| {
                                    Diagnostic::error(
                                        "bad-value",
                                        format!("`{}` is not a number of days", short(days)),
                                        days_span,
                                    )
                                    .with_help("write whole days, like `cert-days 14`")
                                })?;
                            if let Some((_, first)) = cert_days {
                                return Err(duplicate_attribute("cert-days", word_span, first));
                            }
                            cert_days = Some((value, word_span));
                        }
                        "status" => {
                            let (code, code_span) =
                                cursor.word("an HTTP status code like `200`")?;
                            let value = code
                                .parse::<u16>()
                                .ok()
                                .filter(|c| (100..600).contains(c))
                                .ok_or_else(|| {
                                    Diagnostic::error(
                                        "bad-value",
                                        format!("`{}` is not an HTTP status code", short(code)),
                                        code_span,
                                    )
                                    .with_help("status codes are 100 to 599, like `200` or `301`")
                                })?;
                            if let Some((_, first)) = status {
                                return Err(duplicate_attribute("status", word_span, first));
                            }
                            status = Some((value, word_span));
                        }
                        "body" => {
                            let (text, _) =
                                cursor.string("the expected body text in double quotes")?;
                            if let Some((_, first)) = body {
                                return Err(duplicate_attribute("body", word_span, first));
                            }
                            body = Some((text, word_span));
                        }
                        _ => {
                            cursor.pos -= 1;
                            return Err(cursor.expected(HTTP_ATTRIBUTES));
                        }
                    }
                }
                ActionKind::HttpCheck {
                    url: url.to_string(),
                    host,
                    at: at.is_some(),
                    status: status.map_or(200, |(s, _)| s),
                    body: body.map(|(b, _)| b),
                    ca: ca.map(|(c, _)| c),
                    cert_days: cert_days.map(|(d, _)| d),
                    from: from.map(|(h, _)| h),
                }
            }
            "exec" => {
                let mut on = HostList::default();
                if cursor.eat("on").is_some() {
                    on = HostList::new(cursor.list(|c| {
                        let (name, span) = c.name("a host or group name")?;
                        self.hosts_ref(name, span)
                    })?);
                }
                let (command, command_span) = cursor.string("the command in double quotes")?;
                if command.trim().is_empty() {
                    return Err(Diagnostic::error(
                        "bad-value",
                        "the command is empty",
                        command_span,
                    ));
                }
                let mut env = Vec::new();
                if cursor.eat("env").is_some() {
                    let names = cursor.list(|c| {
                        let (name, span) = c.word("an environment variable name")?;
                        if !is_env_name(name) {
                            return Err(Diagnostic::error(
                                "bad-name",
                                format!("`{}` is not an environment variable name", short(name)),
                                span,
                            )
                            .with_help("variable names are letters, digits and `_`, not starting with a digit: `env PGHOST, PGPORT`"));
                        }
                        Ok((name, span))
                    })?;
                    for (name, span) in names {
                        if !env.iter().any(|n: &String| n == name) {
                            env.push(name.to_string());
                            self.exec_env.push((name.to_string(), span));
                        }
                    }
                }
                ActionKind::Exec { on, command, env }
            }
            "manual" => {
                let (instructions, span) = cursor.string("the instructions in double quotes")?;
                if instructions.trim().is_empty() {
                    return Err(
                        Diagnostic::error("bad-value", "the instructions are empty", span)
                            .with_help("say what the person must do and confirm"),
                    );
                }
                ActionKind::Manual { instructions }
            }
            _ => {
                if cursor.eat("until").is_some() {
                    let (time, span) = parse_time(cursor)?;
                    if matches!(time, TimeSpec::Relative(_)) {
                        self.relative_times.push(span);
                    }
                    ActionKind::Wait(WaitFor::Until(time))
                } else {
                    ActionKind::Wait(WaitFor::Duration(duration_word(
                        cursor,
                        "a duration like `5m`, or `until TIME`",
                    )?))
                }
            }
        })
    }

    /// `db.sync postgres|mysql SERVER -> SERVER [freeze STEP] [size SIZE]`
    /// from the first server on.
    fn db_replicate(&self, engine: ServerEngine, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let (from, from_span) = self.db_server(engine, cursor)?;
        cursor.arrow()?;
        let (to, to_span) = self.db_server(engine, cursor)?;
        if from.host == to.host && from.port == to.port {
            return Err(Diagnostic::error(
                "bad-value",
                "the source and the destination are the same server",
                join(from_span, to_span),
            )
            .with_help("replicate to another server (another host, or another port)"));
        }
        let mut freeze: Option<(StepId, Span)> = None;
        let mut size: Option<(Size, Span)> = None;
        while !cursor.at_end() {
            let (word, word_span) = cursor.word("`freeze STEP` or `size SIZE`")?;
            match word {
                "freeze" => {
                    let (name, name_span) = cursor.name("the step that stops the writers")?;
                    if let Some((_, first)) = freeze {
                        return Err(duplicate_attribute("freeze", word_span, first));
                    }
                    freeze = Some((self.step_ref(name, name_span)?, word_span));
                }
                "size" => {
                    let (text, span) = cursor.word("a size like `40G`")?;
                    if let Some((_, first)) = size {
                        return Err(duplicate_attribute("size", word_span, first));
                    }
                    size = Some((Size::parse(text).map_err(|m| bad_unit(m, span))?, word_span));
                }
                _ => {
                    return Err(Diagnostic::error(
                        "bad-kind-args",
                        format!("db.sync: unexpected `{}`", short(word)),
                        word_span,
                    )
                    .with_help("after the destination come `freeze STEP` and `size SIZE`"));
                }
            }
        }
        Ok(ActionKind::DbReplicate {
            engine,
            from,
            to,
            freeze: freeze.map(|(s, _)| s),
            size: size.map(|(s, _)| s),
        })
    }

    /// `HOST[:PORT]/DATABASE user USER [password SECRET-REF]`
    fn db_server(
        &self,
        engine: ServerEngine,
        cursor: &mut Cursor<'a>,
    ) -> PResult<(DbServer, Span)> {
        let (word, span) = cursor.word("HOST[:PORT]/DATABASE")?;
        let shape = || {
            Diagnostic::error(
                "bad-kind-args",
                format!("`{}` is not HOST[:PORT]/DATABASE", short(word)),
                span,
            )
            .with_help(format!(
                "name a host, optionally a port, and the database, like `db-old:{}/app`",
                engine.default_port()
            ))
        };
        let (place, database) = word.split_once('/').ok_or_else(shape)?;
        let database_ok = !database.is_empty()
            && database.len() <= 63
            && database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'));
        if !database_ok {
            return Err(shape());
        }
        let (host, port) = match place.split_once(':') {
            Some((host, port)) => {
                let port_span = Span::new(
                    span.file,
                    span.start + host.len() + 1,
                    span.start + place.len(),
                );
                (host, port_number(port, port_span)?)
            }
            None => (place, engine.default_port()),
        };
        if host.is_empty() {
            return Err(shape());
        }
        let host_span = Span::new(span.file, span.start, span.start + host.len());
        let host = self.host_ref(host, host_span, "db.sync")?;
        let mut user: Option<(String, Span)> = None;
        let mut password: Option<(SecretRef, Span)> = None;
        let mut end = span;
        while let Some(word) = cursor.peek_word() {
            match word {
                "user" => {
                    let word_span = cursor.eat("user").unwrap_or(span);
                    let (name, name_span) = cursor.word("the user to log in as")?;
                    if let Some((_, first)) = user {
                        return Err(duplicate_attribute("user", word_span, first));
                    }
                    user = Some((name.to_owned(), word_span));
                    end = name_span;
                }
                "password" => {
                    let word_span = cursor.eat("password").unwrap_or(span);
                    let (text, text_span) = cursor.word("`env:VARIABLE` or `file:PATH`")?;
                    if let Some((_, first)) = password {
                        return Err(duplicate_attribute("password", word_span, first));
                    }
                    let secret = parse_secret(text, text_span).map_err(|d| {
                        d.with_help("write `password env:VARIABLE` or `password file:PATH`; never put a password itself in a runbook")
                    })?;
                    password = Some((secret, word_span));
                    end = text_span;
                }
                _ => break,
            }
        }
        let Some((user, _)) = user else {
            return Err(Diagnostic::error(
                "bad-kind-args",
                format!("db.sync: `{}` needs `user NAME`", short(word)),
                span,
            )
            .with_help("name the user to log in as, like `db-old/app user cutover password env:OLD_DB_PASSWORD`"));
        };
        Ok((
            DbServer {
                host,
                port,
                database: database.to_owned(),
                user,
                password: password.map(|(p, _)| p),
            },
            join(span, end),
        ))
    }

    fn zone_word(&self, cursor: &mut Cursor<'a>) -> PResult<ZoneId> {
        let (name, span) = cursor.word("a zone name")?;
        match self.zone_index.get(&zone_key(name)) {
            Some(&i) => Ok(ZoneId(i)),
            None => Err(self.unknown("zone", name, span)),
        }
    }

    fn key_ref(&self, name: &str, span: Span) -> PResult<KeyId> {
        match self.key_index.get(name) {
            Some(&i) => Ok(KeyId(i)),
            None => Err(self.unknown("key", name, span)),
        }
    }

    fn step_ref(&self, name: &str, span: Span) -> PResult<StepId> {
        match self.step_index.get(name) {
            Some(&i) => Ok(StepId(i)),
            None => Err(self.unknown("step", name, span)),
        }
    }

    /// A host, or a group with its members (shared, not copied).
    fn hosts_ref(&self, name: &str, span: Span) -> PResult<HostRef> {
        match self.host_index.get(name) {
            Some(HostLike::Host(i)) => Ok(HostRef::Host(HostId(*i))),
            Some(HostLike::Group(i)) => Ok(HostRef::Group(
                GroupId(*i),
                self.group_members
                    .get(*i)
                    .cloned()
                    .unwrap_or_else(|| Arc::from(Vec::new())),
            )),
            None => Err(self.unknown("host or group", name, span)),
        }
    }

    fn host_ref(&self, name: &str, span: Span, kind: &str) -> PResult<HostId> {
        match self.host_index.get(name) {
            Some(HostLike::Host(i)) => Ok(HostId(*i)),
            Some(HostLike::Group(i)) => {
                let members: Vec<&str> = self
                    .group_members
                    .get(*i)
                    .map(|m| m.iter().take(3).map(|h| self.hosts[h.0].name).collect())
                    .unwrap_or_default();
                Err(Diagnostic::error(
                    "group-not-allowed",
                    format!("`{name}` is a group, but `{kind}` copies from one host to one host"),
                    span,
                )
                .with_help(format!(
                    "name one host of the group ({}), one step per host",
                    members.join(", ")
                )))
            }
            None => Err(self.unknown("host", name, span)),
        }
    }

    fn endpoint(&self, cursor: &mut Cursor<'a>, kind: &str) -> PResult<(Endpoint, Span)> {
        let (word, span) = cursor.word("HOST:/PATH")?;
        let Some((host, path)) = word
            .split_once(':')
            .filter(|(h, p)| !h.is_empty() && p.starts_with('/'))
        else {
            return Err(Diagnostic::error(
                "bad-kind-args",
                format!("`{}` is not HOST:/PATH", short(word)),
                span,
            )
            .with_help(
                "name a host and an absolute path on it, like `wiki:/srv/images/wiki.img`",
            ));
        };
        let host_span = Span::new(span.file, span.start, span.start + host.len());
        let host = self.host_ref(host, host_span, kind)?;
        Ok((
            Endpoint {
                host,
                path: path.to_string(),
            },
            span,
        ))
    }

    /// The host after `from`: one host (a check runs from one place).
    fn vantage(&self, cursor: &mut Cursor<'a>) -> PResult<HostId> {
        let (name, name_span) = cursor.name("the host the check runs from")?;
        match self.host_index.get(name) {
            Some(HostLike::Host(i)) => Ok(HostId(*i)),
            Some(HostLike::Group(_)) => Err(Diagnostic::error(
                "group-not-allowed",
                format!("`{name}` is a group, but `from` names the one host the check runs on"),
                name_span,
            )
            .with_help("name one host of the group, one check per host")),
            None => Err(self.unknown("host", name, name_span)),
        }
    }

    fn port_targets(&self, cursor: &mut Cursor<'a>) -> PResult<(HostRef, u16)> {
        let (word, span) = cursor.word("HOST:PORT")?;
        let Some((name, port)) = word.rsplit_once(':') else {
            return Err(Diagnostic::error(
                "bad-kind-args",
                format!("`{}` is not HOST:PORT", short(word)),
                span,
            )
            .with_help("name a host or group and a port, like `wiki-new:80`"));
        };
        let name_span = Span::new(span.file, span.start, span.start + name.len());
        let port_span = Span::new(span.file, span.start + name.len() + 1, span.end);
        if !is_name(name) {
            return Err(Diagnostic::error(
                "bad-name",
                format!("`{}` is not a host or group name", short(name)),
                name_span,
            )
            .with_help("name a host or group declared in the runbook"));
        }
        Ok((
            self.hosts_ref(name, name_span)?,
            port_number(port, port_span)?,
        ))
    }

    /// What else `name` is, if it names something of another sort.
    fn what_is(&self, name: &str) -> Option<&'static str> {
        if self.step_index.contains_key(name) {
            Some("a step")
        } else if let Some(h) = self.host_index.get(name) {
            Some(match h {
                HostLike::Host(_) => "a host",
                HostLike::Group(_) => "a group",
            })
        } else if self.key_index.contains_key(name) {
            Some("a key")
        } else if self.zone_index.contains_key(&zone_key(name)) {
            Some("a zone")
        } else {
            None
        }
    }

    fn unknown(&self, what: &str, name: &str, span: Span) -> Diagnostic {
        let candidates: Vec<&str> = match what {
            "zone" => self.zones.iter().map(|d| d.name).collect(),
            "key" => self.keys.iter().map(|d| d.name).collect(),
            "step" => self.steps.iter().map(|d| d.name).collect(),
            "host" => self.hosts.iter().map(|d| d.name).collect(),
            _ => self
                .hosts
                .iter()
                .chain(self.groups.iter())
                .map(|d| d.name)
                .collect(),
        };
        let help = if let Some(near) = closest(name, candidates.iter().copied()) {
            format!("did you mean `{near}`?")
        } else if let Some(other) = self.what_is(name) {
            format!("`{name}` is {other}, not a {what}")
        } else {
            let article = if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("declare {article} {what} named `{name}`, or use one that exists")
        };
        Diagnostic::error(
            "unknown-name",
            format!("unknown {what} `{}`", short(name)),
            span,
        )
        .with_help(help)
    }

    /// Refuses a `db.sync ... freeze STEP` whose freeze step waits (by
    /// `after`) for the db.sync itself, which would never finish, and an
    /// `exec ... env NAME` whose NAME holds a database password.
    fn check_db_sync(&mut self, steps: &[Step]) {
        for (i, step) in steps.iter().enumerate() {
            let ActionKind::DbReplicate {
                freeze: Some(gate), ..
            } = &step.action.kind
            else {
                continue;
            };
            if *gate == StepId(i) || waits_for(steps, *gate, StepId(i)) {
                self.diags.push(
                    Diagnostic::error(
                        "freeze-cycle",
                        format!(
                            "`{}` waits for this db.sync, so the db.sync would wait for it forever",
                            steps[gate.0].name
                        ),
                        step.action.span,
                    )
                    .with_label(steps[gate.0].span, "the freeze step")
                    .with_help("the freeze step runs while the db.sync replicates: remove the db.sync from its `after`"),
                );
            }
        }
        for (name, span) in &self.exec_env {
            let holder = steps.iter().find(|step| {
                let ActionKind::DbReplicate { from, to, .. } = &step.action.kind else {
                    return false;
                };
                [from, to]
                    .iter()
                    .any(|s| matches!(&s.password, Some(SecretRef::Env(var)) if var == name))
            });
            if let Some(step) = holder {
                self.diags.push(
                    Diagnostic::error(
                        "secret-env",
                        format!(
                            "`{name}` holds a database password of step `{}`; a secret is never handed to a command",
                            step.name
                        ),
                        *span,
                    )
                    .with_label(step.action.span, "the db.sync reads a password from it here")
                    .with_help(format!("remove `{name}` from `env`; db.sync uses the password itself")),
                );
            }
        }
    }

    /// Refuses an `exec ... env NAME` whose NAME is the variable a key's
    /// secret is read from: a secret is never handed to a command.
    fn check_exec_env(&mut self, keys: &[Key]) {
        for (name, span) in std::mem::take(&mut self.exec_env) {
            let holder = keys
                .iter()
                .find(|k| matches!(&k.secret, SecretRef::Env(var) if *var == name));
            if let Some(key) = holder {
                self.diags.push(
                    Diagnostic::error(
                        "secret-env",
                        format!(
                            "`{name}` holds the secret of key `{}`; a secret is never handed to a command",
                            key.name
                        ),
                        span,
                    )
                    .with_label(key.span, "the key reads its secret from it here")
                    .with_help(format!(
                        "remove `{name}` from `env`; steps that need the key use it themselves (`dns.*`)"
                    )),
                );
            }
        }
    }

    fn check_cycles(&mut self, steps: &[Step]) {
        // Colours: 0 unvisited, 1 on the current path, 2 done.
        let mut colour = vec![0u8; steps.len()];
        for root in 0..steps.len() {
            if colour[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            colour[root] = 1;
            while let Some(&(node, edge)) = stack.last() {
                let Some(next) = steps[node].after.get(edge) else {
                    colour[node] = 2;
                    stack.pop();
                    continue;
                };
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match colour[next.0] {
                    0 => {
                        colour[next.0] = 1;
                        stack.push((next.0, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(s, _)| s == next.0).unwrap_or(0);
                        let mut path: Vec<&str> = stack[from..]
                            .iter()
                            .map(|&(s, _)| steps[s].name.as_str())
                            .collect();
                        path.push(&steps[next.0].name);
                        let span = self
                            .after_span(node, &steps[next.0].name)
                            .unwrap_or(steps[node].span);
                        self.diags.push(
                            Diagnostic::error(
                                "after-cycle",
                                format!("steps wait for each other in a cycle: {}", path.join(" -> ")),
                                span,
                            )
                            .with_help("each step in the cycle waits for the next; remove one of these `after` names"),
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    /// Where step `index` names `target` in its `after` list.
    fn after_span(&self, index: usize, target: &str) -> Option<Span> {
        let declared = &self.steps[index];
        let header = declared.header();
        let after = header
            .tokens
            .iter()
            .position(|t| &declared.text[t.start..t.end] == "after")?;
        header.tokens[after..]
            .iter()
            .find(|t| t.kind == TokenKind::Word && &declared.text[t.start..t.end] == target)
            .map(|t| Span::new(declared.file, t.start, t.end))
    }
}

impl<'a> Declared<'a> {
    fn clone_ref(&self) -> Declared<'a> {
        Declared {
            file: self.file,
            text: self.text,
            lines: self.lines,
            item: self.item,
            name: self.name,
            name_span: self.name_span,
        }
    }
}

/// A TCP port, 1 to 65535.
fn port_number(text: &str, span: Span) -> PResult<u16> {
    text.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
        Diagnostic::error(
            "bad-value",
            format!("`{}` is not a port number", short(text)),
            span,
        )
        .with_help("ports are 1 to 65535")
    })
}

/// Whether step `from` waits, directly or through others, for `target`.
fn waits_for(steps: &[Step], from: StepId, target: StepId) -> bool {
    let mut seen = HashSet::new();
    let mut todo = vec![from];
    while let Some(step) = todo.pop() {
        for &before in &steps[step.0].after {
            if before == target {
                return true;
            }
            if seen.insert(before) {
                todo.push(before);
            }
        }
    }
    false
}

fn duplicate_attribute(what: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::error(
        "duplicate-attribute",
        format!("`{what}` is given twice"),
        span,
    )
    .with_label(first, "first given here")
    .with_help(format!("keep one `{what}`"))
}

fn bad_unit(message: String, span: Span) -> Diagnostic {
    Diagnostic::error("bad-unit", message, span)
}

fn duration_word(cursor: &mut Cursor<'_>, what: &str) -> PResult<Duration> {
    let (text, span) = cursor.word(what)?;
    parse_duration(text).map_err(|m| bad_unit(m, span))
}

fn ttl_word(cursor: &mut Cursor<'_>, what: &str) -> PResult<Duration> {
    let (text, span) = cursor.word(what)?;
    let ttl = parse_duration(text).map_err(|m| bad_unit(m, span))?;
    if ttl.as_secs() > i32::MAX as u64 {
        return Err(Diagnostic::error(
            "bad-value",
            format!("TTL `{}` is longer than DNS allows", short(text)),
            span,
        )
        .with_help("a TTL is at most 2147483647 seconds (about 68 years)"));
    }
    Ok(ttl)
}

fn record_type_word(cursor: &mut Cursor<'_>) -> PResult<RecordType> {
    let (text, span) = cursor.word(&format!("a record type ({RECORD_TYPES})"))?;
    record_type(text).ok_or_else(|| {
        let help = match record_type(&text.to_ascii_uppercase()) {
            Some(t) => format!("record types are written in capitals: `{}`", t.as_str()),
            None => format!("cutover handles {RECORD_TYPES} records"),
        };
        Diagnostic::error(
            "bad-value",
            format!("unknown record type `{}`", short(text)),
            span,
        )
        .with_help(help)
    })
}

fn check_record_name(name: &str, span: Span) -> PResult<()> {
    if is_record_name(name) {
        Ok(())
    } else {
        Err(Diagnostic::error("bad-name", format!("`{}` is not a record name", short(name)), span)
            .with_help("record names are relative to the zone, like `www` or `mail.lists`; `@` is the zone's apex"))
    }
}

fn check_record_value(rtype: RecordType, value: &str, span: Span) -> PResult<()> {
    let ok = match rtype {
        RecordType::A => Ipv4Addr::from_str(value).is_ok(),
        RecordType::Aaaa => Ipv6Addr::from_str(value).is_ok(),
        _ => !value.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        let expected = match rtype {
            RecordType::A => "an IPv4 address like `192.0.2.10`",
            RecordType::Aaaa => "an IPv6 address like `2001:db8::10`",
            _ => "a value in zone-file syntax",
        };
        Err(Diagnostic::error(
            "bad-value",
            format!("`{}` is not a valid {} value", short(value), rtype.as_str()),
            span,
        )
        .with_help(format!("an {} record holds {expected}", rtype.as_str())))
    }
}

fn server_address(cursor: &mut Cursor<'_>) -> PResult<(SocketAddr, Span)> {
    let (text, span) = cursor.word("a server address like `192.0.2.53:53`")?;
    SocketAddr::from_str(text)
        .or_else(|_| IpAddr::from_str(text).map(|ip| SocketAddr::new(ip, 53)))
        .map(|a| (a, span))
        .map_err(|_| {
            Diagnostic::error("bad-address", format!("`{}` is not an IP address with an optional port", short(text)), span)
                .with_help("DNS servers are given by address: `192.0.2.53`, `192.0.2.53:5353` or `[2001:db8::53]:53`")
        })
}

/// An environment variable name: letters, digits and `_`, not starting
/// with a digit.
fn is_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_secret(text: &str, span: Span) -> PResult<SecretRef> {
    if let Some(var) = text.strip_prefix("env:") {
        let valid = var
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            return Ok(SecretRef::Env(var.to_string()));
        }
        return Err(Diagnostic::error(
            "bad-secret",
            "this is not an environment variable name",
            span,
        )
        .with_help("write `env:NAME`, where NAME is letters, digits and `_`"));
    }
    if let Some(path) = text.strip_prefix("file:").filter(|p| !p.is_empty()) {
        return Ok(SecretRef::File(PathBuf::from(path)));
    }
    Err(Diagnostic::error(
        "bad-secret",
        "a key's secret is given only by reference",
        span,
    )
    .with_help("write `env:VARIABLE` or `file:PATH`; never put a secret itself in a runbook"))
}

/// `via local PATH`, `via ssh USER@HOST[:PORT]` or `via agent "COMMAND"`.
fn parse_transport(cursor: &mut Cursor<'_>, via_span: Span) -> PResult<(Transport, Span)> {
    let (how, how_span) = cursor.word("`local`, `ssh` or `agent`")?;
    match how {
        "local" => {
            let (path, span) = cursor.word_or_string("the folder that holds the host's files")?;
            Ok((
                Transport::Local {
                    root: PathBuf::from(path),
                },
                join(via_span, span),
            ))
        }
        "ssh" => {
            let (target, span) = cursor.word("USER@HOST[:PORT]")?;
            let bad = || {
                Diagnostic::error(
                    "bad-value",
                    format!("`{}` is not USER@HOST[:PORT]", short(target)),
                    span,
                )
                .with_help("write it like `root@192.0.2.10` or `admin@db1.example.org:2222`")
            };
            let (user, rest) = target
                .split_once('@')
                .filter(|(u, r)| !u.is_empty() && !r.is_empty())
                .ok_or_else(bad)?;
            let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
                let (host, after) = inner.split_once(']').ok_or_else(bad)?;
                match after.strip_prefix(':') {
                    Some(port) => (host, Some(port.parse::<u16>().map_err(|_| bad())?)),
                    None if after.is_empty() => (host, None),
                    None => return Err(bad()),
                }
            } else {
                match rest.rsplit_once(':') {
                    Some((host, port)) if !host.contains(':') => {
                        (host, Some(port.parse::<u16>().map_err(|_| bad())?))
                    }
                    _ => (rest, None),
                }
            };
            if host.is_empty() {
                return Err(bad());
            }
            Ok((
                Transport::Ssh {
                    user: user.to_string(),
                    host: host.to_string(),
                    port,
                },
                join(via_span, span),
            ))
        }
        "agent" => {
            let (command, span) = cursor.string("the agent command in double quotes")?;
            Ok((Transport::Agent { command }, join(via_span, span)))
        }
        other => Err(Diagnostic::error(
            "bad-value",
            format!("unknown transport `{}`", short(other)),
            how_span,
        )
        .with_help(
            "reach a host `via local PATH`, `via ssh USER@HOST` or `via agent \"COMMAND\"`",
        )),
    }
}

/// `T0`, `T-48h`, `T+2h`, or `2013-03-14 17:00 UTC`.
fn parse_time(cursor: &mut Cursor<'_>) -> PResult<(TimeSpec, Span)> {
    let (word, span) = cursor.word("a time: `T0`, `T-48h`, `T+2h` or `2013-03-14 17:00 UTC`")?;
    if word.starts_with('T') {
        return TimeSpec::parse_relative(word)
            .map(|t| (t, span))
            .map_err(|m| bad_unit(m, span));
    }
    let (clock, clock_span) = cursor.word("a time of day like `17:00`")?;
    let whole = join(span, clock_span);
    let at = parse_utc(word, clock).map_err(|m| Diagnostic::error("bad-time", m, whole))?;
    let utc = cursor.eat("UTC").ok_or_else(|| {
        cursor
            .expected("`UTC`")
            .with_help("times are written in UTC: `2013-03-14 17:00 UTC`")
    })?;
    Ok((TimeSpec::Absolute(at), join(whole, utc)))
}

/// `window DATE TIME UTC for DURATION` (after the keyword).
fn parse_window(cursor: &mut Cursor<'_>, span: Span) -> PResult<Window> {
    let (start, _) = match parse_time(cursor)? {
        (TimeSpec::Absolute(at), s) => (at, s),
        (TimeSpec::Relative(_), s) => {
            return Err(Diagnostic::error(
                "bad-time",
                "the window's start must be an absolute time",
                s,
            )
            .with_help(
                "T0 is the window's start; write it like `window 2013-03-14 17:00 UTC for 6h`",
            ));
        }
    };
    if cursor.eat("for").is_none() {
        return Err(cursor
            .expected("`for` and the window's length")
            .with_help("write it like `window 2013-03-14 17:00 UTC for 6h`"));
    }
    let length_span = cursor.peek().map(|t| cursor.span(t)).unwrap_or(span);
    let length = duration_word(cursor, "the window's length, like `6h`")?;
    if length.is_zero() {
        return Err(Diagnostic::error(
            "bad-value",
            "the window has no length: no step fits in it",
            length_span,
        )
        .with_help("give the window's length, like `window 2013-03-14 17:00 UTC for 6h`"));
    }
    cursor.finish()?;
    Ok(Window {
        start,
        length,
        span,
    })
}

/// `link SITE -> SITE BANDWIDTH` (after the keyword).
fn parse_link(cursor: &mut Cursor<'_>, span: Span) -> PResult<Link> {
    let (from, _) = cursor.name("a site name")?;
    cursor.arrow()?;
    let (to, _) = cursor.name("a site name")?;
    let (bandwidth, bandwidth_span) = cursor.word("a bandwidth like `1Gbit` or `80MB/s`")?;
    let bandwidth = Bandwidth::parse(bandwidth).map_err(|m| bad_unit(m, bandwidth_span))?;
    cursor.finish()?;
    Ok(Link {
        from: from.to_string(),
        to: to.to_string(),
        bandwidth,
        span,
    })
}

/// The host part of an http(s) URL, without user info or port.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(inner) = authority.strip_prefix('[') {
        inner.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}
