//! `cutover confirm` (being built).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ConfirmArgs {}

pub fn run(_args: ConfirmArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cutover confirm` is not built yet")
}
