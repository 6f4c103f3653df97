//! What a run would change in DNS, from probed facts: each record a DNS step
//! touches, compared with what every verify server serves now. A change
//! (`~`), a no-op because the desired state is already served (`=`), or
//! drift (`!`): the live value is not the runbook's expected old value, so
//! the compare-and-swap would be refused.

use std::fmt;

use cutover_lang::{ActionKind, RecordType, Runbook, StepId};

use crate::facts::{ProbeFacts, RecordFact};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The run would make this change.
    Change,
    /// Already as desired everywhere: the step's check will find it done.
    NoOp,
    /// The live state is not what the runbook expects.
    Drift,
    /// No server answered: nothing could be compared.
    Unknown,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Change => "change",
            ChangeKind::NoOp => "no-op",
            ChangeKind::Drift => "drift",
            ChangeKind::Unknown => "unknown",
        }
    }
}

/// One line of the probe's diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsChange {
    pub step: StepId,
    pub kind: ChangeKind,
    /// e.g. `~ wiki.maemo.org A 188.117.59.202 -> 80.248.164.42`
    pub text: String,
}

impl fmt::Display for DnsChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.kind {
            ChangeKind::Change => '~',
            ChangeKind::NoOp => '=',
            ChangeKind::Drift => '!',
            ChangeKind::Unknown => '?',
        };
        write!(f, "{mark} {}", self.text)
    }
}

/// The DNS changes of `runbook`'s forward steps against `facts`, in step order.
pub fn dns_changes(runbook: &Runbook, facts: &ProbeFacts) -> Vec<DnsChange> {
    let mut changes = Vec::new();
    for (index, step) in runbook.steps.iter().enumerate() {
        let id = StepId(index);
        match &step.action.kind {
            ActionKind::DnsTtl {
                zone,
                names,
                rtype,
                ttl,
                ..
            } => {
                let zone = &runbook.zone(*zone).name;
                for name in names {
                    let live = served(facts, zone, name, *rtype);
                    let fqdn = fqdn(name, zone);
                    let (kind, text) = if live.is_empty() {
                        (
                            ChangeKind::Unknown,
                            format!("{fqdn} {}: no server answered", rtype.as_str()),
                        )
                    } else if live.iter().all(|r| r.values.is_empty()) {
                        (
                            ChangeKind::Drift,
                            format!(
                                "{fqdn} {}: no such record at any verify server",
                                rtype.as_str()
                            ),
                        )
                    } else if live.iter().all(|r| r.ttl == *ttl) {
                        (
                            ChangeKind::NoOp,
                            format!("{fqdn} {} TTL already {}s", rtype.as_str(), ttl.as_secs()),
                        )
                    } else {
                        let before = live
                            .iter()
                            .map(|r| r.ttl.as_secs())
                            .max()
                            .unwrap_or_default();
                        (
                            ChangeKind::Change,
                            format!(
                                "{fqdn} {} TTL {before}s -> {}s",
                                rtype.as_str(),
                                ttl.as_secs()
                            ),
                        )
                    };
                    changes.push(DnsChange {
                        step: id,
                        kind,
                        text,
                    });
                }
            }
            ActionKind::DnsSwitch {
                zone,
                name,
                rtype,
                old,
                new,
            } => {
                let zone = &runbook.zone(*zone).name;
                let live = served(facts, zone, name, *rtype);
                let fqdn = fqdn(name, zone);
                // Every server serves exactly this set (the whole RRset).
                let holds = |set: &cutover_lang::RecordValues| {
                    live.iter().all(|r| {
                        r.values.len() == set.0.len()
                            && set
                                .iter()
                                .all(|v| r.values.iter().any(|s| s.eq_ignore_ascii_case(v)))
                    })
                };
                let (kind, text) = if live.is_empty() {
                    (
                        ChangeKind::Unknown,
                        format!("{fqdn} {}: no server answered", rtype.as_str()),
                    )
                } else if holds(new) {
                    (
                        ChangeKind::NoOp,
                        format!("{fqdn} {} already {new}", rtype.as_str()),
                    )
                } else if holds(old) {
                    (
                        ChangeKind::Change,
                        format!("{fqdn} {} {old} -> {new}", rtype.as_str()),
                    )
                } else {
                    let seen: Vec<String> = live
                        .iter()
                        .map(|r| {
                            let values = if r.values.is_empty() {
                                "nothing".to_string()
                            } else {
                                r.values.join(" ")
                            };
                            format!("{} serves {values}", r.server)
                        })
                        .collect();
                    (
                        ChangeKind::Drift,
                        format!(
                            "{fqdn} {}: expected {old}, but {}",
                            rtype.as_str(),
                            seen.join(", ")
                        ),
                    )
                };
                changes.push(DnsChange {
                    step: id,
                    kind,
                    text,
                });
            }
            ActionKind::DnsAdd {
                zone,
                name,
                rtype,
                values,
                ..
            }
            | ActionKind::DnsRemove {
                zone,
                name,
                rtype,
                values,
            } => {
                let adding = matches!(step.action.kind, ActionKind::DnsAdd { .. });
                let zone = &runbook.zone(*zone).name;
                let live = served(facts, zone, name, *rtype);
                let fqdn = fqdn(name, zone);
                // Done when every server holds every value (add) or none (remove).
                let done = live.iter().all(|r| {
                    values
                        .iter()
                        .all(|v| r.values.iter().any(|s| s.eq_ignore_ascii_case(v)) == adding)
                });
                let (sign, verb) = if adding {
                    ("+", "already holds")
                } else {
                    ("-", "already lacks")
                };
                let (kind, text) = if live.is_empty() {
                    (
                        ChangeKind::Unknown,
                        format!("{fqdn} {}: no server answered", rtype.as_str()),
                    )
                } else if done {
                    (
                        ChangeKind::NoOp,
                        format!("{fqdn} {} {verb} {values}", rtype.as_str()),
                    )
                } else {
                    (
                        ChangeKind::Change,
                        format!("{fqdn} {} {sign} {values}", rtype.as_str()),
                    )
                };
                changes.push(DnsChange {
                    step: id,
                    kind,
                    text,
                });
            }
            _ => {}
        }
    }
    changes
}

fn served<'a>(
    facts: &'a ProbeFacts,
    zone: &str,
    name: &str,
    rtype: RecordType,
) -> Vec<&'a RecordFact> {
    facts
        .records
        .iter()
        .filter(|r| r.zone == zone && r.name == name && r.rtype == rtype)
        .collect()
}

fn fqdn(name: &str, zone: &str) -> String {
    if name == "@" {
        zone.to_string()
    } else {
        format!("{name}.{zone}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const RUNBOOK: &str = "runbook probe
zone example.org
  primary 127.0.0.1:53
  verify 127.0.0.1:53, 127.0.0.2:53

step lower
  dns.ttl example.org www wiki A 300 was 1d

step switch-www after lower
  dns.switch example.org www A 192.0.2.1 -> 192.0.2.2

step switch-wiki after lower
  dns.switch example.org wiki A 192.0.2.5 -> 192.0.2.6
";

    fn fact(name: &str, server: &str, ttl: u64, value: &str) -> RecordFact {
        RecordFact {
            zone: "example.org".into(),
            name: name.into(),
            rtype: RecordType::A,
            server: server.parse().unwrap(),
            ttl: Duration::from_secs(ttl),
            values: vec![value.into()],
        }
    }

    #[test]
    fn changes_no_ops_and_drift_are_told_apart() {
        let loaded = cutover_lang::parse_source("probe.runbook", RUNBOOK.to_string());
        let runbook = loaded.runbook.expect("the runbook parses");
        let facts = ProbeFacts {
            records: vec![
                fact("www", "127.0.0.1:53", 86400, "192.0.2.1"),
                fact("www", "127.0.0.2:53", 86400, "192.0.2.1"),
                fact("wiki", "127.0.0.1:53", 300, "192.0.2.9"),
                fact("wiki", "127.0.0.2:53", 300, "192.0.2.5"),
            ],
            ..ProbeFacts::default()
        };
        let lines: Vec<String> = dns_changes(&runbook, &facts)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "~ www.example.org A TTL 86400s -> 300s",
                "= wiki.example.org A TTL already 300s",
                "~ www.example.org A 192.0.2.1 -> 192.0.2.2",
                "! wiki.example.org A: expected 192.0.2.5, but 127.0.0.1:53 serves 192.0.2.9, 127.0.0.2:53 serves 192.0.2.5",
            ]
        );
    }
}
