//! `cutover export`: the post-mortem report of a run — planned against
//! actual, deviations, who confirmed which manual gate, what each
//! verification observed, crashes and resumes, and the full event log.

use super::run::locate;
use cutover_report::{Format, Report, find_runbook, read_snapshot, render};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Export the post-mortem report of a run.
///
/// Reads the state file without changing it (it may be read while the run
/// goes on). The planned timeline comes from the runbook: FILE, or the
/// runbook the run recorded when it can still be read.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Examples:\n  cutover export --output report.md\n  cutover export runbooks/maemo-2013.runbook --format markdown --output report.md\n  cutover export --state .cutover/maemo-move.db --format json\n  cutover export --state run.db --format html --output report.html"
)]
pub struct ExportArgs {
    /// The runbook; its state file is `.cutover/NAME.db` beside it (NAME
    /// from its `runbook NAME` line) unless --state says otherwise.
    /// Default: the one runbook in the current folder.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The state file of the run.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// `markdown`; `json` (schema in docs/export-format.md); `csv` (one row
    /// per step); `csv-events` (one row per event); `html` (one
    /// self-contained page with a Gantt chart).
    #[arg(long, value_enum, default_value_t = ExportFormat::Markdown)]
    pub format: ExportFormat,
    /// Write here (atomically: a temporary file renamed into place)
    /// instead of to stdout.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Markdown,
    Json,
    Csv,
    CsvEvents,
    Html,
}

impl From<ExportFormat> for Format {
    fn from(f: ExportFormat) -> Format {
        match f {
            ExportFormat::Markdown => Format::Markdown,
            ExportFormat::Json => Format::Json,
            ExportFormat::Csv => Format::Csv,
            ExportFormat::CsvEvents => Format::CsvEvents,
            ExportFormat::Html => Format::Html,
        }
    }
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let located = locate(args.file.as_deref(), args.state.as_deref())?;
    let state = located.state;
    let runbook = located.runbook.map(|(_, loaded)| loaded.runbook);
    let snapshot = read_snapshot(&state)?;
    if let Some(r) = &runbook
        && r.name != snapshot.run.runbook_name
    {
        anyhow::bail!(
            "state file {} is a run of runbook `{}`, not `{}`",
            state.display(),
            snapshot.run.runbook_name,
            r.name
        );
    }
    let runbook = runbook.or_else(|| find_runbook(&state, &snapshot));
    let report = Report::build(&snapshot, runbook.as_ref());
    let text = render(&report, args.format.into());
    match &args.output {
        Some(path) => {
            super::write_atomically(path, text.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
