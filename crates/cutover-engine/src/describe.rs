//! Canonical text of steps and actions, in runbook syntax: shown before a
//! step in `--step` mode, and stored per step when a run starts so that a
//! resume can tell exactly which steps changed since. A step's text
//! includes the hosts and zones it touches, so moving a host to a new
//! address changes the steps that use it.

use cutover_lang::units::TimeSpec;
use cutover_lang::{ActionKind, Endpoint, HostId, PortTargets, Runbook, Step, Transport, WaitFor};
use std::fmt::Write as _;
use std::time::Duration;

/// `1h30m`, `45s`, `2d`, `0s`.
pub fn duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return if d.is_zero() {
            "0s".into()
        } else {
            format!("{}ms", d.as_millis())
        };
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    out
}

/// `T0`, `T-48h`, `T+2h30m` or `2013-03-14 17:00:00 UTC`.
pub fn time_spec(t: TimeSpec) -> String {
    match t {
        TimeSpec::Absolute(at) => at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        TimeSpec::Relative(0) => "T0".into(),
        TimeSpec::Relative(s) if s < 0 => {
            format!("T-{}", duration(Duration::from_secs(s.unsigned_abs())))
        }
        TimeSpec::Relative(s) => format!("T+{}", duration(Duration::from_secs(s.unsigned_abs()))),
    }
}

fn host(runbook: &Runbook, id: HostId) -> &str {
    &runbook.host(id).name
}

fn targets(runbook: &Runbook, targets: &PortTargets) -> String {
    let mut s = String::new();
    for (i, t) in targets.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}{}:{}", host(runbook, t.host), t.port);
    }
    s
}

fn endpoint(runbook: &Runbook, e: &Endpoint) -> String {
    format!("{}:{}", host(runbook, e.host), e.path)
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One action as its kind line, e.g. `port.open web:80, web:443`.
pub fn action(runbook: &Runbook, kind: &ActionKind) -> String {
    let keyword = kind.keyword();
    let args = match kind {
        ActionKind::DnsTtl {
            zone,
            names,
            rtype,
            ttl,
            previous_ttl,
        } => {
            let mut s = format!(
                "{} {} {} {}",
                runbook.zone(*zone).name,
                names.join(" "),
                rtype.as_str(),
                ttl.as_secs()
            );
            if let Some(was) = previous_ttl {
                let _ = write!(s, " was {}", was.as_secs());
            }
            s
        }
        ActionKind::DnsSwitch {
            zone,
            name,
            rtype,
            old,
            new,
        } => format!(
            "{} {name} {} {old} -> {new}",
            runbook.zone(*zone).name,
            rtype.as_str()
        ),
        ActionKind::ImageCopy { from, to, size } => {
            let mut s = format!("{} -> {}", endpoint(runbook, from), endpoint(runbook, to));
            if let Some(size) = size {
                let _ = write!(s, " size {}", size.0);
            }
            s
        }
        ActionKind::DbSync { from, to, size, .. } => {
            let mut s = format!(
                "sqlite {} -> {}",
                endpoint(runbook, from),
                endpoint(runbook, to)
            );
            if let Some(size) = size {
                let _ = write!(s, " size {}", size.0);
            }
            s
        }
        ActionKind::PortOpen { targets: t, from } | ActionKind::PortClosed { targets: t, from } => {
            let mut s = targets(runbook, t);
            if let Some(h) = from {
                let _ = write!(s, " from {}", host(runbook, *h));
            }
            s
        }
        ActionKind::HttpCheck {
            url,
            status,
            body,
            from,
            ..
        } => {
            let mut s = format!("{url} status {status}");
            if let Some(h) = from {
                let _ = write!(s, " from {}", host(runbook, *h));
            }
            if let Some(body) = body {
                let _ = write!(s, " body {}", quoted(body));
            }
            s
        }
        ActionKind::Exec { on, command, env } => {
            let mut s = String::new();
            if !on.is_empty() {
                for (i, h) in on.iter().enumerate() {
                    let sep = if i == 0 { "on " } else { ", " };
                    let _ = write!(s, "{sep}{}", host(runbook, h));
                }
                s.push(' ');
            }
            s.push_str(&quoted(command));
            if !env.is_empty() {
                let _ = write!(s, " env {}", env.join(", "));
            }
            s
        }
        ActionKind::Manual { instructions } => quoted(instructions),
        ActionKind::Wait(WaitFor::Duration(d)) => duration(*d),
        ActionKind::Wait(WaitFor::Until(t)) => format!("until {}", time_spec(*t)),
        ActionKind::DbReplicate {
            engine,
            from,
            to,
            freeze,
            size,
        } => {
            let mut s = format!(
                "{} {} -> {}",
                engine.as_str(),
                runbook.describe_db_server(from),
                runbook.describe_db_server(to)
            );
            if let Some(gate) = freeze {
                let _ = write!(s, " freeze {}", runbook.step(*gate).name);
            }
            if let Some(size) = size {
                let _ = write!(s, " size {}", size.0);
            }
            s
        }
    };
    format!("{keyword} {args}")
}

/// The hosts an action touches.
fn hosts_of(kind: &ActionKind) -> Vec<HostId> {
    match kind {
        ActionKind::ImageCopy { from, to, .. } | ActionKind::DbSync { from, to, .. } => {
            vec![from.host, to.host]
        }
        ActionKind::PortOpen { targets, from } | ActionKind::PortClosed { targets, from } => {
            targets.iter().map(|t| t.host).chain(*from).collect()
        }
        ActionKind::HttpCheck { host, from, .. } => host.iter().copied().chain(*from).collect(),
        ActionKind::Exec { on, .. } => on.iter().collect(),
        ActionKind::DnsTtl { .. }
        | ActionKind::DnsSwitch { .. }
        | ActionKind::Manual { .. }
        | ActionKind::Wait(_) => Vec::new(),
        ActionKind::DbReplicate { from, to, .. } => vec![from.host, to.host],
    }
}

/// The step as canonical runbook text (header, kind line, `undo`,
/// `verify`, `timeout`, `retry`, `expect`), followed by `# uses` lines for
/// the hosts and zones it touches.
pub fn step(runbook: &Runbook, step: &Step) -> String {
    let mut out = format!("step {}", step.name);
    if let Some(at) = step.at {
        let _ = write!(out, " at {}", time_spec(at));
    }
    if !step.after.is_empty() {
        let names: Vec<&str> = step
            .after
            .iter()
            .map(|s| runbook.step(*s).name.as_str())
            .collect();
        let _ = write!(out, " after {}", names.join(", "));
    }
    let _ = write!(out, "\n  {}", action(runbook, &step.action.kind));
    if let Some(undo) = &step.undo {
        let _ = write!(out, "\n  undo {}", action(runbook, &undo.kind));
    }
    for verify in &step.verify {
        let _ = write!(out, "\n  verify {}", action(runbook, &verify.kind));
    }
    if let Some(timeout) = step.timeout {
        let _ = write!(out, "\n  timeout {}", duration(timeout));
    }
    if step.retry > 0 {
        let _ = write!(out, "\n  retry {}", step.retry);
    }
    if let Some(expect) = step.expect {
        let _ = write!(out, "\n  expect {}", duration(expect));
    }
    let actions = std::iter::once(&step.action)
        .chain(&step.undo)
        .chain(&step.verify);
    let mut hosts: Vec<HostId> = actions.clone().flat_map(|a| hosts_of(&a.kind)).collect();
    hosts.sort();
    hosts.dedup();
    for id in hosts {
        let h = runbook.host(id);
        let via = match &h.transport {
            Transport::Local { root } => format!("local {}", root.display()),
            Transport::Ssh { user, host, port } => match port {
                Some(port) => format!("ssh {user}@{host}:{port}"),
                None => format!("ssh {user}@{host}"),
            },
            Transport::Agent { command } => format!("agent {}", quoted(command)),
        };
        let _ = write!(out, "\n  # uses host {} addr {} via {via}", h.name, h.addr);
    }
    let mut zones: Vec<usize> = actions
        .filter_map(|a| match &a.kind {
            ActionKind::DnsTtl { zone, .. } | ActionKind::DnsSwitch { zone, .. } => Some(zone.0),
            _ => None,
        })
        .collect();
    zones.sort_unstable();
    zones.dedup();
    for id in zones {
        let z = &runbook.zones[id];
        let verify: Vec<String> = z.verify.iter().map(ToString::to_string).collect();
        let _ = write!(
            out,
            "\n  # uses zone {} primary {} key {} verify {}",
            z.name,
            z.primary,
            z.key.map_or("-", |k| runbook.key(k).name.as_str()),
            verify.join(", ")
        );
    }
    out
}

/// blake3 of the runbook's source texts, in order: the run's content hash.
pub fn content_hash<'a>(sources: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = blake3::Hasher::new();
    for text in sources {
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_read_like_the_language() {
        assert_eq!(duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(duration(Duration::from_secs(172_800)), "2d");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(time_spec(TimeSpec::Relative(-172_800)), "T-2d");
        assert_eq!(time_spec(TimeSpec::Relative(0)), "T0");
        assert_eq!(time_spec(TimeSpec::Relative(9000)), "T+2h30m");
    }

    #[test]
    fn content_hash_separates_files() {
        assert_ne!(content_hash(["ab", "c"]), content_hash(["a", "bc"]));
        assert_eq!(content_hash(["ab"]), content_hash(["ab"]));
    }
}
