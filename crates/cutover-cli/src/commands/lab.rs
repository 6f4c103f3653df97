//! `cutover lab`: build the world a runbook needs (`up`, served by a background process, in
//! network namespaces of its own where the machine allows) and tear it down (`down`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cutover_lab::background::{self, Stopped};
use cutover_lab::network::NETWORK_FILE;
use cutover_lab::{INTERNAL_DIR, Lab, LabOptions, MANIFEST_FILE, Network, NetworkRequest};
use cutover_lang::{Runbook, load_file, render_human};

/// Build (or tear down) the world a runbook needs, on this machine.
///
/// `cutover lab up FILE` chooses free addresses for the lab and builds: a DNS primary for
/// each zone and a lagging secondary at each other `verify` server, serving the records the
/// runbook's DNS steps expect; the zone keys; a TCP listener for every port the runbook checks
/// open (HTTP answers name the host); each host's folder with the images and SQLite databases
/// its copy and sync steps read; and for each PostgreSQL or MariaDB server a `db.sync` names, a
/// real one (Debian's `postgresql` or `mariadb-server`, run as the package's user, its data in
/// DIR/.lab/databases) at the host's lab address with the runbook's logins (passwords from
/// where the runbook points; a missing `file:` gets a fresh one), each source database filled
/// and written to until the step's `freeze` step is done. Where the machine allows (root), every site gets a network
/// namespace joined to the others by links shaped to the runbook's `link` bandwidth, and hosts
/// whose files are copied get an agent there, so copies cross the shaped links; elsewhere the
/// lab uses a free loopback block, unshaped. The runbook's addresses (which must be loopback)
/// are mapped to the lab's in the copy written to DIR: run that copy. What was chosen goes to
/// `DIR/network.json`, where everything is to `DIR/lab.json`.
///
/// Example: `cutover lab up fixtures/lab/maemo-2013.runbook --dir /tmp/lab --fresh`, then
/// `cutover run /tmp/lab/maemo-2013.runbook --t0 now`, then `cutover lab down --dir /tmp/lab`.
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
    /// Relay stdin/stdout to a lab host's agent (what a lab host's `via agent` line runs).
    #[command(hide = true)]
    Relay(RelayArgs),
}

#[derive(Debug, clap::Args)]
struct RelayArgs {
    /// The agent's address in its namespace.
    address: std::net::SocketAddr,
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
    /// Build from scratch: forget DNS changes, files written by an earlier run in DIR and its
    /// state file, so the next `cutover run` is a new run.
    #[arg(long)]
    fresh: bool,
    /// Use a loopback block even where network namespaces could be made (links unshaped).
    #[arg(long)]
    loopback: bool,
    /// Shape the links to the runbook's `link` bandwidth times this (e.g. `0.5`); the lab's
    /// copy of the runbook states the scaled bandwidth, so plans match the lab.
    #[arg(long, value_name = "FACTOR", default_value = "1", value_parser = parse_scale)]
    link_scale: f64,
    /// Delay added each way on every site's link (e.g. `5ms`).
    #[arg(long, value_name = "DURATION", default_value = "1ms", value_parser = parse_latency)]
    latency: Duration,
    /// The lab's address block (`10.X.Y.0/24`, or `127.X.Y.0/24` for loopback) instead of a
    /// free one.
    #[arg(long, value_name = "CIDR")]
    subnet: Option<String>,
    /// `text`: a summary; `json`: the manifest.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LabFormat::Text)]
    format: LabFormat,
    /// `--format json` (its older spelling).
    #[arg(long, hide = true)]
    json: bool,
    /// Stop the lab by itself after this long (e.g. `2h`); by default it runs until `lab down`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    stop_after: Option<Duration>,
    /// How long to wait for the lab to be ready.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    ready_timeout: Duration,
}

/// `cutover lab up --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LabFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct DownArgs {
    /// The lab folder given to `lab up`.
    #[arg(long, value_name = "DIR", default_value = "cutover-lab")]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The runbook as written (its copy in the lab's internal folder).
    file: PathBuf,
    /// The lab folder.
    #[arg(long)]
    dir: PathBuf,
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

fn parse_latency(text: &str) -> Result<Duration, String> {
    match text.strip_suffix("ms") {
        Some(ms) => ms
            .parse::<f64>()
            .ok()
            .filter(|ms| ms.is_finite() && *ms >= 0.0 && *ms <= 10_000.0)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .ok_or_else(|| format!("`{text}` is not a latency (write it like `5ms`)")),
        None => parse_duration(text),
    }
}

fn parse_scale(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0)
        .ok_or_else(|| format!("`{text}` is not a link scale (a number above 0, like `0.5`)"))
}

pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::Up(args) => up(args),
        LabCommand::Down(args) => down(args),
        LabCommand::ServeInternal(args) => serve(args),
        LabCommand::Relay(args) => {
            cutover_lab::relay::relay(args.address)
                .with_context(|| format!("lab relay to {}", args.address))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads a runbook, printing its diagnostics; `None` when it has errors.
fn load(file: &Path) -> Option<(Runbook, cutover_lang::SourceMap)> {
    let loaded = load_file(file);
    if loaded.error_count() > 0 {
        let color = super::use_color(super::Stream::Stderr);
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
    if let Some(manifest) = background::running(&dir) {
        anyhow::bail!(
            "a lab is already running in {} (process {}); stop it with `cutover lab down --dir {}`",
            dir.display(),
            manifest.pid,
            dir.display()
        );
    }
    // The runbook as written, for the lab process; the lab's copy, for `cutover run`.
    let original = copy_runbook(
        &args.file,
        &sources,
        &dir.join(INTERNAL_DIR).join("runbook"),
    )?;
    let program =
        std::env::current_exe().context("cannot find the cutover binary to start the lab")?;
    let request = NetworkRequest {
        namespaces: !args.loopback,
        link_scale: args.link_scale,
        latency: args.latency,
        subnet: args.subnet.clone(),
        relay_program: Some(program.clone()),
    };
    let network = Network::establish(&runbook, &dir, &request)?;
    let started = (|| {
        let copy = write_lab_copy(&args.file, &runbook, &sources, &network, &program, &dir)?;
        network.write()?;
        if args.fresh {
            remove_state(&dir, &runbook.name)?;
        }
        let mut child_args = vec![
            "lab".to_string(),
            background::SERVE_MARKER.to_string(),
            original.display().to_string(),
            "--dir".to_string(),
            dir.display().to_string(),
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
        anyhow::Ok((copy, manifest))
    })();
    let (copy, manifest) = match started {
        Ok(started) => started,
        Err(err) => {
            // Nothing half-built: no database servers, no namespaces, no claim, no record of
            // a lab.
            let _ = cutover_lab::databases::remove_leftovers(&dir.join(INTERNAL_DIR));
            let _ = network.teardown();
            let _ = std::fs::remove_file(dir.join(NETWORK_FILE));
            return Err(err);
        }
    };
    if args.json || args.format == LabFormat::Json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", manifest.describe());
    println!("manifest: {}", dir.join(MANIFEST_FILE).display());
    println!("network:  {}", dir.join(NETWORK_FILE).display());
    if let Some(reason) = &network.fallback {
        println!(
            "note: network namespaces cannot be made here ({reason}); the lab is on loopback and its links are not shaped"
        );
    }
    for key in &manifest.keys {
        if let Some(instruction) = key.instruction() {
            println!("before `cutover run`: {instruction}");
        }
    }
    println!("next: cutover run {} --t0 now", copy.display());
    println!("stop: cutover lab down --dir {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the lab's copy of the runbook (and of the files it includes) into `dir`, with the
/// lab's addresses; returns the copy of the runbook.
fn write_lab_copy(
    file: &Path,
    runbook: &Runbook,
    sources: &cutover_lang::SourceMap,
    network: &Network,
    program: &Path,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let home = file.parent().unwrap_or(Path::new("."));
    let texts = cutover_lab::rewrite_sources(runbook, sources, network, Some(program));
    let mut copy = None;
    for (source, text) in sources.files.iter().zip(texts) {
        let relative = source.path.strip_prefix(home).with_context(|| {
            format!(
                "{} is included from outside the runbook's folder; the lab copies only that folder",
                source.path.display()
            )
        })?;
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let temporary = target.with_extension("lab-tmp");
        std::fs::write(&temporary, text)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        copy.get_or_insert(target);
    }
    copy.context("the runbook has no source file")
}

/// Removes the state file of the runbook `name` in the lab folder, so the next run is new.
fn remove_state(dir: &Path, name: &str) -> anyhow::Result<()> {
    let state = dir.join(".cutover");
    let base = format!("{name}.db");
    let entries = match std::fs::read_dir(&state) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", state.display())),
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name == base || file_name.starts_with(&format!("{base}-")) {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    let stopped = background::stop(&args.dir, Duration::from_secs(10))?;
    if let Ok(network) = Network::read(&args.dir) {
        network.teardown()?;
    }
    match stopped {
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
    let dir = args.dir;
    let network = Network::read(&dir)?;
    network.adopt(std::process::id())?;
    let options = LabOptions {
        lag: args.lag,
        fresh: args.fresh,
        runbook_file: Some(args.file.clone()),
        network: Some(network.clone()),
        ..LabOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
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
    });
    // The lab's namespaces go with it, however it ended.
    drop(runtime);
    let removed = network.teardown();
    served?;
    removed?;
    Ok(ExitCode::SUCCESS)
}
