//! The checking kinds, `port.open`, `port.closed` and `http.check`: what is
//! probed (hosts or groups and ports, a URL and what its answer must hold)
//! and from where. These, with `exec`, are the kinds `verify` takes.

use super::super::Resolver;
use super::super::cursor::{Cursor, PResult, is_name, short};
use super::super::names::HostLike;
use super::super::values::*;
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::source::Span;
use std::net::IpAddr;
use std::path::PathBuf;

impl<'a> Resolver<'a> {
    /// `port.open|port.closed HOST:PORT, ... [from HOST]`, after the keyword.
    pub(super) fn port_check(
        &mut self,
        keyword: &str,
        cursor: &mut Cursor<'a>,
    ) -> PResult<ActionKind> {
        let targets = PortTargets::new(cursor.list(|c| self.port_targets(c))?);
        let from = match cursor.eat("from") {
            Some(_) => Some(self.vantage(cursor)?),
            None => None,
        };
        Ok(if keyword == "port.open" {
            ActionKind::PortOpen { targets, from }
        } else {
            ActionKind::PortClosed { targets, from }
        })
    }

    /// `http.check URL [at HOST] [from HOST] [status CODE] [body "TEXT"] [ca FILE] [cert-days N]`,
    /// after the keyword.
    pub(super) fn http_check(&mut self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let (url, url_span) = cursor.word("a URL like `http://wiki-new/`")?;
        let Some(url_host) = url_host(url) else {
            return Err(Diagnostic::error(
                Code::BadValue,
                format!("`{}` is not an http:// or https:// URL", short(url)),
                url_span,
            )
            .with_help(
                "write a full URL, like `http://wiki-new/` or `https://203.0.113.5:8443/health`",
            ));
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
        const HTTP_ATTRIBUTES: &str =
            "`at HOST`, `from HOST`, `status CODE`, `body \"TEXT\"`, `ca FILE` or `cert-days N`";
        while !cursor.at_end() {
            let (word, word_span) = cursor.word(HTTP_ATTRIBUTES)?;
            if matches!(word, "ca" | "cert-days") && !https {
                return Err(Diagnostic::error(
                    Code::BadKindArgs,
                    format!(
                        "`{word}` is about the TLS certificate, and `{}` is not an https:// URL",
                        short(url)
                    ),
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
                            Code::BadKindArgs,
                            format!("`{}` names an address, so `at` has no name to send there", short(url)),
                            word_span,
                        )
                        .with_help("write the site's name in the URL (`https://wiki.example.org/ at wiki-new`), or leave out `at`"));
                    }
                    host = Some(match self.host_index.get(name) {
                        Some(HostLike::Host(i)) => HostId(*i),
                        Some(HostLike::Group(_)) => {
                            return Err(Diagnostic::error(
                                Code::GroupNotAllowed,
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
                    let (path, _) = cursor.word_or_string("the CA certificate file (PEM)")?;
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
                                Code::BadValue,
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
                    let (code, code_span) = cursor.word("an HTTP status code like `200`")?;
                    let value = code
                        .parse::<u16>()
                        .ok()
                        .filter(|c| (100..600).contains(c))
                        .ok_or_else(|| {
                            Diagnostic::error(
                                Code::BadValue,
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
                    let (text, _) = cursor.string("the expected body text in double quotes")?;
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
        Ok(ActionKind::HttpCheck {
            url: url.to_string(),
            host,
            at: at.is_some(),
            status: status.map_or(200, |(s, _)| s),
            body: body.map(|(b, _)| b),
            ca: ca.map(|(c, _)| c),
            cert_days: cert_days.map(|(d, _)| d),
            from: from.map(|(h, _)| h),
        })
    }

    fn vantage(&self, cursor: &mut Cursor<'a>) -> PResult<HostId> {
        let (name, name_span) = cursor.name("the host the check runs from")?;
        match self.host_index.get(name) {
            Some(HostLike::Host(i)) => Ok(HostId(*i)),
            Some(HostLike::Group(_)) => Err(Diagnostic::error(
                Code::GroupNotAllowed,
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
                Code::BadKindArgs,
                format!("`{}` is not HOST:PORT", short(word)),
                span,
            )
            .with_help("name a host or group and a port, like `wiki-new:80`"));
        };
        let name_span = Span::new(span.file, span.start, span.start + name.len());
        let port_span = Span::new(span.file, span.start + name.len() + 1, span.end);
        if !is_name(name) {
            return Err(Diagnostic::error(
                Code::BadName,
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
}
