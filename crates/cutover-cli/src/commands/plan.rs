//! `cutover plan`: the dry-run timeline a team reviews before a cutover —
//! when each step starts and ends, the TTL waits before DNS switches, the
//! critical path, whether it fits the window, and the mistakes the planner
//! can see in advance.

use cutover_lang::{Severity, load_file, read_text, render_human};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Show the dry-run timeline of a runbook.
///
/// Prints the plan on stdout and the findings (errors and warnings) on
/// stderr. Every duration says where it comes from: declared, estimated
/// (and from what), probed, a default guess, or unknown.
///
/// Exits 0 when there are no errors (warnings allowed), 1 with errors,
/// 2 when the file cannot be read.
///
/// Examples:
///   cutover plan runbooks/maemo-2013.runbook
///   cutover plan runbooks/maemo-2013.runbook --format markdown > plan.md
///   cutover plan runbooks/maemo-2013.runbook --format svg > plan.svg
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The runbook file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// `text`: table and timeline for a terminal; `markdown`: for a pull
    /// request; `json`: the stable schema of docs/plan-json.md; `svg`: a
    /// Gantt chart.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
    Svg,
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let color_err = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let color_out = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if let Err(unreadable) = read_text(&args.file) {
        eprint!("{}", render_human(&unreadable.sources, &unreadable.diagnostics, color_err));
        return Ok(ExitCode::from(2));
    }
    let loaded = load_file(&args.file);
    let Some(runbook) = &loaded.runbook else {
        eprint!("{}", render_human(&loaded.sources, &loaded.diagnostics, color_err));
        return Ok(ExitCode::from(1));
    };
    let plan = cutover_plan::plan(runbook, None);
    let mut findings = loaded.diagnostics.clone();
    findings.extend(plan.diagnostics.iter().cloned());
    eprint!("{}", render_human(&loaded.sources, &findings, color_err));
    let output = match args.format {
        PlanFormat::Text => cutover_plan::render::text(&plan, &loaded.sources, color_out),
        PlanFormat::Markdown => cutover_plan::render::markdown(&plan, &loaded.sources),
        PlanFormat::Json => cutover_plan::render::json(&plan, &loaded.sources),
        PlanFormat::Svg => cutover_plan::render::svg(&plan),
    };
    print!("{output}");
    let errors = findings.iter().any(|d| d.severity == Severity::Error);
    Ok(ExitCode::from(u8::from(errors)))
}
