//! The canonical one-line text of a kind line, e.g.
//! `dns.switch maemo.org wiki A 188.117.59.202 -> 80.248.164.42`, as plans,
//! status lines and prompts show it. Groups appear expanded into their hosts.

use crate::format::{quote, word};
use crate::model::Action;
use crate::model::{ActionKind, DbServer, Endpoint, PortTargets, Runbook, WaitFor};
use crate::units::format_duration;
use std::fmt::Write;

impl Runbook {
    /// The kind line of `action`, in canonical form.
    pub fn describe(&self, action: &Action) -> String {
        let mut out = String::from(action.kind.keyword());
        let endpoint = |e: &Endpoint| format!("{}:{}", self.host(e.host).name, e.path);
        let targets = |t: &PortTargets| {
            let mut text = String::new();
            for (i, t) in t.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                let _ = write!(text, "{sep}{}:{}", self.host(t.host).name, t.port);
            }
            text
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
                " {} {name} {} {old} -> {new}",
                self.zone(*zone).name,
                rtype.as_str(),
            ),
            ActionKind::DnsAdd {
                zone,
                name,
                rtype,
                values,
                ttl,
            } => {
                let line = write!(
                    out,
                    " {} {name} {} {values}",
                    self.zone(*zone).name,
                    rtype.as_str(),
                );
                ttl.map_or(line, |ttl| write!(out, " ttl {}", ttl.as_secs()))
            }
            ActionKind::DnsRemove {
                zone,
                name,
                rtype,
                values,
            } => write!(
                out,
                " {} {name} {} {values}",
                self.zone(*zone).name,
                rtype.as_str(),
            ),
            ActionKind::ImageCopy {
                from,
                to,
                size,
                limit,
            } => {
                let line = write!(out, " {} -> {}", endpoint(from), endpoint(to));
                let line = size.map_or(line, |s| write!(out, " size {s}"));
                limit.map_or(line, |l| write!(out, " limit {l}"))
            }
            ActionKind::DbSync { from, to, size, .. } => {
                let line = write!(out, " sqlite {} -> {}", endpoint(from), endpoint(to));
                size.map_or(line, |s| write!(out, " size {s}"))
            }
            ActionKind::PortOpen { targets: t, from }
            | ActionKind::PortClosed { targets: t, from } => {
                let line = write!(out, " {}", targets(t));
                from.map_or(line, |h| write!(out, " from {}", self.host(h).name))
            }
            ActionKind::HttpCheck {
                url,
                host,
                at,
                status,
                body,
                ca,
                cert_days,
                from,
            } => {
                let mut line = write!(out, " {url}");
                if let (true, Some(host)) = (*at, host) {
                    line = write!(out, " at {}", self.host(*host).name);
                }
                if let Some(from) = from {
                    line = write!(out, " from {}", self.host(*from).name);
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
                for (i, h) in on.iter().enumerate() {
                    let sep = if i == 0 { " on " } else { ", " };
                    let _ = write!(out, "{sep}{}", self.host(h).name);
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
            ActionKind::DbReplicate {
                engine,
                from,
                to,
                freeze,
                size,
            } => {
                let mut line = write!(
                    out,
                    " {} {} -> {}",
                    engine.as_str(),
                    self.describe_db_server(from),
                    self.describe_db_server(to)
                );
                if let Some(gate) = freeze {
                    line = write!(out, " freeze {}", self.step(*gate).name);
                }
                size.map_or(line, |s| write!(out, " size {s}"))
            }
            ActionKind::DbUnfollow { step } => write!(out, " {}", self.step(*step).name),
        };
        out
    }
}

impl Runbook {
    /// `HOST:PORT/DATABASE user USER [password REF]` (the reference, never
    /// the password).
    pub fn describe_db_server(&self, server: &DbServer) -> String {
        let mut text = format!(
            "{}:{}/{} user {}",
            self.host(server.host).name,
            server.port,
            server.database,
            word(&server.user)
        );
        if let Some(password) = &server.password {
            let _ = write!(text, " password {}", word(&password.reference()));
        }
        text
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

    #[test]
    fn checks_from_a_host() {
        use crate::model::ActionKind;
        let base = "runbook r\n\nhost wiki addr 127.0.0.1 via local ./w\nhost lb addr 127.0.0.3 via agent \"cutover agent --stdio --root /\"\ngroup web wiki, lb\n\nstep s\n  ";
        let parse = |line: &str| parse_source("r.runbook", format!("{base}{line}\n"));
        for (line, described) in [
            (
                "port.open web:80, wiki:443 from lb",
                "port.open wiki:80, lb:80, wiki:443 from lb",
            ),
            ("port.closed wiki:22 from lb", "port.closed wiki:22 from lb"),
            (
                "http.check https://wiki.lab.test/ from lb at wiki status 301",
                "http.check https://wiki.lab.test/ at wiki from lb status 301",
            ),
        ] {
            let loaded = parse(line);
            assert!(
                loaded.diagnostics.is_empty(),
                "{line}: {:?}",
                loaded.diagnostics
            );
            let runbook = loaded.runbook.unwrap();
            let action = &runbook.steps[0].action;
            let from = match &action.kind {
                ActionKind::PortOpen { from, .. }
                | ActionKind::PortClosed { from, .. }
                | ActionKind::HttpCheck { from, .. } => *from,
                _ => None,
            };
            assert_eq!(from.map(|h| runbook.host(h).name.as_str()), Some("lb"));
            assert_eq!(runbook.describe(action), described);
            // The description reads back as the same action.
            let again = parse(described).runbook.unwrap();
            assert_eq!(again.steps[0].action.kind, action.kind);
        }
        let loaded = parse("port.open wiki:80");
        let runbook = loaded.runbook.unwrap();
        assert!(matches!(
            runbook.steps[0].action.kind,
            ActionKind::PortOpen { from: None, .. }
        ));
        for (line, code) in [
            ("port.open wiki:80 from web", "group-not-allowed"),
            ("port.open wiki:80 from nowhere", "unknown-name"),
            ("port.open wiki:80 from", "bad-kind-args"),
            ("http.check https://x.test/ from web", "group-not-allowed"),
            (
                "http.check https://x.test/ from lb from wiki",
                "duplicate-attribute",
            ),
        ] {
            let loaded = parse(line);
            let codes: Vec<&str> = loaded.diagnostics.iter().map(|d| d.code).collect();
            assert!(codes.contains(&code), "{line}: {codes:?}");
        }
    }

    #[test]
    fn http_check_at_ca_and_cert_days() {
        use crate::model::ActionKind;
        let base = "runbook r\n\nhost wiki addr 127.0.0.1 via local ./w\nhost wiki-new addr 127.0.0.2 via local ./n\ngroup web wiki, wiki-new\n\nstep s\n  ";
        let parse = |line: &str| parse_source("r.runbook", format!("{base}{line}\n"));
        let loaded =
            parse("http.check https://wiki.lab.test/ at wiki-new ca lab-ca.pem cert-days 30");
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let runbook = loaded.runbook.unwrap();
        let ActionKind::HttpCheck {
            host,
            at,
            ca,
            cert_days,
            ..
        } = &runbook.steps[0].action.kind
        else {
            panic!("not an http.check");
        };
        assert_eq!(runbook.host(host.unwrap()).name, "wiki-new");
        assert!(*at);
        assert_eq!(ca.as_deref(), Some(std::path::Path::new("lab-ca.pem")));
        assert_eq!(*cert_days, Some(30));
        // Without `at`, a URL naming a host still goes there, described as written.
        let loaded = parse("http.check http://wiki/ status 200");
        let runbook = loaded.runbook.unwrap();
        assert_eq!(
            runbook.describe(&runbook.steps[0].action),
            "http.check http://wiki/"
        );
        for (line, code) in [
            ("http.check https://x.test/ at web", "group-not-allowed"),
            ("http.check https://x.test/ at nowhere", "unknown-name"),
            (
                "http.check https://x.test/ at wiki at wiki-new",
                "duplicate-attribute",
            ),
            ("http.check https://127.0.0.1/ at wiki", "bad-kind-args"),
            ("http.check http://x.test/ ca lab-ca.pem", "bad-kind-args"),
            ("http.check http://x.test/ cert-days 3", "bad-kind-args"),
            ("http.check https://x.test/ cert-days soon", "bad-value"),
            ("http.check https://x.test/ cert-days 0", "bad-value"),
            (
                "http.check https://x.test/ ca a.pem ca b.pem",
                "duplicate-attribute",
            ),
        ] {
            let loaded = parse(line);
            let codes: Vec<&str> = loaded.diagnostics.iter().map(|d| d.code).collect();
            assert!(codes.contains(&code), "{line}: {codes:?}");
        }
    }
}
