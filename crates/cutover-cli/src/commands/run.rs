//! `cutover run`: run or resume a runbook, checkpointing every transition
//! in its state file. Also the helpers the other run-time commands share:
//! loading a runbook, finding its state file, the coordinator lock.

use crate::progress::{StdinPrompter, TerminalReporter};
use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use cutover_engine::{
    Controls, Engine, NoPrompter, Opened, Prompter, RunOptions, RunOutcome, RunPlanning,
    StepChange, content_hash, open_planned_run,
};
use cutover_lang::{Runbook, StepId, load_file, render_human};
use cutover_store::{LockHolder, LockState, Store};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Run a runbook, or resume its interrupted run.
///
/// Every step is checked first (already true → done without acting), then
/// acted and verified; each transition is committed to the state file, so
/// after a crash or Ctrl-C the same command resumes where it stopped. One
/// Ctrl-C stops at the next safe point, a second at once.
///
/// Exits 0 when every selected step is done, 1 when a step failed, is
/// blocked or the run stopped before the end, 2 when it could not start.
///
/// Examples: `cutover run move.runbook --step`,
/// `cutover run move.runbook --t0 now --parallel 4`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The runbook.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Walk step by step: before each step show it and ask run / skip / stop.
    #[arg(long)]
    pub step: bool,
    /// Run this step and the steps it depends on, then stop.
    #[arg(long, value_name = "STEP", conflicts_with = "only")]
    pub until: Option<String>,
    /// Run only this step (the steps it depends on must be done).
    #[arg(long, value_name = "STEP")]
    pub only: Option<String>,
    /// Skip a step (recorded as a deviation); repeatable.
    #[arg(long, value_name = "STEP")]
    pub skip: Vec<String>,
    /// Run a step even though a step it depends on was skipped; repeatable.
    #[arg(long, value_name = "STEP")]
    pub force: Vec<String>,
    /// Run at most N steps at once where `after` and `at` allow.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PARALLEL)]
    pub parallel: usize,
    /// The state file (default: `.cutover/NAME.db` beside the runbook).
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// T0 of a new run: `now` (a rehearsal) or `YYYY-MM-DD HH:MM[:SS] UTC`;
    /// default: the runbook's window start.
    #[arg(long, value_name = "now|TIME")]
    pub t0: Option<String>,
    /// Answer yes: take over a stale lock, accept a changed runbook.
    #[arg(long)]
    pub yes: bool,
    /// Take over the lock of a coordinator whose process is gone.
    #[arg(long)]
    pub take_over: bool,
    /// Accept a runbook changed since the run started (changed steps run again).
    #[arg(long)]
    pub accept_changes: bool,
    /// DNS steps: do not wait for old TTLs to expire (rehearsals).
    #[arg(long)]
    pub no_ttl_wait: bool,
    /// What the run prints: `text` (bars on a terminal, plain lines
    /// otherwise) or `json` (one event per line; manual gates wait for
    /// `cutover confirm`).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = RunFormat::Text, conflicts_with = "step")]
    pub format: RunFormat,
    /// Hold to the reviewed plan written by `cutover plan FILE --out PLAN`:
    /// refused, before anything runs, when the runbook or the facts it
    /// probed changed since; the run records it and is judged against it.
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<PathBuf>,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// `cutover run --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunFormat {
    Text,
    Json,
}

/// `--operator NAME`, for the commands that record who acted.
#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    /// Record NAME as the operator (of a new run, of a confirmation, in
    /// the lock) instead of the login name (`USER`, else the password
    /// database).
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,
}

impl OperatorArgs {
    /// Makes `--operator` the name this process records.
    pub(crate) fn apply(&self) -> anyhow::Result<()> {
        if let Some(name) = &self.operator {
            cutover_store::set_operator(name).context("--operator")?;
        }
        Ok(())
    }
}

/// `--parallel` when not given.
const DEFAULT_PARALLEL: usize = 4;

/// A loaded runbook with what the state needs to know about it.
pub(crate) struct LoadedRunbook {
    pub runbook: Runbook,
    pub hash: String,
    pub dir: PathBuf,
}

/// Loads and checks a runbook; its diagnostics go to stderr. `None`: it has errors.
pub(crate) fn load_runbook(file: &Path) -> Option<LoadedRunbook> {
    let loaded = load_checked(file);
    if loaded.is_none() {
        eprintln!(
            "{}: the runbook has errors; nothing was run",
            file.display()
        );
    }
    loaded
}

/// A runbook FILE named on the command line that does not exist: one
/// line saying so (not the diagnostics of a file that has errors).
pub(crate) fn require_file(file: &Path) -> anyhow::Result<()> {
    if file.exists() {
        Ok(())
    } else {
        anyhow::bail!("runbook {} not found", file.display())
    }
}

/// [`load_runbook`] without the closing line: for the commands that only read a run.
fn load_checked(file: &Path) -> Option<LoadedRunbook> {
    let loaded = load_file(file);
    let color = super::use_color(super::Stream::Stderr);
    if loaded.error_count() > 0 || loaded.runbook.is_none() {
        eprint!(
            "{}",
            render_human(&loaded.sources, &loaded.diagnostics, color)
        );
        return None;
    }
    let hash = content_hash(loaded.sources.files.iter().map(|f| f.text.as_str()));
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    loaded
        .runbook
        .map(|runbook| LoadedRunbook { runbook, hash, dir })
}

/// The state file of a runbook, the one rule every command follows:
/// `.cutover/NAME.db` in the runbook's folder, NAME from its `runbook NAME`
/// line (not the file name), unless `--state` names one.
pub(crate) fn state_path(loaded: &LoadedRunbook, explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(
        || {
            loaded
                .dir
                .join(".cutover")
                .join(format!("{}.db", loaded.runbook.name))
        },
        Path::to_path_buf,
    )
}

/// What `[FILE] [--state PATH]` names for the commands that read a run
/// (`status`, `confirm`, `export`, `serve`).
pub(crate) struct Located {
    /// The state file: `--state`, or [`state_path`] of the runbook.
    pub state: PathBuf,
    /// The runbook file and the runbook, when FILE was given or found.
    pub runbook: Option<(PathBuf, LoadedRunbook)>,
}

/// Resolves `[FILE] [--state PATH]`. Without either, FILE is the one
/// runbook in the current folder ([`only_runbook_here`]).
pub(crate) fn locate(file: Option<&Path>, state: Option<&Path>) -> anyhow::Result<Located> {
    let file = match (file, state) {
        (Some(file), _) => file.to_path_buf(),
        (None, Some(state)) => {
            return Ok(Located {
                state: state.to_path_buf(),
                runbook: None,
            });
        }
        (None, None) => only_runbook_here()?,
    };
    require_file(&file)?;
    let Some(loaded) = load_checked(&file) else {
        anyhow::bail!(
            "runbook {} has errors (shown above), so its state file is unknown; fix them or name the state file with --state",
            file.display()
        );
    };
    Ok(Located {
        state: state_path(&loaded, state),
        runbook: Some((file, loaded)),
    })
}

/// The one runbook in the current folder: its `*.runbook` files less
/// those another of them includes. An error naming the candidates when
/// there are none or several.
fn only_runbook_here() -> anyhow::Result<PathBuf> {
    let here = std::env::current_dir().context("cannot read the current folder")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&here)
        .with_context(|| format!("cannot read {}", here.display()))?
        .filter_map(Result::ok)
        .map(|entry| PathBuf::from(entry.file_name()))
        .filter(|name| name.extension().is_some_and(|e| e == "runbook") && name.is_file())
        .collect();
    files.sort();
    let included: std::collections::HashSet<PathBuf> = files
        .iter()
        .flat_map(|file| {
            load_file(file)
                .sources
                .files
                .into_iter()
                .skip(1)
                .filter_map(|f| f.path.canonicalize().ok())
        })
        .collect();
    files.retain(|f| f.canonicalize().is_ok_and(|c| !included.contains(&c)));
    match files.as_slice() {
        [only] => Ok(only.clone()),
        [] => anyhow::bail!(
            "no runbook FILE given and no `.runbook` file in {}; name the runbook FILE or the state file with --state",
            here.display()
        ),
        several => anyhow::bail!(
            "no runbook FILE given and {} runbooks in {}: {}; name one",
            several.len(),
            here.display(),
            several
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Resolves a step name, suggesting the closest one when unknown.
pub(crate) fn step_id(runbook: &Runbook, name: &str) -> anyhow::Result<StepId> {
    runbook.step_by_name(name).ok_or_else(|| {
        anyhow::anyhow!(
            "the runbook has no step `{name}`{}",
            did_you_mean(name, runbook.steps.iter().map(|s| s.name.as_str()))
        )
    })
}

/// "; did you mean `NAME`?" for the closest of `names` by the language's
/// one rule ([`cutover_lang::closest`]), or nothing.
pub(crate) fn did_you_mean<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    cutover_lang::closest(name, names)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

/// Asks a yes/no question on the terminal (false without one).
pub(crate) fn ask_yes(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    crate::progress::discard_pending_terminal_input();
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Takes the coordinator lock, or explains who holds it. Release it with
/// [`release_lock`].
pub(crate) fn take_lock(store: &Store, take_over: bool) -> anyhow::Result<LockHolder> {
    let me = LockHolder::current();
    let mut allow = take_over;
    loop {
        match store.acquire_lock(&me, allow)? {
            LockState::Acquired { took_over } => {
                if let Some(old) = took_over {
                    eprintln!("took over the stale lock of {old}");
                }
                return Ok(me);
            }
            LockState::Held(holder) => anyhow::bail!(
                "{} is in use by another coordinator: {holder}; only one `cutover run` may drive a run",
                store.path().display()
            ),
            LockState::Stale(holder) => {
                let question = format!(
                    "{} is locked by {holder}, whose process is gone. Take over?",
                    store.path().display()
                );
                if allow || !ask_yes(&question) {
                    anyhow::bail!(
                        "{} is locked by {holder}, whose process is gone; re-run with --take-over to take it over",
                        store.path().display()
                    );
                }
                allow = true;
            }
        }
    }
}

/// Releases the lock taken by [`take_lock`], through a connection of its own.
pub(crate) fn release_lock(path: &Path, holder: &LockHolder) -> anyhow::Result<()> {
    Store::open_existing(path)?.release_lock(holder)?;
    Ok(())
}

/// The steps already done in the run at `path`, read without writing (none
/// when there is no file, or it cannot be read this way: then preflight
/// checks every zone, and the open that follows reports the file).
fn done_steps(path: &Path) -> std::collections::HashSet<String> {
    let read = || -> Option<std::collections::HashSet<String>> {
        let store = Store::open_read_only(path).ok()?;
        let run = store.read(|tx| tx.latest_run()).ok()??;
        let steps = store.read(|tx| tx.steps(run.id)).ok()?;
        Some(
            steps
                .into_iter()
                .filter(|s| s.status == cutover_store::StepStatus::Done)
                .map(|s| s.name)
                .collect(),
        )
    };
    if path.exists() {
        read().unwrap_or_default()
    } else {
        Default::default()
    }
}

/// `now`, `2013-03-14 17:00 UTC`, `2013-03-14 17:00:30 UTC` or RFC 3339.
fn parse_t0(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if text == "now" {
        return Ok(Utc::now());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let bare = text.strip_suffix("UTC").map(str::trim).unwrap_or(text);
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(bare, format) {
            return Ok(t.and_utc());
        }
    }
    anyhow::bail!("--t0 {text}: expected `now`, `YYYY-MM-DD HH:MM[:SS] UTC` or an RFC 3339 time")
}

fn show_changes(changes: &[StepChange]) {
    eprintln!("the runbook changed since this run started:");
    if changes.is_empty() {
        eprintln!("  no step changed (comments or layout only)");
    }
    for change in changes {
        match (&change.before, &change.after) {
            (None, Some(_)) => eprintln!("  added step `{}`", change.name),
            (Some(_), None) => eprintln!("  removed step `{}`", change.name),
            (before, after) => {
                eprintln!("  changed step `{}`:", change.name);
                let (before, after) = (
                    before.as_deref().unwrap_or(""),
                    after.as_deref().unwrap_or(""),
                );
                for line in similar::TextDiff::from_lines(before, after).iter_all_changes() {
                    let sign = match line.tag() {
                        similar::ChangeTag::Delete => "-",
                        similar::ChangeTag::Insert => "+",
                        similar::ChangeTag::Equal => " ",
                    };
                    eprint!("    {sign} {line}");
                    if line.missing_newline() {
                        eprintln!();
                    }
                }
            }
        }
    }
}

/// Turns the signals that ask a coordinator to stop into the engine's two
/// levels. The first SIGINT (Ctrl-C), SIGTERM (`timeout`, a systemd stop)
/// or SIGHUP (the terminal closed) is a clean stop: nothing new starts,
/// waits end at once, running actions finish or stop at their next safe
/// point, and the run is recorded as stopped. A second SIGINT or SIGTERM
/// aborts: running actions are cancelled and their process groups killed.
pub(crate) fn watch_stop_signals(controls: &Controls, reporter: &std::sync::Arc<TerminalReporter>) {
    use tokio::signal::unix::{SignalKind, signal};
    let controls = controls.clone();
    let reporter = reporter.clone();
    let streams = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = streams else {
        reporter.println(
            "warning: cannot watch for Ctrl-C; stop the run with `kill -9` only as a last resort",
        );
        return;
    };
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = interrupt.recv() => "Ctrl-C",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
        };
        controls.stop();
        reporter.println(&format!(
            "{first}: stopping at the next safe point (Ctrl-C again to stop now)"
        ));
        let second = loop {
            tokio::select! {
                _ = interrupt.recv() => break "Ctrl-C",
                _ = terminate.recv() => break "SIGTERM",
                // The terminal is gone: nothing more can come from it.
                _ = hangup.recv() => {}
            }
        };
        controls.abort();
        reporter.println(&format!("{second}: stopping now"));
    });
}

/// `cutover VERB` for this run's runbook (or its `--state`), shell-quoted:
/// `status` to look at it, `export` for its report.
fn command_on_run(verb: &str, args: &RunArgs) -> String {
    let mut words: Vec<String> = vec!["cutover".into(), verb.into()];
    match &args.state {
        Some(state) => {
            words.push("--state".into());
            words.push(state.display().to_string());
        }
        None => words.push(args.file.display().to_string()),
    }
    shell_words(&words)
}

/// The command that resumes this very run: the same runbook, state file
/// and walk (`--step`, `--until`, `--only`, `--parallel`), shell-quoted.
fn resume_command(args: &RunArgs) -> String {
    let mut words: Vec<String> = vec!["cutover".into(), "run".into()];
    words.push(args.file.display().to_string());
    if let Some(state) = &args.state {
        words.push("--state".into());
        words.push(state.display().to_string());
    }
    if args.step {
        words.push("--step".into());
    }
    if let Some(until) = &args.until {
        words.push("--until".into());
        words.push(until.clone());
    }
    if let Some(only) = &args.only {
        words.push("--only".into());
        words.push(only.clone());
    }
    if args.parallel != DEFAULT_PARALLEL {
        words.push("--parallel".into());
        words.push(args.parallel.to_string());
    }
    if args.no_ttl_wait {
        words.push("--no-ttl-wait".into());
    }
    if let Some(plan) = &args.plan {
        words.push("--plan".into());
        words.push(plan.display().to_string());
    }
    shell_words(&words)
}

/// Words joined for a POSIX shell, each quoted where it needs it.
pub(crate) fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shlex::try_quote(w).map_or_else(|_| w.clone(), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    args.operator.apply()?;
    require_file(&args.file)?;
    let Some(loaded) = load_runbook(&args.file) else {
        return Ok(ExitCode::from(1));
    };
    let runbook = &loaded.runbook;
    let mut options = RunOptions {
        parallel: args.parallel.max(1),
        step_mode: args.step,
        no_ttl_wait: args.no_ttl_wait,
        runbook_dir: loaded.dir.clone(),
        ..RunOptions::default()
    };
    options.until = args
        .until
        .as_deref()
        .map(|s| step_id(runbook, s))
        .transpose()?;
    options.only = args
        .only
        .as_deref()
        .map(|s| step_id(runbook, s))
        .transpose()?;
    options.skip = args
        .skip
        .iter()
        .map(|s| step_id(runbook, s))
        .collect::<anyhow::Result<_>>()?;
    options.force = args
        .force
        .iter()
        .map(|s| step_id(runbook, s))
        .collect::<anyhow::Result<_>>()?;
    let t0 = match &args.t0 {
        Some(text) => Some(parse_t0(text)?),
        None => runbook.window.map(|w| w.start),
    };

    // Before anything runs: a reviewed plan still holds, and every key a
    // DNS step still to run needs is read and used once, signed, at its
    // zone's primary.
    let path = state_path(&loaded, args.state.as_deref());
    let planning = run_planning(&args, &loaded, &path)?;
    let done = done_steps(&path);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    if let Err(failures) = runtime.block_on(cutover_steps::preflight::preflight(
        runbook,
        &loaded.dir,
        &|step| done.contains(step),
    )) {
        for failure in &failures {
            eprintln!("error: {failure}");
        }
        eprintln!("nothing was run: fix what preflight found, then run again");
        return Ok(ExitCode::from(2));
    }
    let store = Store::open(&path)?;
    let holder = take_lock(&store, args.take_over || args.yes)?;
    let result = run_locked(
        &args,
        &loaded,
        options,
        t0,
        planning.as_ref(),
        (store, &path),
        runtime,
    );
    let released = release_lock(&path, &holder);
    let code = result?;
    released?;
    Ok(code)
}

/// The plan a new run records: the reviewed plan's (`--plan`, checked
/// here against the runbook and the live world), a rehearsal's (`--t0
/// now`: re-based at the run's start), or none (planned from the runbook
/// alone).
fn run_planning(
    args: &RunArgs,
    loaded: &LoadedRunbook,
    path: &Path,
) -> anyhow::Result<Option<RunPlanning>> {
    let rehearsal = args.t0.as_deref() == Some("now");
    let bound = match &args.plan {
        Some(plan_file) => {
            let existing = recorded_plan(path);
            let bound = super::plan::bind(
                plan_file,
                &args.file,
                existing.as_ref().map(|run| run.as_ref()),
            )?;
            eprintln!(
                "holding to the reviewed plan {} (made {})",
                plan_file.display(),
                bound.reference.made_at
            );
            Some(bound)
        }
        None => None,
    };
    if bound.is_none() && !rehearsal {
        return Ok(None);
    }
    let options = cutover_plan::Options {
        not_before: rehearsal.then_some(0),
        ..cutover_plan::Options::default()
    };
    let facts = bound.as_ref().and_then(|b| b.facts.as_ref());
    // The reviewed plan's own times (calibrated, perhaps); a rehearsal's
    // re-based at its start like its plan: nothing before it.
    let spans = bound.as_ref().map(|b| {
        let first = b.spans.iter().map(|s| s.start_ms).min().unwrap_or(0);
        let shift = if rehearsal { -first.min(0) } else { 0 };
        b.spans
            .iter()
            .map(|s| cutover_store::PlannedSpan {
                start_ms: s.start_ms + shift,
                end_ms: s.end_ms + shift,
                ..s.clone()
            })
            .collect()
    });
    Ok(Some(RunPlanning {
        plan: cutover_plan::plan_with(&loaded.runbook, facts, &options),
        rehearsal,
        reviewed: bound.map(|b| b.reference),
        spans,
    }))
}

/// The reviewed plan the run in the state file at `path` holds to: `None`
/// without a run, `Some(None)` for a run without one.
fn recorded_plan(path: &Path) -> Option<Option<cutover_store::ReviewedPlanRef>> {
    if !path.exists() {
        return None;
    }
    let read = || -> Option<Option<cutover_store::ReviewedPlanRef>> {
        let store = Store::open_read_only(path).ok()?;
        let run = store.read(|tx| tx.latest_run()).ok()??;
        let plan = store.read(|tx| tx.run_plan(run.id)).ok()?;
        Some(plan.and_then(|p| p.reviewed))
    };
    Some(read().unwrap_or(None))
}

fn run_locked(
    args: &RunArgs,
    loaded: &LoadedRunbook,
    options: RunOptions,
    t0: Option<DateTime<Utc>>,
    planning: Option<&RunPlanning>,
    (store, path): (Store, &Path),
    runtime: tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    let runbook = &loaded.runbook;
    let runbook_path = args.file.display().to_string();
    let opened = open_planned_run(store, runbook, &runbook_path, &loaded.hash, t0, planning)?;
    let state = match opened {
        Opened::New(state) | Opened::Resumed(state) => state,
        Opened::Changed {
            state,
            content_hash,
            changes,
        } => {
            show_changes(&changes);
            if !(args.accept_changes
                || args.yes
                || ask_yes("Accept the changes (changed steps will run again)?"))
            {
                eprintln!(
                    "nothing was run; re-run with --accept-changes to go on with the changed runbook"
                );
                return Ok(ExitCode::from(1));
            }
            state.accept_changes(runbook, &content_hash, &changes)?;
            state
        }
    };

    let json = args.format == RunFormat::Json;
    let interactive = !json && (args.step || std::io::stdin().is_terminal());
    let reporter = std::sync::Arc::new(
        if json {
            TerminalReporter::json()
        } else {
            TerminalReporter::new(std::io::stdout().is_terminal())
        }
        .asking(interactive),
    );
    let prompter: Box<dyn Prompter> = if interactive {
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
    let controls = Controls::default();
    let outcome = runtime.block_on(async {
        watch_stop_signals(&controls, &reporter);
        engine.run(&state, &controls).await
    });
    // A kind still blocked in a thread after an abort must not hold the
    // coordinator: the state is committed, the process may go.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    reporter.finish();
    let outcome = outcome?;
    let resume = resume_command(args);
    // The closing lines: on stdout as text, on stderr beside JSON events.
    let say = |line: &str| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    if let Some(recap) = reporter.recap() {
        for line in crate::progress::recap_lines(&recap, &command_on_run("export", args)) {
            say(&line);
        }
    }
    let code = match outcome {
        RunOutcome::Completed => {
            say(&format!(
                "run complete: every selected step is done (state: {})",
                path.display()
            ));
            0
        }
        RunOutcome::Stopped => {
            say(&format!("run stopped; `{resume}` resumes it"));
            1
        }
        RunOutcome::Failed { step } => {
            say(&format!(
                "step `{step}` failed; see `{}`; `{resume}` retries it",
                command_on_run("status", args)
            ));
            1
        }
        RunOutcome::Blocked { step, skipped } => {
            say(&format!(
                "step `{step}` depends on skipped step `{skipped}` and was not run: skip it too (--skip {step}) or run it anyway (--force {step})"
            ));
            1
        }
        RunOutcome::NotReady { step, missing } => {
            say(&format!(
                "--only {step}: step `{missing}` it depends on is not done"
            ));
            1
        }
    };
    Ok(ExitCode::from(code))
}
