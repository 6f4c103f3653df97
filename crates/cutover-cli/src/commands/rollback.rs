//! `cutover rollback` (being built).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {}

pub fn run(_args: RollbackArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cutover rollback` is not built yet")
}
