//! The item parsers: `runbook` (title, window, links), `key`, `zone`,
//! `host`, `group` and `step` (its `at`/`after` header, its attribute lines
//! and its kind line, handed to [`super::kinds`]). Each line is parsed on its
//! own, so one faulty line costs one diagnostic.

use super::Resolver;
use super::cursor::{Cursor, PResult, join, line_span, short};
use super::kinds::KINDS;
use super::names::{Declared, HostLike};
use super::values::*;
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::lexer::Line;
use crate::model::*;
use crate::source::{FileId, Span};
use crate::suggest::closest;
use crate::syntax::Item;
use crate::units::TimeSpec;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The `runbook` item: what the [`Runbook`] carries besides its items.
pub(super) struct Header {
    pub(super) name: String,
    pub(super) title: Option<String>,
    pub(super) window: Option<Window>,
    pub(super) links: Vec<Link>,
    pub(super) span: Span,
}

impl<'a> Resolver<'a> {
    /// Refuses indented lines below an item that takes none.
    fn no_body(&mut self, declared_index: &Declared<'a>, what: &str) {
        let file = declared_index.file;
        if let Some(&first) = declared_index.item.body.first() {
            let span = line_span(file, &declared_index.lines[first]);
            self.diags.push(
                Diagnostic::error(
                    Code::UnexpectedIndent,
                    format!("a `{what}` takes no indented lines"),
                    span,
                )
                .with_help(format!(
                    "write the whole `{what}` on one line, or unindent this line"
                )),
            );
        }
    }

    pub(super) fn build_header(
        &mut self,
        items: &[(FileId, &'a str, &'a [Line], &'a Item)],
        main: FileId,
    ) -> Option<Header> {
        let Some(&(file, text, lines, item)) = items.first() else {
            self.diags.push(
                Diagnostic::error(
                    Code::MissingRunbook,
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
                    Code::DuplicateName,
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

    pub(super) fn build_key(&mut self, index: usize) -> Option<Key> {
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
                        Code::BadValue,
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

    pub(super) fn build_zone(&mut self, index: usize) -> Option<Zone> {
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
                Diagnostic::error(Code::MissingPrimary, format!("zone `{}` has no `primary` server", declared.name), span)
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

    pub(super) fn build_host(&mut self, index: usize) -> Option<Host> {
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
                                Diagnostic::error(Code::BadAddress, format!("`{}` is not an IP address", short(text)), text_span)
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
                                Code::UnexpectedToken,
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
                Code::MissingAttribute,
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

    pub(super) fn build_group(&mut self, index: usize) -> Option<Group> {
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
                            Code::NestedGroup,
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
                    Code::EmptyGroup,
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

    pub(super) fn build_step(&mut self, index: usize) -> Option<Step> {
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
                            Code::UnexpectedToken,
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
        let mut verify_seen = false;
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
                    verify_seen |= keyword == "verify";
                    self.parse_action(&mut cursor).and_then(|a| {
                        if keyword == "undo" {
                            if let Some(first) = &undo {
                                return Err(duplicate_attribute("undo", line, first.span));
                            }
                            undo = Some(a);
                        } else {
                            let checking = KINDS.iter().any(|&(k, _, check)| check && k == a.kind.keyword());
                            if !checking {
                                return Err(Diagnostic::error(
                                    Code::BadVerifyKind,
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
                                    Code::BadValue,
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
                            Code::ExtraKind,
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
        if !kind_seen && !verify_seen {
            self.diags.push(
                Diagnostic::error(Code::MissingKind, format!("step `{}` has no kind line", declared.name), declared.name_span)
                    .with_help("add an indented line saying what the step does, e.g. `manual \"Stop the services\"` or `wait 5m`; a step that only checks is written with `verify` lines alone"),
            );
            return None;
        }
        // An undo that replicates must be the step's db.sync in reverse:
        // the fallback window's replication back, new to old.
        if let Some(back) = &undo
            && let ActionKind::DbReplicate {
                engine, from, to, ..
            } = &back.kind
        {
            let reverse = action.as_ref().is_some_and(|a| {
                matches!(&a.kind, ActionKind::DbReplicate { engine: e, from: f, to: t, .. }
                    if e == engine && same_database(f, to) && same_database(t, from))
            });
            if !reverse {
                self.diags.push(
                    Diagnostic::error(
                        Code::BadUndoKind,
                        "an `undo` db.sync must replicate the step's db.sync back: from its destination to its source",
                        back.span,
                    )
                    .with_help("write the step's `db.sync` with the two servers swapped, like `undo db.sync mysql db-new/app user app password env:NEW_PW -> db-old/app user app password env:OLD_PW` (see docs/databases.md)"),
                );
                return None;
            }
        }
        if failed {
            return None;
        }
        // A step of `verify` lines alone only checks: it is done when they
        // hold, and its first check is what it runs.
        if !kind_seen {
            action = verify.first().cloned();
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
}

/// Whether two `db.sync` ends name the same database on the same server.
fn same_database(a: &DbServer, b: &DbServer) -> bool {
    a.host == b.host && a.port == b.port && a.database == b.database
}
