//! `cutover lab` (being built).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct LabArgs {}

pub fn run(_args: LabArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cutover lab` is not built yet")
}
