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
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Examples:\n  cutover plan runbooks/maemo-2013.runbook\n  cutover plan runbooks/maemo-2013.runbook --format markdown > plan.md\n  cutover plan runbooks/maemo-2013.runbook --format svg > plan.svg"
)]
pub struct PlanArgs {
    /// The runbook file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// `text`: table and timeline for a terminal; `markdown`: for a pull
    /// request; `json`: the stable schema of docs/plan-json.md; `svg`: a
    /// Gantt chart.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Read the live state first: current values and TTLs at every verify
    /// server, each zone's NS set and SOA serials, the sizes of copy
    /// sources; show what the run would change, what is already done and
    /// where the live world drifted from what the runbook expects.
    #[arg(long)]
    pub probe: bool,
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
        eprint!(
            "{}",
            render_human(&unreadable.sources, &unreadable.diagnostics, color_err)
        );
        return Ok(ExitCode::from(2));
    }
    let loaded = load_file(&args.file);
    let Some(runbook) = &loaded.runbook else {
        eprint!(
            "{}",
            render_human(&loaded.sources, &loaded.diagnostics, color_err)
        );
        return Ok(ExitCode::from(1));
    };
    let probed = if args.probe {
        let dir = args.file.parent().unwrap_or(std::path::Path::new("."));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Some(runtime.block_on(cutover_steps::probe::probe(runbook, dir)))
    } else {
        None
    };
    let plan = cutover_plan::plan(runbook, probed.as_ref().map(|p| &p.facts));
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
    let mut drift = false;
    if let Some(probed) = &probed {
        // The live diff goes with the findings: the plan's own formats stay as documented.
        eprintln!("live state (probed):");
        for change in cutover_plan::dns_changes(runbook, &probed.facts) {
            drift |= change.kind == cutover_plan::ChangeKind::Drift;
            eprintln!("  {change}");
        }
        for problem in &probed.problems {
            eprintln!("  ? could not probe: {problem}");
        }
    }
    // Drift is an error: the switch's compare-and-swap would be refused.
    let errors = drift || findings.iter().any(|d| d.severity == Severity::Error);
    Ok(ExitCode::from(u8::from(errors)))
}
