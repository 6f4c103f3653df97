//! `cutover check`: parse, resolve and check runbooks, and show every fault
//! found, the way a compiler does.

use cutover_lang::{load_file, render_human, render_json};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Check runbooks for errors: unknown or duplicate names, wrong kind
/// arguments, bad units, cycles in `after`, and more.
///
/// Exits 0 when no file has an error (warnings allowed), 1 otherwise.
///
/// Example: `cutover check runbooks/maemo-2013.runbook`
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The runbook files to check (their `include`s are read too).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// `human`: diagnostics on stderr; `json`: one JSON document on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (mut errors, mut warnings) = (0, 0);
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    for path in &args.files {
        let loaded = load_file(path);
        errors += loaded.error_count();
        warnings += loaded.warning_count();
        match args.format {
            OutputFormat::Human => {
                eprint!(
                    "{}",
                    render_human(&loaded.sources, &loaded.diagnostics, color)
                );
                if let Some(runbook) = &loaded.runbook {
                    eprintln!(
                        "ok: {} ({} steps, {} hosts, {} zones)",
                        path.display(),
                        runbook.steps.len(),
                        runbook.hosts.len(),
                        runbook.zones.len()
                    );
                }
            }
            OutputFormat::Json => {
                if let serde_json::Value::Array(found) =
                    render_json(&loaded.sources, &loaded.diagnostics)
                {
                    diagnostics.extend(found);
                }
                files.push(
                    json!({ "file": path.display().to_string(), "ok": loaded.runbook.is_some() }),
                );
            }
        }
    }
    match args.format {
        OutputFormat::Human if errors > 0 || warnings > 0 => {
            eprintln!("{errors} error(s), {warnings} warning(s)");
        }
        OutputFormat::Human => {}
        OutputFormat::Json => {
            let report = json!({ "files": files, "errors": errors, "warnings": warnings, "diagnostics": diagnostics });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
