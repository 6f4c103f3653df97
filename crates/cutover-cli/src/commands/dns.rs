//! `cutover dns` (being built).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DnsArgs {}

pub fn run(_args: DnsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cutover dns` is not built yet")
}
