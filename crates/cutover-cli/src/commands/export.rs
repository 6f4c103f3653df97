//! `cutover export` (being built).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {}

pub fn run(_args: ExportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cutover export` is not built yet")
}
