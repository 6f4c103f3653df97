//! How times, offsets and durations read in the human formats: UTC with
//! seconds, offsets from T0 the way a runbook writes them (`T-48h`,
//! `T+2h30m`), durations in at most two units.

use crate::model::{Report, StepReport};
use crate::moment::Moment;
pub use crate::moment::utc;
use cutover_plan::units_fmt;

pub fn offset(i: Moment) -> String {
    units_fmt::offset(i.offset_s)
}

/// `T+5m 2013-03-14 17:05:00`.
pub fn instant(i: Option<Moment>) -> String {
    i.map_or_else(
        || "–".to_owned(),
        |i| format!("{} {}", offset(i), utc(i.utc)),
    )
}

pub fn duration(ms: Option<i64>) -> String {
    ms.map_or_else(|| "–".to_owned(), units_fmt::duration_ms)
}

/// What a step took, without the time no coordinator ran (`4m3s`), and
/// that time when there was some (`4m3s (+4m28s stopped)`).
pub fn took(step: &StepReport) -> String {
    let took = duration(step.actual.duration_ms);
    if step.stopped_s > 0 {
        format!("{took} (+{} stopped)", units_fmt::duration(step.stopped_s))
    } else {
        took
    }
}

/// `+2m`, `-30s`, `0s`.
pub fn delta(ms: Option<i64>) -> String {
    match ms {
        None => "–".to_owned(),
        Some(s) if s > 0 => format!("+{}", units_fmt::duration_ms(s)),
        Some(s) if s < 0 => format!("-{}", units_fmt::duration_ms(-s)),
        Some(_) => "0s".to_owned(),
    }
}

/// The header lines shared by Markdown and HTML: (label, value).
pub fn header(report: &Report) -> Vec<(&'static str, String)> {
    let run = &report.run;
    let mut rows = vec![
        ("Runbook", format!("{} ({})", run.runbook, run.runbook_path)),
        (
            "Runbook hash",
            format!("{} (blake3, at the start of the run)", run.content_hash),
        ),
    ];
    rows.push((
        "Window",
        match &run.window {
            Some(w) => format!(
                "{} to {} UTC ({})",
                utc(w.start),
                utc(w.end),
                units_fmt::duration(w.length_s)
            ),
            None => "none declared".to_owned(),
        },
    ));
    rows.push(("T0", format!("{} UTC ({})", utc(run.t0), run.t0_basis)));
    rows.push(("Operator", run.operator.clone()));
    rows.push(("Started", format!("{} UTC", utc(run.started_at))));
    rows.push((
        "Finished",
        run.finished_at
            .map_or_else(|| "–".to_owned(), |t| format!("{} UTC", utc(t))),
    ));
    rows.push(("Outcome", run.outcome.clone()));
    rows
}
