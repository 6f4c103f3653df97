//! The plan as JSON. The schema is stable and documented in
//! `docs/plan-json.md`; fields are only ever added, under the same `schema`.

use crate::units_fmt;
use crate::{Figure, Plan};
use cutover_lang::SourceMap;
use serde::Serialize;

/// The schema identifier written in every document.
pub const SCHEMA: &str = "cutover-plan/1";

/// A time or duration in milliseconds, written as seconds: whole when
/// whole (`120`), else with its milliseconds (`3.19`).
struct Secs(i64);

impl Serialize for Secs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        units_fmt::json_secs(self.0).serialize(s)
    }
}

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    runbook: &'a str,
    title: Option<&'a str>,
    t0: Option<String>,
    window: Option<Window>,
    end: Time,
    critical_path: Vec<&'a str>,
    steps: Vec<Step<'a>>,
    dns_switches: Vec<Switch<'a>>,
    diagnostics: Vec<Finding<'a>>,
    notes: &'a [String],
    probed: bool,
    /// Under `--probe`: each record's change, no-op, drift or unknown.
    live: Vec<Live<'a>>,
}

#[derive(Serialize)]
struct Live<'a> {
    step: &'a str,
    /// `change`, `no-op`, `drift`, `unknown`
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct Window {
    start: String,
    end: String,
    length_s: Secs,
    fits: bool,
    left_s: Secs,
}

#[derive(Serialize)]
struct Time {
    offset_s: Secs,
    utc: Option<String>,
    at_least: bool,
}

#[derive(Serialize)]
struct Step<'a> {
    name: &'a str,
    kind: &'a str,
    after: Vec<&'a str>,
    at_s: Option<Secs>,
    start: Time,
    ttl_wait: Option<TtlWait<'a>>,
    act_start_s: Secs,
    end: Time,
    duration: Duration<'a>,
    slack_s: Secs,
    critical: bool,
    full_copy: Option<Duration<'a>>,
    precopy: Option<&'a str>,
}

#[derive(Serialize)]
struct TtlWait<'a> {
    start_s: Secs,
    end_s: Secs,
    basis: &'a str,
}

#[derive(Serialize)]
struct Duration<'a> {
    seconds: Option<Secs>,
    source: &'static str,
    basis: &'a str,
}

#[derive(Serialize)]
struct Switch<'a> {
    step: &'a str,
    record: &'a str,
    lowered_by: Vec<&'a str>,
    earliest_safe: Option<Time>,
    source: &'static str,
    basis: &'a str,
    act_start_s: Secs,
}

#[derive(Serialize)]
struct Finding<'a> {
    severity: &'static str,
    code: &'a str,
    message: &'a str,
    file: Option<String>,
    line: Option<usize>,
    column: Option<usize>,
    help: Option<&'a str>,
    /// The finding's facts as fields (see each rule's page); left out when
    /// it has none.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    data: &'a serde_json::Map<String, serde_json::Value>,
}

fn duration(f: &Figure) -> Duration<'_> {
    Duration {
        seconds: f.ms.map(Secs),
        source: f.provenance.as_str(),
        basis: &f.basis,
    }
}

/// The plan as a pretty-printed JSON document.
pub fn json(plan: &Plan, sources: &SourceMap) -> String {
    let time = |offset: i64, at_least: bool| Time {
        offset_s: Secs(offset),
        utc: plan
            .utc(offset)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        at_least,
    };
    let name = |id: cutover_lang::StepId| plan.step(id).name.as_str();
    let lines = super::LineIndex::new(sources);
    let doc = Document {
        schema: SCHEMA,
        runbook: &plan.runbook,
        title: plan.title.as_deref(),
        t0: plan
            .t0
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        window: plan.window.map(|w| Window {
            start: w.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            end: units_fmt::at_ms(Some(w.start), w.length)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            length_s: Secs(w.length),
            fits: w.left >= 0,
            left_s: Secs(w.left),
        }),
        end: time(plan.end, plan.end_at_least),
        critical_path: plan.critical_path.iter().map(|id| name(*id)).collect(),
        steps: plan
            .chronological()
            .into_iter()
            .map(|s| Step {
                name: &s.name,
                kind: s.kind,
                after: s.after.iter().map(|p| name(*p)).collect(),
                at_s: s.at.map(Secs),
                start: time(s.start, s.start_at_least),
                ttl_wait: s.ttl_wait.as_ref().map(|w| TtlWait {
                    start_s: Secs(w.start),
                    end_s: Secs(w.end),
                    basis: &w.basis,
                }),
                act_start_s: Secs(s.act_start),
                end: time(s.end, s.at_least),
                duration: duration(&s.duration),
                slack_s: Secs(s.slack),
                critical: s.critical,
                full_copy: s.copy.as_ref().map(|c| duration(&c.full)),
                precopy: s.copy.as_ref().and_then(|c| c.precopy).map(name),
            })
            .collect(),
        dns_switches: plan
            .switches
            .iter()
            .map(|s| Switch {
                step: name(s.step),
                record: &s.record,
                lowered_by: s.lowered_by.iter().map(|id| name(*id)).collect(),
                earliest_safe: s.earliest_safe.map(|t| time(t, false)),
                source: s.provenance.as_str(),
                basis: &s.basis,
                act_start_s: Secs(plan.step(s.step).act_start),
            })
            .collect(),
        diagnostics: plan
            .diagnostics
            .iter()
            .map(|d| {
                let place = d.primary_span().and_then(|s| lines.locate(s));
                Finding {
                    severity: match d.severity {
                        cutover_lang::Severity::Error => "error",
                        cutover_lang::Severity::Warning => "warning",
                        cutover_lang::Severity::Info => "info",
                    },
                    code: d.code,
                    message: &d.message,
                    file: place.as_ref().map(|p| p.0.clone()),
                    line: place.as_ref().map(|p| p.1),
                    column: place.as_ref().map(|p| p.2),
                    help: d.help.as_deref(),
                    data: &d.data,
                }
            })
            .collect(),
        notes: &plan.notes,
        probed: plan.probed,
        live: plan
            .live
            .iter()
            .map(|c| Live {
                step: name(c.step),
                kind: c.kind.as_str(),
                text: &c.text,
            })
            .collect(),
    };
    let mut text =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
