//! `cutover man`: manual pages in roff, generated from the same clap
//! definitions that parse the command line (and give `--help`), so the
//! pages say what the binary does.

use anyhow::Context as _;
use clap::CommandFactory as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Print a manual page, or write every page into a folder.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Examples:\n  cutover man | man -l -\n  cutover man run | man -l -\n  cutover man --dir /usr/local/share/man/man1"
)]
pub struct ManArgs {
    /// The command whose page is printed (`run`, `dns serve`); default:
    /// cutover(1) itself.
    #[arg(value_name = "COMMAND", conflicts_with = "dir")]
    pub command: Vec<String>,
    /// Write cutover.1 and a page for every command (cutover-run.1,
    /// cutover-dns-serve.1, ...) into this folder instead, each atomically.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: ManArgs) -> anyhow::Result<ExitCode> {
    let mut root = super::Cli::command().disable_help_subcommand(true);
    root.build();
    match &args.dir {
        Some(dir) => {
            let written = write_all(&root, dir)?;
            eprintln!("wrote {written} manual pages into {}", dir.display());
        }
        None => {
            let mut command = &root;
            for name in &args.command {
                command = command.find_subcommand(name).with_context(|| {
                    format!(
                        "`{}` has no command `{name}`; `cutover --help` lists them",
                        command.get_display_name().unwrap_or("cutover")
                    )
                })?;
            }
            super::print_bytes(&page(command)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The roff page of `command` (built: its display name is `cutover-run`).
fn page(command: &clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(command.clone())
        .source(format!("cutover {}", env!("CARGO_PKG_VERSION")))
        .render(&mut roff)?;
    Ok(roff)
}

/// Writes the page of `command` and of each of its commands into `dir`;
/// how many were written.
fn write_all(command: &clap::Command, dir: &Path) -> anyhow::Result<usize> {
    let file = dir.join(clap_mangen::Man::new(command.clone()).get_filename());
    super::write_atomically(&file, &page(command)?)?;
    let mut written = 1;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_all(sub, dir)?;
    }
    Ok(written)
}
