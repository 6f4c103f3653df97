//! `cutover lab`: build the loopback world a runbook needs (`up`, served by a background
//! process) and tear it down (`down`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cutover_lab::background::{self, Stopped};
use cutover_lab::{Lab, LabOptions, MANIFEST_FILE};
use cutover_lang::{Runbook, load_file, render_human};

/// Build (or tear down) the loopback world a runbook needs.
///
/// `cutover lab up FILE` copies the runbook into the lab folder and builds, on this machine:
/// a DNS primary for each zone at its `primary` address and a lagging secondary at each other
/// `verify` address, serving the records the runbook's DNS steps expect; the zone keys; a TCP
/// listener for every port the runbook checks open (HTTP answers name the host); and each
/// host's folder with the images and databases its copy and sync steps read. Every address
/// must be loopback. Where everything is goes to `DIR/lab.json`.
///
/// Example: `cutover lab up fixtures/lab/maemo-2013.runbook --dir /tmp/lab`, then
/// `cutover run /tmp/lab/maemo-2013.runbook`, then `cutover lab down --dir /tmp/lab`.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// Build the lab for a runbook and serve it in the background.
    Up(UpArgs),
    /// Stop the lab served from a folder.
    Down(DownArgs),
    /// Serve the lab in this process until SIGTERM (what `up` starts in the background).
    #[command(name = "serve-internal", hide = true)]
    ServeInternal(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// The runbook to build the lab for.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The lab folder: the runbook is copied here and host folders and keys are made here.
    #[arg(long, value_name = "DIR", default_value = "cutover-lab")]
    dir: PathBuf,
    /// How long the secondaries lag behind the primary (e.g. `5s`, `0s`).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    lag: Duration,
    /// Build from scratch: forget DNS changes and files written by an earlier run in DIR.
    #[arg(long)]
    fresh: bool,
    /// Print the manifest as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    /// Stop the lab by itself after this long (e.g. `2h`); by default it runs until `lab down`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    stop_after: Option<Duration>,
    /// How long to wait for the lab to be ready.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    ready_timeout: Duration,
}

#[derive(Debug, clap::Args)]
struct DownArgs {
    /// The lab folder given to `lab up`.
    #[arg(long, value_name = "DIR", default_value = "cutover-lab")]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The runbook, already in the lab folder.
    file: PathBuf,
    #[arg(long, value_parser = parse_duration)]
    lag: Duration,
    #[arg(long)]
    fresh: bool,
    #[arg(long, value_parser = parse_duration)]
    stop_after: Option<Duration>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    cutover_lang::units::parse_duration(text)
}

pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::Up(args) => up(args),
        LabCommand::Down(args) => down(args),
        LabCommand::ServeInternal(args) => serve(args),
    }
}

/// Loads a runbook, printing its diagnostics; `None` when it has errors.
fn load(file: &Path) -> Option<(Runbook, cutover_lang::SourceMap)> {
    let loaded = load_file(file);
    if loaded.error_count() > 0 {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        eprint!(
            "{}",
            render_human(&loaded.sources, &loaded.diagnostics, color)
        );
        return None;
    }
    loaded.runbook.map(|runbook| (runbook, loaded.sources))
}

/// Copies the runbook and the files it includes into `dir`, keeping their layout; returns
/// the copy of the runbook.
fn copy_runbook(
    file: &Path,
    sources: &cutover_lang::SourceMap,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let home = file.parent().unwrap_or(Path::new("."));
    let name = file.file_name().context("the runbook path names no file")?;
    let target = dir.join(name);
    let same_folder = match (std::fs::canonicalize(home), std::fs::canonicalize(dir)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same_folder {
        return Ok(target);
    }
    for source in &sources.files {
        let relative = source.path.strip_prefix(home).with_context(|| {
            format!(
                "{} is included from outside the runbook's folder; the lab copies only that folder",
                source.path.display()
            )
        })?;
        let copy = dir.join(relative);
        if let Some(parent) = copy.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&copy, &source.text)
            .with_context(|| format!("cannot write {}", copy.display()))?;
    }
    Ok(target)
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let Some((runbook, sources)) = load(&args.file) else {
        return Ok(ExitCode::from(1));
    };
    // Refuse what the lab cannot build before anything is copied or started.
    cutover_lab::Blueprint::from_runbook(&runbook, &args.dir)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("cannot resolve {}", args.dir.display()))?;
    let copy = copy_runbook(&args.file, &sources, &dir)?;

    let program =
        std::env::current_exe().context("cannot find the cutover binary to start the lab")?;
    let mut child_args = vec![
        "lab".to_string(),
        background::SERVE_MARKER.to_string(),
        copy.display().to_string(),
        "--lag".to_string(),
        format!("{}s", args.lag.as_secs()),
    ];
    if args.fresh {
        child_args.push("--fresh".into());
    }
    if let Some(stop_after) = args.stop_after {
        child_args.extend([
            "--stop-after".to_string(),
            format!("{}s", stop_after.as_secs()),
        ]);
    }
    let manifest = background::start_detached(&program, &child_args, &dir, args.ready_timeout)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", manifest.describe());
    println!("manifest: {}", dir.join(MANIFEST_FILE).display());
    for key in &manifest.keys {
        if let Some(instruction) = key.instruction() {
            println!("before `cutover run`: {instruction}");
        }
    }
    println!("next: cutover run {}", copy.display());
    println!("stop: cutover lab down --dir {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    match background::stop(&args.dir, Duration::from_secs(10))? {
        Stopped::Stopped { pid } => {
            println!("lab in {} stopped (process {pid})", args.dir.display())
        }
        Stopped::Killed { pid } => println!(
            "lab in {} killed (process {pid} ignored SIGTERM)",
            args.dir.display()
        ),
        Stopped::NotRunning => println!("no lab running in {}", args.dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let Some((runbook, _)) = load(&args.file) else {
        return Ok(ExitCode::from(1));
    };
    let dir = args.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let options = LabOptions {
        lag: args.lag,
        fresh: args.fresh,
        runbook_file: Some(args.file.clone()),
        ..LabOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let lab = Lab::start(&runbook, &dir, options).await?;
        let manifest = lab.write_manifest()?;
        eprintln!("lab ready: {}", manifest.display());
        let lifetime = async {
            match args.stop_after {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            () = lifetime => eprintln!("lab lifetime of {}s is over", args.stop_after.unwrap_or_default().as_secs()),
        }
        eprintln!("lab stopping");
        lab.shutdown().await?;
        if cutover_lab::Manifest::read(&dir).is_ok_and(|m| m.pid == std::process::id()) {
            let _ = std::fs::remove_file(dir.join(MANIFEST_FILE));
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
