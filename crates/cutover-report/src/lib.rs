//! Post-mortem exports of a run (Markdown, JSON, CSV, HTML with a Gantt
//! chart) and what the read-only live dashboard behind `cutover serve`
//! shows ([`live`]; its web server is the `cutover-dashboard` crate).
//!
//! Both start from a [`Snapshot`] of a state file, read in one transaction
//! through the store's read-only open ([`read_snapshot`], on
//! [`cutover_store::Store::open_read_only`]): the report never changes a
//! run, and can read one while the engine writes it. [`Report::build`] turns the
//! snapshot (and the runbook, when it can be read, for the planned
//! timeline) into the [`Report`] every format renders: the header, planned
//! vs actual per step, deviations, confirmations, evidence, the sessions of
//! the run (crashes and resumes) and the event log (without the throttled
//! `progress` events, which would bury the rest).
//!
//! ```no_run
//! let snapshot = cutover_report::read_snapshot(std::path::Path::new(".cutover/move.db"))?;
//! let report = cutover_report::Report::build(&snapshot, None);
//! print!("{}", cutover_report::render(&report, cutover_report::Format::Markdown));
//! # Ok::<(), cutover_report::ReadError>(())
//! ```
//!
//! Secrets never reach a report: the state file holds none (keys are
//! referenced by the runbook and read only where a signature is made), and
//! the report shows nothing of a runbook's keys.

mod csv;
pub mod facts;
mod gantt;
mod html;
pub mod live;
mod markdown;
mod model;
mod moment;
mod read;
mod sessions;
mod text;

pub use html::STYLE;
pub use model::{
    ConfirmationReport, Counts, Deviation, DeviationKind, EventReport, EvidenceReport,
    LATE_TOLERANCE_S, OVERRUN_TOLERANCE_S, Planned, PlannedRunbook, Progress, Report, RunSummary,
    SCHEMA, Span, StepReport, WindowReport,
};
pub use moment::Moment;
pub use read::{LiveSnapshot, ReadError, Snapshot, read_snapshot};
pub use sessions::{CaughtStep, Session, SessionEnd};

use cutover_lang::Runbook;
use std::path::{Path, PathBuf};

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    /// The schema `cutover-report/1` of `docs/export-format.md`.
    Json,
    /// One row per step.
    Csv,
    /// One row per event of the log.
    CsvEvents,
    /// A self-contained page with the Gantt chart.
    Html,
}

/// Renders a report.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Markdown => markdown::markdown(report),
        Format::Json => {
            let mut text = serde_json::to_string_pretty(report).unwrap_or_default();
            text.push('\n');
            text
        }
        Format::Csv => csv::steps(report),
        Format::CsvEvents => csv::events(report),
        Format::Html => html::html(report),
    }
}

/// The Gantt chart of a report as SVG (`now` marks the present, live).
pub fn gantt_svg(report: &Report, now: Option<chrono::DateTime<chrono::Utc>>) -> String {
    gantt::svg(report, now)
}

/// Where the runbook of a run may be: the path it recorded (as given, so
/// relative to where `cutover run` was started), or the same file name
/// beside the state file or one folder up (the default `.cutover/NAME.db`
/// sits beside the runbook).
pub fn runbook_candidates(state: &Path, recorded: &str) -> Vec<PathBuf> {
    let recorded = Path::new(recorded);
    let mut candidates = vec![recorded.to_owned()];
    if let (Some(dir), Some(name)) = (state.parent(), recorded.file_name()) {
        candidates.push(dir.join(name));
        if let Some(up) = dir.parent() {
            candidates.push(up.join(name));
        }
    }
    candidates
}

/// Loads the runbook of `snapshot`'s run: the first candidate that exists,
/// parses and has the run's runbook name. None when none does (the report
/// then shows the planned starts the run recorded).
pub fn find_runbook(state: &Path, snapshot: &Snapshot) -> Option<Runbook> {
    runbook_candidates(state, &snapshot.run.runbook_path)
        .into_iter()
        .filter(|path| path.is_file())
        .find_map(|path| {
            cutover_lang::load_file(&path)
                .runbook
                .filter(|r| r.name == snapshot.run.runbook_name)
        })
}
