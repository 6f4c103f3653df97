//! `cutover check`: parse, resolve and check runbooks, and show every fault
//! found, the way a compiler does.

use super::{Stream, plural, use_color};
use cutover_lang::{Severity, load_file, render_human, render_json, render_short};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Check runbooks for errors: unknown or duplicate names, wrong kind
/// arguments, bad units, cycles in `after`, and every finding of the
/// planner's rules (`cutover plan` without `--probe`), such as a TTL
/// lowered too late.
///
/// Exits 0 when no file has an error (warnings allowed unless
/// --deny-warnings), 1 otherwise.
///
/// Example: `cutover check runbooks/maemo-2013.runbook`
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The runbook files to check (their `include`s are read too).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// `text`: diagnostics on stderr; `short`: one line each on stderr,
    /// `FILE:LINE:COL: SEVERITY[CODE]: MESSAGE`; `json`: one JSON document
    /// on stdout.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    // `human`: its older name, still accepted.
    #[value(alias = "human")]
    Text,
    Short,
    Json,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let color = use_color(Stream::Stderr);
    let (mut errors, mut warnings) = (0, 0);
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    for path in &args.files {
        let loaded = load_file(path);
        // What the planner's rules find is part of the check: a runbook
        // that `plan` rejects does not pass here.
        let mut found = loaded.diagnostics.clone();
        if let Some(runbook) = &loaded.runbook {
            found.extend(cutover_plan::plan(runbook, None).diagnostics);
        }
        let file_errors = found
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        errors += file_errors;
        warnings += found
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count();
        match args.format {
            OutputFormat::Text => {
                eprint!("{}", render_human(&loaded.sources, &found, color));
                if let Some(runbook) = loaded.runbook.as_ref().filter(|_| file_errors == 0) {
                    eprintln!(
                        "ok: {} ({}, {}, {})",
                        path.display(),
                        plural(runbook.steps.len(), "step", "steps"),
                        plural(runbook.hosts.len(), "host", "hosts"),
                        plural(runbook.zones.len(), "zone", "zones")
                    );
                }
            }
            OutputFormat::Short => eprint!("{}", render_short(&loaded.sources, &found)),
            OutputFormat::Json => {
                if let serde_json::Value::Array(found) = render_json(&loaded.sources, &found) {
                    diagnostics.extend(found);
                }
                let ok = loaded.runbook.is_some() && file_errors == 0;
                files.push(json!({ "file": path.display().to_string(), "ok": ok }));
            }
        }
    }
    match args.format {
        OutputFormat::Text if errors > 0 || warnings > 0 => {
            eprintln!(
                "{}, {}",
                plural(errors, "error", "errors"),
                plural(warnings, "warning", "warnings")
            );
        }
        OutputFormat::Text | OutputFormat::Short => {}
        OutputFormat::Json => {
            let report = json!({ "files": files, "errors": errors, "warnings": warnings, "diagnostics": diagnostics });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if errors > 0 || (args.deny_warnings && warnings > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
