//! `cutover demo`: the lab version of the 2013 maemo.org move, run end to end on this machine
//! with the same engine, step kinds and progress display as `cutover run`, then its
//! post-mortem report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use cutover_engine::{
    BoxFuture, Controls, Decision, Engine, Opened, Prompter, RunOptions, RunOutcome, open_run,
};
use cutover_lab::{Lab, LabOptions, Network, NetworkRequest};
use cutover_lang::Step;
use cutover_report::{Format, Report, read_snapshot, render};
use cutover_store::Store;

use crate::commands::run::{load_runbook, release_lock, state_path, take_lock, watch_stop_signals};
use crate::progress::TerminalReporter;

/// The demo runbook, built into the binary so the demo runs from any folder.
const RUNBOOK: &str = include_str!("../../../../fixtures/demo/maemo-2013.runbook");
const RUNBOOK_FILE: &str = "maemo-2013.runbook";
/// Marks a folder as the demo's own, so a later demo may clear it.
const MARKER: &str = ".cutover-demo";
/// How late the lab's public secondary follows the hidden primary.
const SECONDARY_LAG: Duration = Duration::from_secs(3);

/// Run the demo cutover on the embedded lab and write its report.
///
/// Builds the lab for the lab-sized 2013 maemo.org move (a hidden DNS primary and a lagging
/// secondary, old and new hosts, their disk images and database) on a free loopback block
/// of its own, so it runs beside labs and other demos; runs the move end to end with
/// T0 = now (manual gates are confirmed automatically, with the note "demo"), then writes the
/// post-mortem report and prints its path. Takes a minute or two; only loopback addresses
/// are used.
///
/// Example: `cutover demo --dir /tmp/cutover-demo`
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The demo's folder (cleared and rebuilt when it holds an earlier demo).
    #[arg(long, value_name = "DIR", default_value = "cutover-demo")]
    dir: PathBuf,
}

/// Confirms every manual gate at once with the note "demo" and runs every step.
struct DemoPrompter;

impl Prompter for DemoPrompter {
    fn before_step<'a>(&'a self, _step: &'a Step, _what: &'a str) -> BoxFuture<'a, Decision> {
        Box::pin(async { Decision::Run })
    }

    fn confirm_manual<'a>(
        &'a self,
        _step: &'a Step,
        _instructions: &'a str,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { Some("demo".to_string()) })
    }
}

/// Makes `dir` an empty demo folder: new, empty, or an earlier demo's (then cleared).
fn prepare(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        let earlier_demo = dir.join(MARKER).exists();
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        if !earlier_demo && !empty {
            anyhow::bail!(
                "{} exists and is not a demo folder; give `--dir` a new or empty folder",
                dir.display()
            );
        }
        if earlier_demo {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `cutover demo`; the next demo clears this folder\n",
    )
    .with_context(|| format!("cannot write in {}", dir.display()))?;
    std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = prepare(&args.dir)?;
    let file = dir.join(RUNBOOK_FILE);
    let written = cutover_lang::parse_source(&file, RUNBOOK.to_string());
    let original = match written.runbook {
        Some(runbook) if written.error_count() == 0 => runbook,
        _ => anyhow::bail!("the demo runbook built into this binary has errors"),
    };
    // The demo's own addresses, claimed until it ends; the copy it runs names them.
    let request = NetworkRequest {
        namespaces: false,
        ..NetworkRequest::default()
    };
    let network = Network::establish(&original, &dir, &request)?;
    let result = run_demo(&dir, &file, &original, &written.sources, &network, started);
    let released = network.teardown();
    let code = result?;
    released?;
    Ok(code)
}

/// The demo on its network: writes the copy, builds the lab, runs, reports.
fn run_demo(
    dir: &Path,
    file: &Path,
    original: &cutover_lang::Runbook,
    sources: &cutover_lang::SourceMap,
    network: &Network,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let texts = cutover_lab::rewrite_sources(original, sources, network, None);
    let text = texts.into_iter().next().unwrap_or_default();
    std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
    network.write()?;
    let Some(loaded) = load_runbook(file) else {
        anyhow::bail!("the demo's copy of its runbook has errors");
    };
    let runbook = &loaded.runbook;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;

    println!(
        "cutover demo: {}",
        runbook.title.as_deref().unwrap_or(&runbook.name)
    );
    println!("building the lab in {}", dir.display());
    let lab_options = LabOptions {
        lag: SECONDARY_LAG,
        fresh: true,
        runbook_file: Some(file.to_path_buf()),
        network: Some(network.clone()),
        ..LabOptions::default()
    };
    let lab = runtime.block_on(Lab::start(original, dir, lab_options))?;
    lab.write_manifest()?;
    print!("{}", lab.manifest().describe());
    println!();

    let options = RunOptions {
        parallel: 4,
        runbook_dir: loaded.dir.clone(),
        ..RunOptions::default()
    };
    let state_file = state_path(&loaded, None);
    let store = Store::open(&state_file)?;
    let holder = take_lock(&store, false)?;
    let outcome = (|| {
        let state = match open_run(
            store,
            runbook,
            &file.display().to_string(),
            &loaded.hash,
            Some(Utc::now()),
        )? {
            Opened::New(state) | Opened::Resumed(state) | Opened::Changed { state, .. } => state,
        };
        let reporter = Arc::new(TerminalReporter::new(std::io::stdout().is_terminal()));
        let kinds = cutover_steps::Kinds;
        let engine = Engine {
            runbook,
            kinds: &kinds,
            reporter: reporter.as_ref(),
            prompter: &DemoPrompter,
            options: &options,
        };
        let controls = Controls::default();
        let outcome = runtime.block_on(async {
            watch_stop_signals(&controls, &reporter);
            engine.run(&state, &controls).await
        });
        reporter.finish();
        outcome
    })();
    let released = release_lock(&state_file, &holder);
    let stopped = runtime.block_on(lab.shutdown());
    let outcome = outcome?;
    released?;
    stopped?;

    let snapshot = read_snapshot(&state_file)?;
    let report = Report::build(&snapshot, Some(runbook));
    let report_file = dir.join("report.md");
    std::fs::write(&report_file, render(&report, Format::Markdown))
        .with_context(|| format!("cannot write {}", report_file.display()))?;

    let elapsed = started.elapsed().as_secs();
    let code = match outcome {
        RunOutcome::Completed => {
            println!(
                "demo complete in {}m{:02}s: every step done and verified",
                elapsed / 60,
                elapsed % 60
            );
            0
        }
        other => {
            println!("demo did not complete: {other:?}");
            1
        }
    };
    println!("report: {}", report_file.display());
    println!(
        "state:  {} (try `cutover status {}`)",
        state_file.display(),
        file.display()
    );
    Ok(ExitCode::from(code))
}
