//! The canonical one-line text of a kind line, e.g.
//! `dns.switch maemo.org wiki A 188.117.59.202 -> 80.248.164.42`, as plans,
//! status lines and prompts show it. Groups appear expanded into their hosts.

use crate::format::quote;
use crate::model::{ActionKind, Endpoint, PortTarget, Runbook, WaitFor};
use crate::model::Action;
use crate::units::format_duration;
use std::fmt::Write;

/// A record value or similar word, quoted when it would not read back as one word.
fn word(value: &str) -> String {
    let plain = !value.is_empty()
        && !value.starts_with('#')
        && !value.contains("->")
        && !value.chars().any(|c| c.is_whitespace() || c == ',' || c == '"');
    if plain { value.to_string() } else { quote(value) }
}

impl Runbook {
    /// The kind line of `action`, in canonical form.
    pub fn describe(&self, action: &Action) -> String {
        let mut out = String::from(action.kind.keyword());
        let endpoint = |e: &Endpoint| format!("{}:{}", self.host(e.host).name, e.path);
        let targets = |t: &[PortTarget]| {
            t.iter().map(|t| format!("{}:{}", self.host(t.host).name, t.port)).collect::<Vec<_>>().join(", ")
        };
        let _ = match &action.kind {
            ActionKind::DnsTtl { zone, names, rtype, ttl, previous_ttl } => {
                let mut line = write!(out, " {} {} {} {}", self.zone(*zone).name, names.join(" "), rtype.as_str(), ttl.as_secs());
                if let Some(previous) = previous_ttl {
                    line = write!(out, " was {}", previous.as_secs());
                }
                line
            }
            ActionKind::DnsSwitch { zone, name, rtype, old, new } => write!(
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
            ActionKind::PortOpen { targets: t } | ActionKind::PortClosed { targets: t } => write!(out, " {}", targets(t)),
            ActionKind::HttpCheck { url, status, body, .. } => {
                let mut line = write!(out, " {url}");
                if *status != 200 {
                    line = write!(out, " status {status}");
                }
                if let Some(body) = body {
                    line = write!(out, " body {}", quote(body));
                }
                line
            }
            ActionKind::Exec { on, command } => {
                if !on.is_empty() {
                    let hosts: Vec<&str> = on.iter().map(|h| self.host(*h).name.as_str()).collect();
                    let _ = write!(out, " on {}", hosts.join(", "));
                }
                write!(out, " {}", quote(command))
            }
            ActionKind::Manual { instructions } => write!(out, " {}", quote(instructions)),
            ActionKind::Wait(WaitFor::Duration(d)) => write!(out, " {}", format_duration(*d)),
            ActionKind::Wait(WaitFor::Until(t)) => write!(out, " until {t}"),
        };
        out
    }
}
