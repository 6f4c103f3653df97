//! `cutover fmt`: rewrite runbooks in canonical form, or (`--check`) show
//! what would change. A file is replaced by writing the new text beside it
//! and renaming it into place, so a file is never left half-written; `-`
//! formats standard input to standard output (for editors).

use super::{Stream, use_color};
use anyhow::Context;
use cutover_lang::{SourceMap, format_source, printable, read_text, render_human, unified_diff};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Format runbooks canonically: items at column 1, body lines indented two
/// spaces, single spaces between words, comments kept.
///
/// Exits 1 when a file cannot be read or tokenised, or (with `--check`) is
/// not already formatted.
///
/// Examples: `cutover fmt --check runbooks/*.runbook`,
/// `cutover fmt - < move.runbook`
#[derive(Debug, clap::Args)]
pub struct FmtArgs {
    /// The runbook files to format; `-`: standard input, written formatted
    /// to standard output.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Change nothing; print a unified diff of each file that is not formatted.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: FmtArgs) -> anyhow::Result<ExitCode> {
    let color = use_color(Stream::Stderr);
    let mut failed = false;
    for path in &args.files {
        if path.as_os_str() == "-" {
            failed |= !stdin(args.check, color)?;
            continue;
        }
        let text = match read_text(path) {
            Ok(text) => text,
            Err(loaded) => {
                eprint!(
                    "{}",
                    render_human(&loaded.sources, &loaded.diagnostics, color)
                );
                failed = true;
                continue;
            }
        };
        let formatted = match format_source(&text) {
            Ok(formatted) => formatted,
            Err(diagnostics) => {
                let mut sources = SourceMap::default();
                sources.add(path.clone(), text);
                eprint!("{}", render_human(&sources, &diagnostics, color));
                eprintln!(
                    "{}: not formatted, fix the errors above first",
                    path.display()
                );
                failed = true;
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        if args.check {
            print!(
                "{}",
                printable(
                    &unified_diff(&path.display().to_string(), &text, &formatted),
                    false
                )
            );
            failed = true;
        } else {
            replace_file(path, &formatted)?;
            eprintln!("formatted {}", path.display());
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `fmt -`: standard input formatted to standard output (with `--check`,
/// its diff). False when it has errors or (`--check`) is not formatted.
fn stdin(check: bool, color: bool) -> anyhow::Result<bool> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("cannot read standard input")?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "standard input is not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    let name = "<stdin>";
    let formatted = match format_source(&text) {
        Ok(formatted) => formatted,
        Err(diagnostics) => {
            let mut sources = SourceMap::default();
            sources.add(PathBuf::from(name), text);
            eprint!("{}", render_human(&sources, &diagnostics, color));
            eprintln!("{name}: not formatted, fix the errors above first");
            return Ok(false);
        }
    };
    if check {
        if formatted == text {
            return Ok(true);
        }
        print!(
            "{}",
            printable(&unified_diff(name, &text, &formatted), false)
        );
        return Ok(false);
    }
    print!("{formatted}");
    Ok(true)
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`.
fn replace_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.cutover-fmt-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&temp, text)?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&temp, meta.permissions())?;
        }
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, path)
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
        .with_context(|| format!("cannot write {}", path.display()))
}
