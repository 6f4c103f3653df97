//! `cutover confirm`: confirm a manual step from another terminal while
//! `cutover run` waits for it. Who (the login user) and when are recorded.

use super::status::resolve_state;
use cutover_store::Store;
use std::path::PathBuf;
use std::process::ExitCode;

/// Confirm a manual step of a running (or stopped) run.
///
/// Example: `cutover confirm freeze move.runbook --note "all 8 servers read-only"`
#[derive(Debug, clap::Args)]
pub struct ConfirmArgs {
    /// The manual step to confirm.
    #[arg(value_name = "STEP")]
    pub step: String,
    /// The runbook (its default state file is used).
    #[arg(value_name = "FILE", required_unless_present = "state")]
    pub file: Option<PathBuf>,
    /// The state file.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// A note kept with the confirmation.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

pub fn run(args: ConfirmArgs) -> anyhow::Result<ExitCode> {
    let path = resolve_state(args.file.as_deref(), args.state.as_deref())?;
    let store = Store::open_existing(&path)?;
    let Some(run) = store.latest_run()? else {
        anyhow::bail!("{} holds no run", path.display());
    };
    let Some(step) = store
        .steps(run.id)?
        .into_iter()
        .find(|s| s.name == args.step)
    else {
        anyhow::bail!("the run in {} has no step `{}`", path.display(), args.step);
    };
    if !step
        .definition
        .lines()
        .nth(1)
        .is_some_and(|l| l.trim_start().starts_with("manual "))
    {
        anyhow::bail!(
            "step `{}` is not a manual step; only manual steps are confirmed",
            args.step
        );
    }
    let user = cutover_store::current_user();
    store.confirm(run.id, &args.step, &user, args.note.as_deref())?;
    println!("confirmed `{}` as {user}", args.step);
    Ok(ExitCode::SUCCESS)
}
