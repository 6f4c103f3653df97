//! `cutover serve`: a read-only live web dashboard of a run, for the team
//! watching a cutover from a laptop or a phone.

use super::run::locate;
use cutover_dashboard::serve;
use cutover_report::live::Source;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Serve a read-only live dashboard of a run.
///
/// The page shows each step with its state, timings, progress and
/// countdowns, its evidence on click, and the planned-vs-actual timeline,
/// and updates itself every second while the run goes on. The state file
/// is only read (a request reads it again when it changed since the last
/// one). It may be started before the run: the page waits for it.
///
/// It listens on loopback only unless --allow-remote is given; it has no
/// authentication, so put it behind an SSH tunnel rather than opening it.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Examples:\n  cutover serve\n  cutover serve runbooks/maemo-2013.runbook\n  cutover serve --state .cutover/maemo-2013.db --listen 127.0.0.1:8470"
)]
pub struct ServeArgs {
    /// The runbook; its state file is `.cutover/NAME.db` beside it (NAME
    /// from its `runbook NAME` line) unless --state says otherwise.
    /// Default: the one runbook in the current folder.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The state file of the run.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Address and port to listen on (port 0: any free port; the address
    /// is printed).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8470")]
    pub listen: SocketAddr,
    /// Allow listening on an address other than loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Stop after this many seconds (scripts and tests); default: until Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    pub exit_after: Option<u64>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        anyhow::bail!(
            "--listen {} is not a loopback address; the dashboard has no authentication (use an SSH tunnel, or --allow-remote)",
            args.listen
        );
    }
    // Read once here so that a runbook with errors is refused at the start;
    // the dashboard reads it again whenever it changes.
    let located = locate(args.file.as_deref(), args.state.as_deref())?;
    let state = located.state;
    let source = match located.runbook {
        Some((file, _)) => Source::with_runbook_file(state.clone(), file),
        None => Source::new(state.clone(), None),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        let address = listener.local_addr()?;
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(
                stdout,
                "dashboard of {} at http://{address}/",
                state.display()
            )?;
            stdout.flush()?;
        }
        let exit_after = args.exit_after;
        let shutdown = async move {
            let timer = async {
                match exit_after {
                    Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = timer => {}
            }
        };
        serve(listener, source, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
