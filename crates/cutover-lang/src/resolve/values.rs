//! Value parsers: the words inside a line that are values, not keywords
//! (names, record types and values, ports, durations, TTLs, times, the
//! window, links, transports, secret references, URLs). Each checks its
//! value where it is written and says what was expected; none looks a name
//! up (that is [`super::names`]).

use super::cursor::{Cursor, PResult, join, short};
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::source::Span;
use crate::units::{Bandwidth, TimeSpec, parse_duration, parse_utc};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The record types the language knows, for messages.
pub(super) const RECORD_TYPES: &str = "A, AAAA, CNAME, MX, TXT, NS, SRV, CAA, PTR, HTTPS or SVCB";

/// A zone's name: a domain name, optionally with its trailing dot.
pub(super) fn is_domain(text: &str) -> bool {
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

/// A record's name relative to its zone (`@`, `www`, `*.lists`).
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

/// A record type as written (in capitals).
pub(super) fn record_type(text: &str) -> Option<RecordType> {
    RecordType::from_mnemonic(text)
}

/// Zone names are compared without case and without a trailing dot.
pub(super) fn zone_key(text: &str) -> String {
    text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase()
}

/// A TCP port, 1 to 65535.
pub(super) fn port_number(text: &str, span: Span) -> PResult<u16> {
    text.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
        Diagnostic::error(
            Code::BadValue,
            format!("`{}` is not a port number", short(text)),
            span,
        )
        .with_help("ports are 1 to 65535")
    })
}

/// An attribute given twice on one item.
pub(super) fn duplicate_attribute(what: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::error(
        Code::DuplicateAttribute,
        format!("`{what}` is given twice"),
        span,
    )
    .with_label(first, "first given here")
    .with_help(format!("keep one `{what}`"))
}

/// A duration, size or bandwidth that did not parse.
pub(super) fn bad_unit(message: String, span: Span) -> Diagnostic {
    Diagnostic::error(Code::BadUnit, message, span)
}

/// A duration like `10m`.
pub(super) fn duration_word(cursor: &mut Cursor<'_>, what: &str) -> PResult<Duration> {
    let (text, span) = cursor.word(what)?;
    parse_duration(text).map_err(|m| bad_unit(m, span))
}

/// A TTL: a duration DNS can carry.
pub(super) fn ttl_word(cursor: &mut Cursor<'_>, what: &str) -> PResult<Duration> {
    let (text, span) = cursor.word(what)?;
    let ttl = parse_duration(text).map_err(|m| bad_unit(m, span))?;
    if ttl.as_secs() > i32::MAX as u64 {
        return Err(Diagnostic::error(
            Code::BadValue,
            format!("TTL `{}` is longer than DNS allows", short(text)),
            span,
        )
        .with_help("a TTL is at most 2147483647 seconds (about 68 years)"));
    }
    Ok(ttl)
}

/// A record type, with a hint when it is not in capitals.
pub(super) fn record_type_word(cursor: &mut Cursor<'_>) -> PResult<RecordType> {
    let (text, span) = cursor.word(&format!("a record type ({RECORD_TYPES})"))?;
    record_type(text).ok_or_else(|| {
        let help = match record_type(&text.to_ascii_uppercase()) {
            Some(t) => format!("record types are written in capitals: `{}`", t.as_str()),
            None => format!("cutover handles {RECORD_TYPES} records"),
        };
        Diagnostic::error(
            Code::BadValue,
            format!("unknown record type `{}`", short(text)),
            span,
        )
        .with_help(help)
    })
}

/// Refuses a record name that is not one.
pub(super) fn check_record_name(name: &str, span: Span) -> PResult<()> {
    if is_record_name(name) {
        Ok(())
    } else {
        Err(Diagnostic::error(Code::BadName, format!("`{}` is not a record name", short(name)), span)
            .with_help("record names are relative to the zone, like `www` or `mail.lists`; `@` is the zone's apex"))
    }
}

/// Refuses a record value its type cannot hold.
pub(super) fn check_record_value(rtype: RecordType, value: &str, span: Span) -> PResult<()> {
    match record_value_fault(rtype, value) {
        None => Ok(()),
        Some(fault) => {
            let expected = match rtype {
                RecordType::A => "an IPv4 address like `192.0.2.10`",
                RecordType::Aaaa => "an IPv6 address like `2001:db8::10`",
                RecordType::Cname | RecordType::Ns | RecordType::Ptr => {
                    "a host name like `www.example.org.`"
                }
                RecordType::Mx => "a preference and a host name, like `10 mail.example.org.`",
                RecordType::Srv => {
                    "a priority, a weight, a port and a host name, like `10 5 5060 sip.example.org.`"
                }
                RecordType::Caa => "flags, a tag and a value, like `0 issue \"letsencrypt.org\"`",
                RecordType::Https | RecordType::Svcb => {
                    "a priority, a target and parameters, like `1 . alpn=h2,h3 port=443`"
                }
                RecordType::Txt => "text",
            };
            let article = if matches!(
                rtype,
                RecordType::A
                    | RecordType::Aaaa
                    | RecordType::Mx
                    | RecordType::Ns
                    | RecordType::Srv
                    | RecordType::Https
            ) {
                "an"
            } else {
                "a"
            };
            Err(Diagnostic::error(
                Code::BadValue,
                format!("`{}` is not a valid {} value", short(value), rtype.as_str()),
                span,
            )
            .with_help(match fault {
                Fault::Whole => format!("{article} {} record holds {expected}", rtype.as_str()),
                Fault::Part(part) => {
                    format!(
                        "{part}; {article} {} record holds {expected}",
                        rtype.as_str()
                    )
                }
            }))
        }
    }
}

/// What is wrong with a record value: all of it, or one part (said in words).
enum Fault {
    Whole,
    Part(String),
}

/// The fault of `value` as a value of `rtype` in zone-file syntax, if it has one.
fn record_value_fault(rtype: RecordType, value: &str) -> Option<Fault> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let fault = |ok: bool| (!ok).then_some(Fault::Whole);
    match rtype {
        RecordType::A => fault(Ipv4Addr::from_str(value).is_ok()),
        RecordType::Aaaa => fault(Ipv6Addr::from_str(value).is_ok()),
        RecordType::Txt => fault(!value.is_empty()),
        RecordType::Cname | RecordType::Ns | RecordType::Ptr => {
            fault(fields.len() == 1 && is_host_name(fields[0]))
        }
        RecordType::Mx => fields_fault(&fields, &["preference"], true),
        RecordType::Srv => fields_fault(&fields, &["priority", "weight", "port"], true),
        RecordType::Caa => caa_fault(value),
        RecordType::Https | RecordType::Svcb => fields_fault(&fields, &["priority"], false)
            .or_else(|| {
                fields[2..]
                    .iter()
                    .find_map(|parameter| service_parameter_fault(parameter).map(Fault::Part))
            }),
    }
}

/// Numbers from 0 to 65535 (named in `numbers`), then a host name; with `exact`, nothing
/// after it.
fn fields_fault(fields: &[&str], numbers: &[&str], exact: bool) -> Option<Fault> {
    let wanted = numbers.len() + 1;
    if fields.len() < wanted || (exact && fields.len() > wanted) {
        return Some(Fault::Whole);
    }
    for (field, what) in fields.iter().zip(numbers) {
        if field.parse::<u16>().is_err() {
            return Some(Fault::Part(format!(
                "the {what} `{}` is not a number from 0 to 65535",
                short(field)
            )));
        }
    }
    let host = fields[numbers.len()];
    (!is_host_name(host)).then(|| Fault::Part(format!("`{}` is not a host name", short(host))))
}

/// A host name in record data: `.` (the root, "no service") or a domain name, absolute with
/// a trailing dot or relative to the zone.
fn is_host_name(text: &str) -> bool {
    text == "." || is_domain(text)
}

/// `FLAGS TAG VALUE` (RFC 8659): flags 0 to 255, a tag of letters and digits, a value.
fn caa_fault(value: &str) -> Option<Fault> {
    let mut fields = value.split_whitespace();
    let (Some(flags), Some(tag)) = (fields.next(), fields.next()) else {
        return Some(Fault::Whole);
    };
    if flags.parse::<u8>().is_err() {
        return Some(Fault::Part(format!(
            "the flags `{}` are not a number from 0 to 255",
            short(flags)
        )));
    }
    if tag.is_empty() || tag.len() > 15 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Some(Fault::Part(format!(
            "the tag `{}` is not up to 15 letters and digits",
            short(tag)
        )));
    }
    fields
        .next()
        .is_none()
        .then_some(Fault::Part(format!("the tag `{tag}` has no value")))
}

/// One `KEY[=VALUE]` of an HTTPS or SVCB record (RFC 9460 §7), as hickory reads them.
fn service_parameter_fault(parameter: &str) -> Option<String> {
    let (key, value) = match parameter.split_once('=') {
        Some((key, value)) => (key, Some(value.trim_matches('"'))),
        None => (parameter, None),
    };
    let items = value.map(|v| v.split(',').collect::<Vec<_>>());
    let bad = |what: &str| Some(format!("`{}` {what}", short(parameter)));
    match key {
        "mandatory" | "alpn" => match &items {
            Some(items) if items.iter().all(|item| !item.is_empty()) => None,
            _ => bad("needs a comma-separated list"),
        },
        "no-default-alpn" => value.and_then(|_| bad("takes no value")),
        "port" => match value.map(str::parse::<u16>) {
            Some(Ok(_)) => None,
            _ => bad("needs a port number from 0 to 65535"),
        },
        "ipv4hint" => match &items {
            Some(items) if items.iter().all(|item| Ipv4Addr::from_str(item).is_ok()) => None,
            _ => bad("needs IPv4 addresses, separated by commas"),
        },
        "ipv6hint" => match &items {
            Some(items) if items.iter().all(|item| Ipv6Addr::from_str(item).is_ok()) => None,
            _ => bad("needs IPv6 addresses, separated by commas"),
        },
        "ech" => match value {
            Some(value) if !value.is_empty() => None,
            _ => bad("needs a base64 ECHConfigList"),
        },
        key if key
            .strip_prefix("key")
            .is_some_and(|number| number.parse::<u16>().is_ok()) =>
        {
            None
        }
        _ => Some(format!(
            "`{}` is not a service parameter (mandatory, alpn, no-default-alpn, port, ipv4hint, ech, ipv6hint or keyNNNNN)",
            short(key)
        )),
    }
}

/// A DNS server's address, port 53 unless given.
pub(super) fn server_address(cursor: &mut Cursor<'_>) -> PResult<(SocketAddr, Span)> {
    let (text, span) = cursor.word("a server address like `192.0.2.53:53`")?;
    SocketAddr::from_str(text)
        .or_else(|_| IpAddr::from_str(text).map(|ip| SocketAddr::new(ip, 53)))
        .map(|a| (a, span))
        .map_err(|_| {
            Diagnostic::error(Code::BadAddress, format!("`{}` is not an IP address with an optional port", short(text)), span)
                .with_help("DNS servers are given by address: `192.0.2.53`, `192.0.2.53:5353` or `[2001:db8::53]:53`")
        })
}

/// An environment variable name: letters, digits and `_`, not starting
/// with a digit.
pub(super) fn is_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A secret by reference: `env:VARIABLE` or `file:PATH`.
pub(super) fn parse_secret(text: &str, span: Span) -> PResult<SecretRef> {
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
            Code::BadSecret,
            "this is not an environment variable name",
            span,
        )
        .with_help("write `env:NAME`, where NAME is letters, digits and `_`"));
    }
    if let Some(path) = text.strip_prefix("file:").filter(|p| !p.is_empty()) {
        return Ok(SecretRef::File(PathBuf::from(path)));
    }
    Err(Diagnostic::error(
        Code::BadSecret,
        "a key's secret is given only by reference",
        span,
    )
    .with_help("write `env:VARIABLE` or `file:PATH`; never put a secret itself in a runbook"))
}

/// `via local PATH`, `via ssh USER@HOST[:PORT]` or `via agent "COMMAND"`.
pub(super) fn parse_transport(
    cursor: &mut Cursor<'_>,
    via_span: Span,
) -> PResult<(Transport, Span)> {
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
                    Code::BadValue,
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
            Code::BadValue,
            format!("unknown transport `{}`", short(other)),
            how_span,
        )
        .with_help(
            "reach a host `via local PATH`, `via ssh USER@HOST` or `via agent \"COMMAND\"`",
        )),
    }
}

/// `T0`, `T-48h`, `T+2h`, or `2013-03-14 17:00 UTC`.
pub(super) fn parse_time(cursor: &mut Cursor<'_>) -> PResult<(TimeSpec, Span)> {
    let (word, span) = cursor.word("a time: `T0`, `T-48h`, `T+2h` or `2013-03-14 17:00 UTC`")?;
    if word.starts_with('T') {
        return TimeSpec::parse_relative(word)
            .map(|t| (t, span))
            .map_err(|m| bad_unit(m, span));
    }
    let (clock, clock_span) = cursor.word("a time of day like `17:00`")?;
    let whole = join(span, clock_span);
    let at = parse_utc(word, clock).map_err(|m| Diagnostic::error(Code::BadTime, m, whole))?;
    let utc = cursor.eat("UTC").ok_or_else(|| {
        cursor
            .expected("`UTC`")
            .with_help("times are written in UTC: `2013-03-14 17:00 UTC`")
    })?;
    Ok((TimeSpec::Absolute(at), join(whole, utc)))
}

/// `window DATE TIME UTC for DURATION` (after the keyword).
pub(super) fn parse_window(cursor: &mut Cursor<'_>, span: Span) -> PResult<Window> {
    let (start, _) = match parse_time(cursor)? {
        (TimeSpec::Absolute(at), s) => (at, s),
        (TimeSpec::Relative(_), s) => {
            return Err(Diagnostic::error(
                Code::BadTime,
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
            Code::BadValue,
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
pub(super) fn parse_link(cursor: &mut Cursor<'_>, span: Span) -> PResult<Link> {
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
pub(super) fn url_host(url: &str) -> Option<&str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_values_are_checked_for_every_type() {
        let accepted = [
            (RecordType::Cname, "wiki.example.org."),
            (RecordType::Ns, "ns1"),
            (RecordType::Ptr, "www.example.org."),
            (RecordType::Mx, "10 mail.example.org."),
            (RecordType::Mx, "0 ."),
            (RecordType::Srv, "10 5 5060 sip.example.org."),
            (RecordType::Caa, "0 issue \"letsencrypt.org\""),
            (RecordType::Caa, "128 iodef \"mailto:security@example.org\""),
            (RecordType::Txt, "v=spf1 mx -all"),
            (RecordType::Https, "1 . alpn=h2"),
            (
                RecordType::Https,
                "1 cdn.example.org. alpn=h2,h3 port=8443 ipv4hint=198.51.100.7",
            ),
            (RecordType::Https, "0 cdn.example.org."),
            (
                RecordType::Svcb,
                "2 dns.example.org. alpn=dot port=853 ipv6hint=2001:db8::53 key65000=x",
            ),
        ];
        for (rtype, value) in accepted {
            assert!(
                record_value_fault(rtype, value).is_none(),
                "{rtype} {value} refused"
            );
        }
        let refused = [
            (RecordType::Cname, "two names"),
            (RecordType::Ns, "ns..example.org"),
            (RecordType::Mx, "mail.example.org."),
            (RecordType::Mx, "70000 mail.example.org."),
            (RecordType::Mx, "10 mail.example.org. extra"),
            (RecordType::Srv, "10 5 sip.example.org."),
            (RecordType::Caa, "0 issue"),
            (RecordType::Caa, "-1 issue \"x\""),
            (RecordType::Caa, "0 is-sue \"x\""),
            (RecordType::Txt, ""),
            (RecordType::Https, "1"),
            (RecordType::Https, "x . alpn=h2"),
            (RecordType::Https, "1 . port=http"),
            (RecordType::Svcb, "1 . ipv4hint=2001:db8::1"),
            (RecordType::Svcb, "1 . no-default-alpn=yes"),
        ];
        for (rtype, value) in refused {
            assert!(
                record_value_fault(rtype, value).is_some(),
                "{rtype} {value} accepted"
            );
        }
    }
}
