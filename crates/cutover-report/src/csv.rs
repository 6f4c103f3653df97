//! The CSV exports, for spreadsheets: one row per step (the planned vs
//! actual timeline with deviations, confirmations and the last evidence),
//! or one row per event of the log.

use crate::model::{ConfirmationReport, Deviation, Report};
use crate::moment::Moment;
use crate::sessions::{Session, SessionEnd};
use std::collections::HashMap;

fn utc(i: Option<Moment>) -> String {
    i.map_or_else(String::new, |i| {
        i.utc.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    })
}

fn offset(i: Option<Moment>) -> String {
    i.map_or_else(String::new, |i| i.offset_s.to_string())
}

/// Milliseconds as seconds (`120`, `3.19`), as in the JSON.
fn seconds(ms: Option<i64>) -> String {
    ms.map_or_else(String::new, |ms| {
        cutover_plan::units_fmt::json_secs(ms).to_string()
    })
}

fn finish(writer: csv::Writer<Vec<u8>>) -> String {
    // Writing to memory cannot fail, and every field is valid UTF-8.
    writer
        .into_inner()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// One row per step.
pub fn steps(report: &Report) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "step",
        "kind",
        "status",
        "attempts",
        "planned_start_utc",
        "planned_start_offset_s",
        "planned_end_utc",
        "planned_end_offset_s",
        "planned_duration_s",
        "planned_source",
        "actual_start_utc",
        "actual_start_offset_s",
        "actual_end_utc",
        "actual_end_offset_s",
        "actual_duration_s",
        "start_delta_s",
        "duration_delta_s",
        "deviations",
        "interrupted_by",
        "confirmed_by",
        "confirmed_at_utc",
        "confirmation_note",
        "evidence_count",
        "last_evidence",
        "stopped_s",
    ]);
    // Each step's deviations, interrupting sessions and latest confirmation,
    // gathered in one pass over each list (in list order), not per step.
    let mut deviations_of: HashMap<&str, Vec<&Deviation>> = HashMap::new();
    for d in &report.deviations {
        if let Some(step) = d.step.as_deref() {
            deviations_of.entry(step).or_default().push(d);
        }
    }
    let mut interrupted_by: HashMap<&str, Vec<&Session>> = HashMap::new();
    for session in &report.sessions {
        for caught in &session.caught_mid_flight {
            let sessions = interrupted_by.entry(caught.step.as_str()).or_default();
            if !sessions.last().is_some_and(|s| std::ptr::eq(*s, session)) {
                sessions.push(session);
            }
        }
    }
    let mut confirmation_of: HashMap<&str, &ConfirmationReport> = HashMap::new();
    for c in &report.confirmations {
        confirmation_of.insert(c.step.as_str(), c);
    }
    for s in &report.steps {
        let deviations: Vec<String> = deviations_of
            .get(s.name.as_str())
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|d| format!("{}: {}", d.kind.label(), d.detail))
            .collect();
        let interrupted: Vec<String> = interrupted_by
            .get(s.name.as_str())
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|session| {
                let what = if session.end == SessionEnd::Stopped {
                    "stop"
                } else {
                    "crash"
                };
                format!("{what} of session {}", session.number)
            })
            .collect();
        let confirmation = confirmation_of.get(s.name.as_str()).copied();
        let _ = w.write_record([
            s.name.clone(),
            s.kind.clone(),
            s.status.as_str().to_owned(),
            s.attempts.to_string(),
            utc(s.planned.span.start),
            offset(s.planned.span.start),
            utc(s.planned.span.end),
            offset(s.planned.span.end),
            seconds(s.planned.span.duration_ms),
            s.planned.source.to_owned(),
            utc(s.actual.start),
            offset(s.actual.start),
            utc(s.actual.end),
            offset(s.actual.end),
            seconds(s.actual.duration_ms),
            seconds(s.start_delta_ms),
            seconds(s.duration_delta_ms),
            deviations.join("; "),
            interrupted.join("; "),
            confirmation.map_or_else(String::new, |c| c.user.clone()),
            utc(confirmation.map(|c| c.at)),
            confirmation
                .and_then(|c| c.note.clone())
                .unwrap_or_default(),
            s.evidence.len().to_string(),
            s.evidence
                .last()
                .map_or_else(String::new, |e| e.summary.clone()),
            s.stopped_s.to_string(),
        ]);
    }
    finish(w)
}

/// One row per event of the log.
pub fn events(report: &Report) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "id", "at_utc", "offset_s", "step", "kind", "message", "data",
    ]);
    for e in &report.events {
        let _ = w.write_record([
            e.id.to_string(),
            utc(Some(e.at)),
            e.at.offset_s.to_string(),
            e.step.clone().unwrap_or_default(),
            e.kind.clone(),
            e.message.clone(),
            e.data
                .as_ref()
                .map_or_else(String::new, serde_json::Value::to_string),
        ]);
    }
    finish(w)
}
