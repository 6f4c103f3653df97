//! `cutover completions`: the shell completion script, generated from the
//! same clap definitions that parse the command line, so it never lags
//! behind a new command or option.

use clap::CommandFactory as _;
use clap_complete::Shell;
use std::process::ExitCode;

/// Print the shell completion script for `cutover`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Examples:\n  cutover completions bash > ~/.local/share/bash-completion/completions/cutover\n  cutover completions zsh > ~/.zfunc/_cutover\n  cutover completions fish > ~/.config/fish/completions/cutover.fish"
)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut super::Cli::command(),
        "cutover",
        &mut script,
    );
    super::print_bytes(&script)?;
    Ok(ExitCode::SUCCESS)
}
