//! Canonical text of steps, in runbook syntax: shown before a step in
//! `--step` mode, and stored per step when a run starts so that a resume
//! can tell exactly which steps changed since. The kind lines are the
//! language's own ([`Runbook::describe`]: sizes and durations in the
//! runbook's units); a step's text adds the hosts and zones it touches, so
//! moving a host to a new address changes the steps that use it.

use cutover_lang::format::quote;
use cutover_lang::units::format_duration;
use cutover_lang::{ActionKind, HostId, Runbook, Step, Transport};
use std::fmt::Write as _;
use std::time::Duration;

/// `1h30m`, `45s`, `2d`, `0s`, `250ms`: the language's canonical text of
/// a duration ([`cutover_lang::units::format_duration`]), milliseconds
/// when under a second.
pub fn duration(d: Duration) -> String {
    if d.as_secs() == 0 && !d.is_zero() {
        return format!("{}ms", d.as_millis());
    }
    cutover_lang::units::format_duration(d)
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
        | ActionKind::DnsAdd { .. }
        | ActionKind::DnsRemove { .. }
        | ActionKind::Manual { .. }
        | ActionKind::Wait(_)
        | ActionKind::DbUnfollow { .. } => Vec::new(),
        ActionKind::DbReplicate { from, to, .. } => vec![from.host, to.host],
    }
}

/// The step as canonical runbook text (header, kind line, `undo`,
/// `verify`, `timeout`, `retry`, `expect`), followed by `# uses` lines for
/// the hosts and zones it touches.
pub fn step(runbook: &Runbook, step: &Step) -> String {
    let mut out = format!("step {}", step.name);
    if let Some(at) = step.at {
        let _ = write!(out, " at {at}");
    }
    if !step.after.is_empty() {
        let names: Vec<&str> = step
            .after
            .iter()
            .map(|s| runbook.step(*s).name.as_str())
            .collect();
        let _ = write!(out, " after {}", names.join(", "));
    }
    let _ = write!(out, "\n  {}", runbook.describe(&step.action));
    if let Some(undo) = &step.undo {
        let _ = write!(out, "\n  undo {}", runbook.describe(undo));
    }
    for verify in &step.verify {
        let _ = write!(out, "\n  verify {}", runbook.describe(verify));
    }
    if let Some(timeout) = step.timeout {
        let _ = write!(out, "\n  timeout {}", format_duration(timeout));
    }
    if step.retry > 0 {
        let _ = write!(out, "\n  retry {}", step.retry);
    }
    if let Some(expect) = step.expect {
        let _ = write!(out, "\n  expect {}", format_duration(expect));
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
            Transport::Agent { command } => format!("agent {}", quote(command)),
        };
        let _ = write!(out, "\n  # uses host {} addr {} via {via}", h.name, h.addr);
    }
    let mut zones: Vec<usize> = actions
        .filter_map(|a| match &a.kind {
            ActionKind::DnsTtl { zone, .. }
            | ActionKind::DnsSwitch { zone, .. }
            | ActionKind::DnsAdd { zone, .. }
            | ActionKind::DnsRemove { zone, .. } => Some(zone.0),
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
    }

    #[test]
    fn content_hash_separates_files() {
        assert_ne!(content_hash(["ab", "c"]), content_hash(["a", "bc"]));
        assert_eq!(content_hash(["ab"]), content_hash(["ab"]));
    }
}
