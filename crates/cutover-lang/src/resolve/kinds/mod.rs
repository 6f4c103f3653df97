//! The step kinds: the table of kind keywords with their syntax, the kind
//! line's parser, and one module per family of kinds. A kind's parser reads
//! its arguments after the keyword and returns the [`ActionKind`]; a fault
//! in its syntax is shown with the kind's usage line.

mod check;
mod copy;
mod db;
mod dns;
mod exec;
mod hold;

use super::Resolver;
use super::cursor::{Cursor, PResult, join, short};
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::suggest::closest;

/// The kind keywords, their argument syntax, and whether they may follow `verify`.
pub(super) const KINDS: &[(&str, &str, bool)] = &[
    ("dns.ttl", "dns.ttl ZONE NAME... TYPE TTL [was TTL]", false),
    ("dns.switch", "dns.switch ZONE NAME TYPE OLD -> NEW", false),
    (
        "dns.add",
        "dns.add ZONE NAME TYPE VALUE[, VALUE...] [ttl TTL]",
        false,
    ),
    (
        "dns.remove",
        "dns.remove ZONE NAME TYPE VALUE[, VALUE...]",
        false,
    ),
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
    ("db.unfollow", "db.unfollow STEP", false),
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

/// The step attribute keywords, for "did you mean" on a kind line.
const STEP_ATTRIBUTES: &[&str] = &["undo", "verify", "timeout", "retry", "expect"];

impl<'a> Resolver<'a> {
    /// A kind line from the kind keyword on.
    pub(super) fn parse_action(&mut self, cursor: &mut Cursor<'a>) -> PResult<Action> {
        let (keyword, keyword_span) = cursor.word("a kind (dns.ttl, dns.switch, dns.add, dns.remove, image.copy, db.sync, db.unfollow, port.open, port.closed, http.check, exec, manual or wait)")?;
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
                Code::UnknownKind,
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
                if d.code == Code::UnexpectedToken.as_str() {
                    d.code = Code::BadKindArgs.as_str();
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
        match keyword {
            "dns.ttl" => self.dns_ttl(cursor),
            "dns.switch" => self.dns_switch(cursor),
            "dns.add" => self.dns_add(cursor),
            "dns.remove" => self.dns_remove(cursor),
            "image.copy" => self.image_copy(cursor),
            "db.sync" => self.db_sync(cursor),
            "db.unfollow" => self.db_unfollow(cursor),
            "port.open" | "port.closed" => self.port_check(keyword, cursor),
            "http.check" => self.http_check(cursor),
            "exec" => self.exec(cursor),
            "manual" => self.manual(cursor),
            _ => self.wait(cursor),
        }
    }
}
