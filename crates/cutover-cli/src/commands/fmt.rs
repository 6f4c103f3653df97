//! `cutover fmt` (being built).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct FmtArgs {}

pub fn run(_args: FmtArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cutover fmt` is not built yet")
}
