//! `cutover rollback`: the `undo` of done steps, newest first, each
//! verified and recorded in the run's state.

use super::run::{load_runbook, release_lock, state_path, step_id, take_lock, watch_ctrl_c};
use crate::progress::TerminalReporter;
use anyhow::Context as _;
use cutover_engine::{Controls, Engine, NoPrompter, RollbackOutcome, RunOptions, SharedState};
use cutover_store::Store;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Undo done steps in reverse order of completion, each with its `undo`
/// line, verified and recorded. Steps that only check (ports, HTTP, waits)
/// need no undo; a step that changed something without an `undo` line is
/// reported and left as it is.
///
/// Exits 0 when every step in scope is rolled back, 1 when an undo failed.
///
/// Example: `cutover rollback move.runbook --to freeze`
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The runbook.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Undo only the steps done after this one (it stays done).
    #[arg(long, value_name = "STEP")]
    pub to: Option<String>,
    /// The state file (default: `.cutover/NAME.db` beside the runbook).
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Take over the lock of a coordinator whose process is gone.
    #[arg(long)]
    pub take_over: bool,
}

pub fn run(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load_runbook(&args.file) else {
        return Ok(ExitCode::from(1));
    };
    let runbook = &loaded.runbook;
    let to = args
        .to
        .as_deref()
        .map(|s| step_id(runbook, s))
        .transpose()?;
    let path = state_path(&loaded, args.state.as_deref());
    let store = Store::open_existing(&path)?;
    let Some(record) = store.latest_run()? else {
        anyhow::bail!("{} holds no run to roll back", path.display());
    };
    if record.runbook_name != runbook.name {
        anyhow::bail!(
            "{} belongs to runbook `{}`, not `{}`",
            path.display(),
            record.runbook_name,
            runbook.name
        );
    }
    if record.content_hash != loaded.hash {
        eprintln!(
            "warning: the runbook changed since the run started; its current `undo` lines are used"
        );
    }
    let holder = take_lock(&store, args.take_over)?;
    let state = SharedState::new(store, record.id);
    let options = RunOptions {
        runbook_dir: loaded.dir.clone(),
        ..RunOptions::default()
    };
    let reporter = std::sync::Arc::new(TerminalReporter::new(std::io::stdout().is_terminal()));
    let kinds = cutover_steps::Kinds;
    let engine = Engine {
        runbook,
        kinds: &kinds,
        reporter: reporter.as_ref(),
        prompter: &NoPrompter,
        options: &options,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let controls = Controls::default();
    let outcome = runtime.block_on(async {
        watch_ctrl_c(&controls, &reporter);
        engine.rollback(&state, to, &controls).await
    });
    reporter.finish();
    drop(state);
    let released = release_lock(&path, &holder);
    let outcome = outcome?;
    released?;
    Ok(match outcome {
        RollbackOutcome::Completed { undone, left } => {
            println!("rolled back: {} step(s) undone", undone.len());
            if !left.is_empty() {
                println!("left as they are (no undo line): {}", left.join(", "));
            }
            ExitCode::SUCCESS
        }
        RollbackOutcome::Failed { step } => {
            println!("the undo of `{step}` failed; the rollback stopped there");
            ExitCode::from(1)
        }
        RollbackOutcome::Stopped => {
            println!("rollback stopped; run it again to go on");
            ExitCode::from(1)
        }
    })
}
