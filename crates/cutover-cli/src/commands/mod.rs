//! Subcommands, one file each: `XArgs` (clap) and `run(XArgs) -> Result<ExitCode>`.
//! Exit codes: 0 success, 1 findings (errors in a runbook, a failed step),
//! 2 the command itself could not work (bad arguments, I/O).

use clap::{Parser, Subcommand};
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::OnceLock;

pub mod agent;
pub mod check;
pub mod completions;
pub mod confirm;
pub mod demo;
pub mod dns;
pub mod explain;
pub mod export;
pub mod fmt;
pub mod lab;
pub mod man;
pub mod plan;
pub mod rollback;
pub mod run;
pub mod serve;
pub mod status;

/// `--version`: the crate version and, when built from a git checkout, the
/// commit (build.rs).
const VERSION: &str = env!("CUTOVER_VERSION");

/// After the command list of `cutover --help` (and in cutover(1)).
const AFTER_HELP: &str = "\
Examples:
  cutover check move.runbook
  cutover plan move.runbook
  cutover run move.runbook --t0 now
  cutover status
  cutover confirm freeze --note \"read-only on all servers\"
  cutover export --format html --output report.html

Exit codes:
  0  success: the runbook is clean, every selected step is done
  1  findings: errors in a runbook, a step failed or is blocked, the run stopped before the end
  2  the command could not work: bad arguments, a missing or unreadable file, the lock is held

Docs: docs/guide.md (a first cutover), docs/language.md (runbooks), docs/engine.md (runs and
their state); `cutover man` prints the manual page, `cutover completions SHELL` the completions,
`cutover explain CODE` what a finding's code means.";

/// Migration planner and cutover runbook engine.
#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version = VERSION,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to colour the output: `auto` (on a terminal, unless the
    /// NO_COLOR variable is set), `always`, `never`.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// `--color WHEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// The `--color` of this process (set once by [`dispatch`]).
static COLOR: OnceLock<ColorChoice> = OnceLock::new();

/// The standard streams a command colours.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Whether to colour what goes to `stream`: `--color always|never`, else
/// (`auto`) when it is a terminal and NO_COLOR is unset or empty.
pub(crate) fn use_color(stream: Stream) -> bool {
    match COLOR.get().copied().unwrap_or(ColorChoice::Auto) {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            let terminal = match stream {
                Stream::Stdout => std::io::stdout().is_terminal(),
                Stream::Stderr => std::io::stderr().is_terminal(),
            };
            terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// `1 step`, `2 steps`, `0 zones`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The commands. Each gives its one-line `about` here (the command list);
/// its `--help` (and manual page) shows the doc of its `XArgs` in full.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(about = "Check runbooks for errors")]
    Check(check::CheckArgs),
    #[command(about = "Format runbooks canonically")]
    Fmt(fmt::FmtArgs),
    #[command(about = "Explain a finding's code: what it finds, why it matters, how to fix it")]
    Explain(explain::ExplainArgs),
    #[command(about = "Show the dry-run timeline of a runbook")]
    Plan(plan::PlanArgs),
    #[command(about = "Run a runbook (resumes an interrupted run)")]
    Run(run::RunArgs),
    #[command(about = "Show the state of a run")]
    Status(status::StatusArgs),
    #[command(about = "Confirm a manual step from another terminal")]
    Confirm(confirm::ConfirmArgs),
    #[command(about = "Undo done steps in reverse order")]
    Rollback(rollback::RollbackArgs),
    #[command(about = "Export the post-mortem report of a run")]
    Export(export::ExportArgs),
    #[command(about = "Serve a read-only live dashboard of a run")]
    Serve(serve::ServeArgs),
    #[command(about = "DNS tools: an authoritative server with TSIG-signed updates")]
    Dns(dns::DnsArgs),
    #[command(about = "The far end of an image copy, speaking the agent protocol on stdin/stdout")]
    Agent(agent::AgentArgs),
    #[command(about = "Build (or tear down) the loopback world a runbook needs")]
    Lab(lab::LabArgs),
    #[command(about = "Run the demo cutover on the embedded lab and write its report")]
    Demo(demo::DemoArgs),
    #[command(about = "Print the shell completion script (bash, zsh, fish, ...)")]
    Completions(completions::CompletionsArgs),
    #[command(about = "Print the manual pages (roff), or write them all into a folder")]
    Man(man::ManArgs),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let _ = COLOR.set(cli.color);
    match cli.command {
        Command::Check(args) => {
            end_quietly_when_output_closes();
            check::run(args)
        }
        Command::Fmt(args) => fmt::run(args),
        Command::Explain(args) => {
            end_quietly_when_output_closes();
            explain::run(args)
        }
        Command::Plan(args) => {
            end_quietly_when_output_closes();
            plan::run(args)
        }
        Command::Run(args) => run::run(args),
        Command::Status(args) => {
            end_quietly_when_output_closes();
            status::run(args)
        }
        Command::Confirm(args) => confirm::run(args),
        Command::Rollback(args) => rollback::run(args),
        Command::Dns(args) => dns::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Export(args) => {
            end_quietly_when_output_closes();
            export::run(args)
        }
        Command::Serve(args) => serve::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    }
}

/// Writes generated text to stdout; a reader that went away (`| head`)
/// ends the output quietly.
/// Writes `bytes` to a temporary file beside `path`, syncs it and renames
/// it into place: a reader sees the old report or the new one, never half.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("--output {} names no file", path.display()))?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

fn print_bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Commands that only read and print end like other Unix tools when their
/// reader goes away (`cutover status | head`): quietly, by `SIGPIPE`,
/// instead of panicking in `println!`. The others keep Rust's default
/// (`SIGPIPE` ignored), so that an agent dying under a copy is an error the
/// run reports and records, not a silent death of the coordinator.
fn end_quietly_when_output_closes() {
    // SAFETY: rustix has no safe way to set a signal's disposition.
    // signal(2) with SIG_DFL installs no handler (no code of ours runs
    // asynchronously, no memory is shared with one): the kernel then ends
    // the process on SIGPIPE. Called from main before any thread is
    // started, so nothing else changes dispositions meanwhile.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
