//! The reviewed plan (`cutover plan --out PLAN`): what the team signs off
//! on, bound to the run that follows (`cutover run --plan PLAN`), as a
//! saved Terraform plan is bound to its apply. The document holds the
//! runbook's hash and text, the facts probed from the live world with the
//! time they were read, and the plan itself (schedule and findings, the
//! `cutover-plan/1` JSON). [`ReviewedPlan::stale`] tells what changed since:
//! a run refuses a plan whose runbook or probed facts moved on.
//!
//! The schema is `docs/plan-json.md`'s "Reviewed plan"; fields are only
//! ever added under the same `schema`.

use crate::facts::ProbeFacts;
use cutover_lang::Runbook;
use serde::{Deserialize, Serialize};

/// The schema identifier of a reviewed plan.
pub const SCHEMA: &str = "cutover-reviewed-plan/1";

/// A reviewed plan as written by `plan --out` and read by `run --plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewedPlan {
    pub schema: String,
    /// When the plan was made (RFC 3339, UTC).
    pub made_at: String,
    pub runbook: RunbookText,
    /// What `--probe` read; `None` when the plan was made without it.
    pub probe: Option<ProbeRecord>,
    /// The plan: the `cutover-plan/1` JSON document.
    pub plan: serde_json::Value,
}

/// The runbook the plan was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookText {
    pub name: String,
    /// blake3 of its source text(s), as a run records it.
    pub hash: String,
    /// Each source file (the runbook, then what it includes), to show what
    /// changed since.
    pub files: Vec<SourceText>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceText {
    pub path: String,
    pub text: String,
}

/// The live facts a plan was made with, and when they were read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// When the probe ran (RFC 3339, UTC).
    pub at: String,
    pub facts: FactsText,
    /// What could not be read.
    pub problems: Vec<String>,
}

/// [`ProbeFacts`] in plain text, named as the runbook names things. These
/// are the facts a run compares: a record's values and TTL at each server,
/// a zone's NS set, a copy source's size. SOA serials are kept for the
/// record but not compared (any edit elsewhere in a zone moves them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsText {
    pub records: Vec<RecordText>,
    pub zone_ns: Vec<ZoneNsText>,
    pub soa_serials: Vec<SerialText>,
    pub source_sizes: Vec<SizeText>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordText {
    /// `www.probe.test A`
    pub record: String,
    pub server: String,
    pub ttl_s: u64,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneNsText {
    pub zone: String,
    /// `ns1.example.net 192.0.2.53`, sorted.
    pub servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialText {
    pub zone: String,
    pub server: String,
    pub serial: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeText {
    /// `host:/path`
    pub source: String,
    pub bytes: u64,
}

impl FactsText {
    pub fn new(runbook: &Runbook, facts: &ProbeFacts) -> FactsText {
        FactsText {
            records: facts
                .records
                .iter()
                .map(|r| RecordText {
                    record: format!("{} {}", fqdn_of(&r.zone, &r.name), r.rtype.as_str()),
                    server: r.server.to_string(),
                    ttl_s: r.ttl.as_secs(),
                    values: r.values.clone(),
                })
                .collect(),
            zone_ns: facts
                .zone_ns
                .iter()
                .map(|z| {
                    let mut servers: Vec<String> = z
                        .servers
                        .iter()
                        .map(|s| {
                            let addrs: Vec<String> =
                                s.addrs.iter().map(ToString::to_string).collect();
                            format!("{} {}", s.name, addrs.join(" ")).trim().to_owned()
                        })
                        .collect();
                    servers.sort();
                    ZoneNsText {
                        zone: z.zone.clone(),
                        servers,
                    }
                })
                .collect(),
            soa_serials: facts
                .soa_serials
                .iter()
                .map(|s| SerialText {
                    zone: s.zone.clone(),
                    server: s.server.to_string(),
                    serial: s.serial,
                })
                .collect(),
            source_sizes: facts
                .source_sizes
                .iter()
                .map(|s| SizeText {
                    source: format!("{}:{}", runbook.host(s.endpoint.host).name, s.endpoint.path),
                    bytes: s.size.0,
                })
                .collect(),
        }
    }

    /// What differs from `earlier` (the facts a plan was made with), one
    /// line per fact: `~` changed, `+` new, `-` gone.
    pub fn changes_since(&self, earlier: &FactsText) -> Vec<String> {
        let mut out = Vec::new();
        let record_key = |r: &RecordText| (r.record.clone(), r.server.clone());
        let show = |r: &RecordText| {
            if r.values.is_empty() {
                "no such record".to_owned()
            } else {
                format!("{} TTL {}s", r.values.join(" "), r.ttl_s)
            }
        };
        diff(
            &earlier.records,
            &self.records,
            record_key,
            |(record, server)| format!("{record} at {server}"),
            show,
            &mut out,
        );
        diff(
            &earlier.zone_ns,
            &self.zone_ns,
            |z| z.zone.clone(),
            |zone| format!("NS set of {zone}"),
            |z| z.servers.join(", "),
            &mut out,
        );
        diff(
            &earlier.source_sizes,
            &self.source_sizes,
            |s| s.source.clone(),
            |source| format!("size of {source}"),
            |s| format!("{} bytes", s.bytes),
            &mut out,
        );
        out
    }
}

/// Lines of what changed between two lists of facts keyed by `key`.
fn diff<T, K: PartialEq + Clone>(
    before: &[T],
    after: &[T],
    key: impl Fn(&T) -> K,
    name: impl Fn(K) -> String,
    show: impl Fn(&T) -> String,
    out: &mut Vec<String>,
) {
    for old in before {
        match after.iter().find(|new| key(new) == key(old)) {
            Some(new) if show(new) == show(old) => {}
            Some(new) => out.push(format!(
                "~ {}: {} -> {}",
                name(key(old)),
                show(old),
                show(new)
            )),
            None => out.push(format!(
                "- {}: {} (no longer read)",
                name(key(old)),
                show(old)
            )),
        }
    }
    for new in after {
        if !before.iter().any(|old| key(old) == key(new)) {
            out.push(format!(
                "+ {}: {} (not read before)",
                name(key(new)),
                show(new)
            ));
        }
    }
}

/// `www.probe.test` from zone `probe.test` and name `www`.
fn fqdn_of(zone: &str, name: &str) -> String {
    match name {
        "@" => zone.to_owned(),
        n if n.ends_with('.') => n.trim_end_matches('.').to_owned(),
        n => format!("{n}.{zone}"),
    }
}

/// Why a reviewed plan no longer holds for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// The plan is for another runbook (by its `runbook NAME`).
    OtherRunbook { planned: String, given: String },
    /// The runbook's text changed: the files as planned and as now.
    Runbook {
        planned: Vec<SourceText>,
        now: Vec<SourceText>,
    },
    /// A probed fact changed: one line per fact.
    Facts(Vec<String>),
}

impl ReviewedPlan {
    /// The document for `plan`'s JSON, made now from the runbook's sources
    /// and, when probed, the facts read at `probed_at`.
    pub fn new(
        made_at: chrono::DateTime<chrono::Utc>,
        runbook: RunbookText,
        probe: Option<ProbeRecord>,
        plan_json: &str,
    ) -> Result<ReviewedPlan, serde_json::Error> {
        Ok(ReviewedPlan {
            schema: SCHEMA.to_owned(),
            made_at: made_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            runbook,
            probe,
            plan: serde_json::from_str(plan_json)?,
        })
    }

    /// The document's text: pretty JSON with a final newline, the same
    /// bytes for the same plan.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a document; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<ReviewedPlan, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(format!(
                    "schema `{other}`, not a reviewed plan (`{SCHEMA}`); write one with `cutover plan FILE --out PLAN`"
                ));
            }
            None => {
                return Err(format!(
                    "no schema: not a reviewed plan (`{SCHEMA}`); write one with `cutover plan FILE --out PLAN`"
                ));
            }
        }
        serde_json::from_value(value).map_err(|e| format!("not a valid reviewed plan: {e}"))
    }

    /// What changed since the plan was made, given the runbook as it is
    /// now and, when the plan was probed, the facts read again now. Empty:
    /// the plan holds.
    pub fn stale(&self, now: &RunbookText, facts_now: Option<&FactsText>) -> Vec<Stale> {
        let mut out = Vec::new();
        if self.runbook.name != now.name {
            out.push(Stale::OtherRunbook {
                planned: self.runbook.name.clone(),
                given: now.name.clone(),
            });
            return out;
        }
        if self.runbook.hash != now.hash {
            out.push(Stale::Runbook {
                planned: self.runbook.files.clone(),
                now: now.files.clone(),
            });
        }
        if let (Some(probe), Some(facts)) = (&self.probe, facts_now) {
            let changes = facts.changes_since(&probe.facts);
            if !changes.is_empty() {
                out.push(Stale::Facts(changes));
            }
        }
        out
    }

    /// Planned start and end (milliseconds from T0) and the duration's
    /// provenance of each step, from the plan's JSON.
    pub fn steps(&self) -> Vec<(String, i64, i64, String)> {
        self.plan["steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .filter_map(|s| {
                        Some((
                            s["name"].as_str()?.to_owned(),
                            ms(&s["start"]["offset_s"])?,
                            ms(&s["end"]["offset_s"])?,
                            s["duration"]["source"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// JSON seconds (`120`, `3.19`) as milliseconds.
fn ms(secs: &serde_json::Value) -> Option<i64> {
    secs.as_i64()
        .map(|s| s.saturating_mul(1000))
        .or_else(|| secs.as_f64().map(|s| (s * 1000.0).round() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(values: &[&str], ttl: u64) -> RecordText {
        RecordText {
            record: "www.probe.test A".into(),
            server: "127.0.0.1:53".into(),
            ttl_s: ttl,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn a_changed_value_or_ttl_is_a_change_and_an_equal_one_is_not() {
        let before = FactsText {
            records: vec![record(&["192.0.2.1"], 3600)],
            ..FactsText::default()
        };
        assert!(before.changes_since(&before).is_empty());
        let value = FactsText {
            records: vec![record(&["192.0.2.7"], 3600)],
            ..FactsText::default()
        };
        assert_eq!(
            value.changes_since(&before),
            ["~ www.probe.test A at 127.0.0.1:53: 192.0.2.1 TTL 3600s -> 192.0.2.7 TTL 3600s"]
        );
        let ttl = FactsText {
            records: vec![record(&["192.0.2.1"], 300)],
            ..FactsText::default()
        };
        assert_eq!(ttl.changes_since(&before).len(), 1);
        let serial_only = FactsText {
            records: before.records.clone(),
            soa_serials: vec![SerialText {
                zone: "probe.test".into(),
                server: "127.0.0.1:53".into(),
                serial: 9,
            }],
            ..FactsText::default()
        };
        assert!(serial_only.changes_since(&before).is_empty());
        assert_eq!(
            FactsText::default().changes_since(&before),
            ["- www.probe.test A at 127.0.0.1:53: 192.0.2.1 TTL 3600s (no longer read)"]
        );
    }

    #[test]
    fn a_document_reads_back_and_other_json_is_refused() {
        let doc = ReviewedPlan::new(
            chrono::DateTime::from_timestamp(0, 0).unwrap(),
            RunbookText {
                name: "r".into(),
                hash: "h".into(),
                files: vec![],
            },
            None,
            r#"{"schema":"cutover-plan/1","steps":[{"name":"a","start":{"offset_s":-60},"end":{"offset_s":3.19},"duration":{"source":"declared"}}]}"#,
        )
        .unwrap();
        let back = ReviewedPlan::parse(&doc.to_text()).unwrap();
        assert_eq!(back, doc);
        assert_eq!(
            back.steps(),
            [("a".into(), -60_000, 3_190, "declared".into())]
        );
        assert!(
            ReviewedPlan::parse(r#"{"schema":"cutover-plan/1"}"#)
                .unwrap_err()
                .contains("not a reviewed plan")
        );
        assert!(
            ReviewedPlan::parse("nope")
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
