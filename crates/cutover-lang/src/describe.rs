//! The canonical one-line text of a kind line, e.g.
//! `dns.switch maemo.org wiki A 188.117.59.202 -> 80.248.164.42`, as plans,
//! status lines and prompts show it. Groups appear expanded into their hosts.

use crate::format::quote;
use crate::model::Action;
use crate::model::{ActionKind, Endpoint, PortTarget, Runbook, WaitFor};
use crate::units::format_duration;
use std::fmt::Write;

/// A record value or similar word, quoted when it would not read back as one word.
fn word(value: &str) -> String {
    let plain = !value.is_empty()
        && !value.starts_with('#')
        && !value.contains("->")
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == '"');
    if plain {
        value.to_string()
    } else {
        quote(value)
    }
}

impl Runbook {
    /// The kind line of `action`, in canonical form.
    pub fn describe(&self, action: &Action) -> String {
        let mut out = String::from(action.kind.keyword());
        let endpoint = |e: &Endpoint| format!("{}:{}", self.host(e.host).name, e.path);
        let targets = |t: &[PortTarget]| {
            t.iter()
                .map(|t| format!("{}:{}", self.host(t.host).name, t.port))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = match &action.kind {
            ActionKind::DnsTtl {
                zone,
                names,
                rtype,
                ttl,
                previous_ttl,
            } => {
                let mut line = write!(
                    out,
                    " {} {} {} {}",
                    self.zone(*zone).name,
                    names.join(" "),
                    rtype.as_str(),
                    ttl.as_secs()
                );
                if let Some(previous) = previous_ttl {
                    line = write!(out, " was {}", previous.as_secs());
                }
                line
            }
            ActionKind::DnsSwitch {
                zone,
                name,
                rtype,
                old,
                new,
            } => write!(
                out,
                " {} {name} {} {} -> {}",
                self.zone(*zone).name,
                rtype.as_str(),
                word(old),
                word(new)
            ),
            ActionKind::ImageCopy { from, to, size } => {
                let line = write!(out, " {} -> {}", endpoint(from), endpoint(to));
                size.map_or(line, |s| write!(out, " size {s}"))
            }
            ActionKind::DbSync { from, to, size, .. } => {
                let line = write!(out, " sqlite {} -> {}", endpoint(from), endpoint(to));
                size.map_or(line, |s| write!(out, " size {s}"))
            }
            ActionKind::PortOpen { targets: t } | ActionKind::PortClosed { targets: t } => {
                write!(out, " {}", targets(t))
            }
            ActionKind::HttpCheck {
                url,
                host,
                at,
                status,
                body,
                ca,
                cert_days,
            } => {
                let mut line = write!(out, " {url}");
                if let (true, Some(host)) = (*at, host) {
                    line = write!(out, " at {}", self.host(*host).name);
                }
                if *status != 200 {
                    line = write!(out, " status {status}");
                }
                if let Some(body) = body {
                    line = write!(out, " body {}", quote(body));
                }
                if let Some(ca) = ca {
                    line = write!(out, " ca {}", word(&ca.to_string_lossy()));
                }
                if let Some(days) = cert_days {
                    line = write!(out, " cert-days {days}");
                }
                line
            }
            ActionKind::Exec { on, command, env } => {
                if !on.is_empty() {
                    let hosts: Vec<&str> = on.iter().map(|h| self.host(*h).name.as_str()).collect();
                    let _ = write!(out, " on {}", hosts.join(", "));
                }
                let line = write!(out, " {}", quote(command));
                if env.is_empty() {
                    line
                } else {
                    write!(out, " env {}", env.join(", "))
                }
            }
            ActionKind::Manual { instructions } => write!(out, " {}", quote(instructions)),
            ActionKind::Wait(WaitFor::Duration(d)) => write!(out, " {}", format_duration(*d)),
            ActionKind::Wait(WaitFor::Until(t)) => write!(out, " until {t}"),
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::parse_source;

    #[test]
    fn describe_gives_the_canonical_kind_line() {
        let text = "runbook r\n  window 2030-01-01 00:00 UTC for 1h\n\nkey k hmac-sha256 env:K\n\nzone maemo.org.\n  primary 192.0.2.53 key k\n\n\
                    host wiki addr 188.117.59.202 via local ./w\nhost wiki-new addr 80.248.164.42 via local ./n\ngroup web wiki, wiki-new\n\n\
                    step a\n  dns.switch maemo.org wiki A 188.117.59.202->80.248.164.42\n\n\
                    step b\n  dns.ttl MAEMO.org www wiki A 5m was 1d\n\n\
                    step c\n  port.open web:80,wiki:22\n\n\
                    step d\n  exec on web \"say \\\"hi\\\"\" env PGHOST,PGPORT , PGHOST\n\n\
                    step e\n  image.copy wiki:/i.img -> wiki-new:/i.img size 21474836480\n\n\
                    step f\n  wait until T-1h30m\n\n\
                    step g\n  http.check http://wiki-new/ status 301 body \"moved\"\n\n\
                    step h\n  http.check https://wiki.maemo.org:8443/x cert-days 20 at wiki-new ca \"certs/lab ca.pem\"\n";
        let loaded = parse_source("r.runbook", text.to_string());
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let runbook = loaded.runbook.unwrap();
        let lines: Vec<String> = runbook
            .steps
            .iter()
            .map(|s| runbook.describe(&s.action))
            .collect();
        assert_eq!(
            lines,
            [
                "dns.switch maemo.org wiki A 188.117.59.202 -> 80.248.164.42",
                "dns.ttl maemo.org www wiki A 300 was 86400",
                "port.open wiki:80, wiki-new:80, wiki:22",
                "exec on wiki, wiki-new \"say \\\"hi\\\"\" env PGHOST, PGPORT",
                "image.copy wiki:/i.img -> wiki-new:/i.img size 20GiB",
                "wait until T-1h30m",
                "http.check http://wiki-new/ status 301 body \"moved\"",
                "http.check https://wiki.maemo.org:8443/x at wiki-new ca \"certs/lab ca.pem\" cert-days 20",
            ]
        );
    }
}
