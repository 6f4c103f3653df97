//! `cutover rollback`: shows what it will undo, asks, then runs the `undo`
//! of every step that may have acted, newest first, each verified and
//! recorded in the run's state.

use super::run::{
    OperatorArgs, ask_yes, load_runbook, release_lock, require_file, state_path, step_id,
    take_lock, watch_stop_signals,
};
use crate::progress::{StdinPrompter, TerminalReporter};
use anyhow::Context as _;
use cutover_engine::{
    Controls, Engine, NoPrompter, PlannedUndo, Prompter, RollbackOutcome, RunOptions, SharedState,
    UndoAction,
};
use cutover_store::Store;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Undo every step whose action may have taken effect, newest first, each
/// with its `undo` line, verified and recorded: done steps, and steps that
/// acted but failed or were never verified. Steps that only check (ports,
/// HTTP, waits) need no undo; a step that changed something without an
/// `undo` line is reported and left as it is. A failed undo stays failed and
/// is tried again by the next rollback.
///
/// Before acting it shows what it will undo, in order, with what each
/// undo's check sees now, and asks (or `--yes`).
///
/// Exits 0 only when every step in scope is undone; 1 when an undo failed,
/// a step has no undo line, or the rollback stopped; 2 when it could not start.
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
    /// Ask before each undo: run, skip or stop.
    #[arg(long)]
    pub step: bool,
    /// Undo without asking first (and take over a stale lock).
    #[arg(long)]
    pub yes: bool,
    /// DNS undos: do not wait for cached answers to expire (rehearsals).
    #[arg(long)]
    pub no_ttl_wait: bool,
    /// Take over the lock of a coordinator whose process is gone.
    #[arg(long)]
    pub take_over: bool,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

fn show_plan(plan: &[PlannedUndo]) {
    println!("rollback will undo, in this order:");
    for (n, planned) in plan.iter().enumerate() {
        let what = match &planned.action {
            UndoAction::Undo(text) => text.clone(),
            UndoAction::NothingToUndo => "nothing to undo (it changes nothing)".to_owned(),
            UndoAction::NoUndoLine => "NO UNDO LINE: it will be left as it is".to_owned(),
        };
        println!("  {}. {} ({}): {what}", n + 1, planned.step, planned.state);
        if let Some(current) = &planned.current {
            println!("       now: {current}");
        }
    }
}

fn show_outcome(outcome: &RollbackOutcome) {
    let list = |names: &[String]| names.join(", ");
    if outcome.is_complete() {
        println!(
            "rolled back: {} step(s) undone, {} needed no undo",
            outcome.undone.len(),
            outcome.nothing_to_undo.len()
        );
        return;
    }
    println!("NOT rolled back completely:");
    println!(
        "  undone: {}",
        if outcome.undone.is_empty() && outcome.nothing_to_undo.is_empty() {
            "none".to_owned()
        } else {
            list(&[outcome.undone.clone(), outcome.nothing_to_undo.clone()].concat())
        }
    );
    if let Some((step, why)) = &outcome.failed {
        println!("  FAILED: {step}: {why}");
    }
    if !outcome.no_undo.is_empty() {
        println!(
            "  no undo line, left as they are: {}",
            list(&outcome.no_undo)
        );
    }
    if !outcome.skipped.is_empty() {
        println!("  skipped at the prompt: {}", list(&outcome.skipped));
    }
    if !outcome.not_reached.is_empty() {
        println!("  not reached: {}", list(&outcome.not_reached));
    }
    if outcome.stopped {
        println!("  stopped; run the rollback again to go on");
    } else if outcome.failed_for_good {
        println!(
            "  the failed undo refused for good (see why above): a new rollback fails the same way"
        );
    } else if outcome.failed.is_some() {
        println!("  run the rollback again to retry the failed undo");
    }
}

pub fn run(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    args.operator.apply()?;
    require_file(&args.file)?;
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
    let holder = take_lock(&store, args.take_over || args.yes)?;
    let state = SharedState::new(store, record.id);
    let options = RunOptions {
        runbook_dir: loaded.dir.clone(),
        step_mode: args.step,
        no_ttl_wait: args.no_ttl_wait,
        ..RunOptions::default()
    };
    let reporter = std::sync::Arc::new(
        TerminalReporter::new(std::io::stdout().is_terminal()).asking(args.step),
    );
    let prompter: Box<dyn Prompter> = if args.step {
        Box::new(StdinPrompter::start(reporter.clone()))
    } else {
        Box::new(NoPrompter)
    };
    let kinds = cutover_steps::Kinds;
    let engine = Engine {
        runbook,
        kinds: &kinds,
        reporter: reporter.as_ref(),
        prompter: prompter.as_ref(),
        options: &options,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let controls = Controls::default();
    let result = runtime.block_on(async {
        watch_stop_signals(&controls, &reporter);
        let plan = engine.rollback_plan(&state, to, &controls).await?;
        if plan.is_empty() {
            return Ok(None);
        }
        show_plan(&plan);
        if !(args.yes || args.step || ask_yes("Undo these steps?")) {
            anyhow::bail!("nothing was undone; answer yes at the prompt or pass --yes");
        }
        engine
            .rollback(&state, &plan, to.is_none(), &controls)
            .await
            .map(Some)
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    reporter.finish();
    drop(state);
    let released = release_lock(&path, &holder);
    let outcome = result?;
    released?;
    let Some(outcome) = outcome else {
        println!("nothing to roll back: no step of this run has acted");
        return Ok(ExitCode::SUCCESS);
    };
    show_outcome(&outcome);
    Ok(if outcome.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
