//! `cutover agent`: the far end of an image copy or database sync, and the
//! place a check `from` its host connects from. The coordinator starts it
//! (directly, or through ssh the way rsync starts its server) and speaks the
//! agent protocol over its stdin/stdout.

use std::path::PathBuf;
use std::process::ExitCode;

/// Serve the agent protocol on stdin/stdout for files under a root.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Examples:\n  cutover agent --stdio --root /srv\n  ssh -p 2222 root@host cutover agent --stdio --root /srv/images"
)]
pub struct AgentArgs {
    /// Speak the protocol on stdin/stdout (the only transport).
    #[arg(long, required = true)]
    pub stdio: bool,
    /// Serve only files under this folder: every path is taken from it
    /// (`/srv/a` is DIR/srv/a); paths that lead out are refused.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    match cutover_copy::agent::serve_stdio(&args.root) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) => {
            eprintln!("cutover agent: {err}");
            Ok(ExitCode::from(2))
        }
    }
}
