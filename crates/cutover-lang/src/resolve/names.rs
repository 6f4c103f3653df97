//! Name resolution: every item's name is declared before any item is built
//! (so a step may name a later step), then references are looked up here,
//! with "did you mean" and "that is a host, not a step" when they miss.

use super::Resolver;
use super::cursor::{Cursor, PResult, line_span, short};
use super::values::{is_domain, zone_key};
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::lexer::Line;
use crate::model::*;
use crate::source::{FileId, Span};
use crate::suggest::closest;
use crate::syntax::Item;
use std::sync::Arc;

/// The item keywords, for "did you mean".
const ITEM_KEYWORDS: &[&str] = &["runbook", "include", "key", "zone", "host", "group", "step"];

/// A name declared by an item, for lookups and "first declared here".
#[derive(Debug, Clone, Copy)]
pub(super) enum HostLike {
    Host(usize),
    Group(usize),
}

/// An item that declares a name, with where its lines are.
pub(super) struct Declared<'a> {
    pub(super) file: FileId,
    pub(super) text: &'a str,
    pub(super) lines: &'a [Line],
    pub(super) item: &'a Item,
    pub(super) name: &'a str,
    pub(super) name_span: Span,
}

impl<'a> Declared<'a> {
    pub(super) fn header(&self) -> &'a Line {
        &self.lines[self.item.header]
    }
    /// A cursor just after `KEYWORD NAME`.
    pub(super) fn header_rest(&self) -> Cursor<'a> {
        let mut cursor = Cursor::new(self.file, self.text, self.header());
        cursor.pos = 2;
        cursor
    }
    pub(super) fn header_span(&self) -> Span {
        line_span(self.file, self.header())
    }
    pub(super) fn body(&self) -> impl Iterator<Item = Cursor<'a>> + '_ {
        self.item
            .body
            .iter()
            .map(|&i| Cursor::new(self.file, self.text, &self.lines[i]))
    }

    pub(super) fn clone_ref(&self) -> Declared<'a> {
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

impl<'a> Resolver<'a> {
    /// Records the name an item declares (refusing a second item of one
    /// sort with one name); `runbook` items are set aside for the header.
    pub(super) fn declare(
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
                            Code::BadName,
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
                    Code::DuplicateName,
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

    pub(super) fn unknown_keyword(
        &self,
        word: &str,
        span: Span,
        allowed: &[&str],
        place: &str,
    ) -> Diagnostic {
        let help = match closest(word, allowed.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("{place} line starts with one of: {}", allowed.join(", ")),
        };
        Diagnostic::error(
            Code::UnknownKeyword,
            format!("unknown keyword `{}` here", short(word)),
            span,
        )
        .with_help(help)
    }
    pub(super) fn zone_word(&self, cursor: &mut Cursor<'a>) -> PResult<ZoneId> {
        let (name, span) = cursor.word("a zone name")?;
        match self.zone_index.get(&zone_key(name)) {
            Some(&i) => Ok(ZoneId(i)),
            None => Err(self.unknown("zone", name, span)),
        }
    }

    pub(super) fn key_ref(&self, name: &str, span: Span) -> PResult<KeyId> {
        match self.key_index.get(name) {
            Some(&i) => Ok(KeyId(i)),
            None => Err(self.unknown("key", name, span)),
        }
    }

    pub(super) fn step_ref(&self, name: &str, span: Span) -> PResult<StepId> {
        match self.step_index.get(name) {
            Some(&i) => Ok(StepId(i)),
            None => Err(self.unknown("step", name, span)),
        }
    }

    /// A host, or a group with its members (shared, not copied).
    pub(super) fn hosts_ref(&self, name: &str, span: Span) -> PResult<HostRef> {
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

    pub(super) fn host_ref(&self, name: &str, span: Span, kind: &str) -> PResult<HostId> {
        match self.host_index.get(name) {
            Some(HostLike::Host(i)) => Ok(HostId(*i)),
            Some(HostLike::Group(i)) => {
                let members: Vec<&str> = self
                    .group_members
                    .get(*i)
                    .map(|m| m.iter().take(3).map(|h| self.hosts[h.0].name).collect())
                    .unwrap_or_default();
                Err(Diagnostic::error(
                    Code::GroupNotAllowed,
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

    pub(super) fn unknown(&self, what: &str, name: &str, span: Span) -> Diagnostic {
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
            Code::UnknownName,
            format!("unknown {what} `{}`", short(name)),
            span,
        )
        .with_help(help)
    }
}
