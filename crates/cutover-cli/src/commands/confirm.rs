//! `cutover confirm`: confirm a manual gate from another terminal while
//! `cutover run` waits at it. Who (the login user, or `--operator`) and when are recorded. A
//! confirmation belongs to a waiting gate: one for a gate the run has not
//! reached is refused unless given with `--ahead` (recorded as such and
//! shown when the run reaches the gate); a done step or a finished run is
//! never confirmed.

use super::run::{OperatorArgs, did_you_mean, locate};
use cutover_store::{GateRefusal, Phase, StepStatus, Store, StoreError};
use std::path::PathBuf;
use std::process::ExitCode;

/// Confirm a manual gate the running `cutover run` waits at.
///
/// Refused when the gate is not waiting (the run has not reached it, or no
/// coordinator is running it), unless `--ahead` is given; always refused
/// for a done step or a finished run.
///
/// Examples: `cutover confirm freeze` (the one runbook in the current
/// folder), `cutover confirm freeze move.runbook --note "all 8 servers read-only"`
#[derive(Debug, clap::Args)]
pub struct ConfirmArgs {
    /// The manual step to confirm.
    #[arg(value_name = "STEP")]
    pub step: String,
    /// The runbook; its state file is `.cutover/NAME.db` beside it (NAME
    /// from its `runbook NAME` line) unless --state says otherwise.
    /// Default: the one runbook in the current folder.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The state file.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// A note kept with the confirmation.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Confirm a gate the run has not reached yet: recorded as given ahead,
    /// and shown as such when the run reaches the gate.
    #[arg(long)]
    pub ahead: bool,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

pub fn run(args: ConfirmArgs) -> anyhow::Result<ExitCode> {
    args.operator.apply()?;
    let path = locate(args.file.as_deref(), args.state.as_deref())?.state;
    let store = Store::open_existing(&path)?;
    let Some(run) = store.latest_run()? else {
        anyhow::bail!("{} holds no run", path.display());
    };
    let steps = store.steps(run.id)?;
    let Some(step) = steps.iter().find(|s| s.name == args.step) else {
        anyhow::bail!(
            "the run in {} has no step `{}`{}",
            path.display(),
            args.step,
            did_you_mean(&args.step, steps.iter().map(|s| s.name.as_str()))
        );
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
    match store.confirm_gate(run.id, &args.step, &user, args.note.as_deref(), args.ahead) {
        Ok(_) if args.ahead => println!(
            "confirmed `{}` ahead as {user}: when the run reaches the gate it shows it and records it as confirmed ahead",
            args.step
        ),
        Ok(_) => println!("confirmed `{}` as {user}", args.step),
        Err(StoreError::GateRefused { step, refusal }) => {
            eprintln!("error: `{step}` was not confirmed: {refusal}");
            if ahead_would_do(&refusal) && !args.ahead {
                eprintln!(
                    "hint: to confirm it before the run reaches it, add --ahead (recorded and shown as such)"
                );
            }
            return Ok(ExitCode::from(2));
        }
        Err(err) => return Err(err.into()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `--ahead` would have been accepted: the gate is not waiting but
/// not past either (pending, failed, or its run not driven right now).
fn ahead_would_do(refusal: &GateRefusal) -> bool {
    matches!(
        refusal,
        GateRefusal::NotWaiting { status, phase, .. }
            if !matches!((status, phase), (StepStatus::Running, Some(Phase::Verify | Phase::Undo)))
    )
}
