//! The DNS kinds, `dns.ttl`, `dns.switch`, `dns.add` and `dns.remove`: a zone (resolved), record
//! names, a type and TTLs or values, each checked where it is written.

use super::super::Resolver;
use super::super::cursor::{Cursor, PResult, join, short};
use super::super::values::*;
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::lexer::TokenKind;
use crate::model::*;
use crate::source::Span;

/// The values of one RRset, `VALUE[, VALUE...]`, each checked for `rtype`; a value given twice
/// is refused. Returns them with the span they cover.
fn record_values(
    cursor: &mut Cursor<'_>,
    rtype: RecordType,
    what: &str,
) -> PResult<(RecordValues, Span)> {
    let mut values: Vec<String> = Vec::new();
    let mut covered = cursor.end_span();
    loop {
        let (value, span) = cursor.word_or_string(what)?;
        check_record_value(rtype, &value, span)?;
        if values.contains(&value) {
            return Err(Diagnostic::error(
                Code::BadValue,
                format!("`{}` is given twice", short(&value)),
                span,
            )
            .with_help("an RRset holds each value once"));
        }
        covered = if values.is_empty() {
            span
        } else {
            join(covered, span)
        };
        values.push(value);
        if !cursor.eat_comma() {
            break;
        }
    }
    Ok((RecordValues(values), covered))
}

impl<'a> Resolver<'a> {
    /// `dns.ttl ZONE NAME... TYPE TTL [was TTL]`, after the keyword.
    pub(super) fn dns_ttl(&mut self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
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
        Ok(ActionKind::DnsTtl {
            zone,
            names,
            rtype,
            ttl,
            previous_ttl,
        })
    }

    /// `dns.switch ZONE NAME TYPE OLD[, OLD...] -> NEW[, NEW...]`, after the keyword.
    pub(super) fn dns_switch(&mut self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let zone = self.zone_word(cursor)?;
        let (name, name_span) = cursor.word("a record name (`@` for the zone's apex)")?;
        check_record_name(name, name_span)?;
        let rtype = record_type_word(cursor)?;
        let (old, old_span) = record_values(cursor, rtype, "the record's current value")?;
        cursor.arrow()?;
        let (new, new_span) = record_values(cursor, rtype, "the record's new value")?;
        if old.same_set(&new) {
            return Err(Diagnostic::error(
                Code::BadValue,
                "the old and the new value are the same",
                join(old_span, new_span),
            )
            .with_help("a switch changes the value; to change only the TTL use `dns.ttl`"));
        }
        Ok(ActionKind::DnsSwitch {
            zone,
            name: name.to_string(),
            rtype,
            old,
            new,
        })
    }

    /// `dns.add ZONE NAME TYPE VALUE[, VALUE...] [ttl TTL]`, after the keyword.
    pub(super) fn dns_add(&mut self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let (zone, name, rtype, values) = self.dns_values(cursor, "a value to add")?;
        let ttl = match cursor.eat("ttl") {
            Some(_) => Some(ttl_word(cursor, "the TTL of a new RRset, like `300`")?),
            None => None,
        };
        Ok(ActionKind::DnsAdd {
            zone,
            name,
            rtype,
            values,
            ttl,
        })
    }

    /// `dns.remove ZONE NAME TYPE VALUE[, VALUE...]`, after the keyword.
    pub(super) fn dns_remove(&mut self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let (zone, name, rtype, values) = self.dns_values(cursor, "a value to remove")?;
        Ok(ActionKind::DnsRemove {
            zone,
            name,
            rtype,
            values,
        })
    }

    /// `ZONE NAME TYPE VALUE[, VALUE...]`, shared by `dns.add` and `dns.remove`.
    fn dns_values(
        &mut self,
        cursor: &mut Cursor<'a>,
        what: &str,
    ) -> PResult<(ZoneId, String, RecordType, RecordValues)> {
        let zone = self.zone_word(cursor)?;
        let (name, name_span) = cursor.word("a record name (`@` for the zone's apex)")?;
        check_record_name(name, name_span)?;
        let rtype = record_type_word(cursor)?;
        let (values, _) = record_values(cursor, rtype, what)?;
        Ok((zone, name.to_string(), rtype, values))
    }
}
