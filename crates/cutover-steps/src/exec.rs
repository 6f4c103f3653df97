//! `exec [on HOST|GROUP] "COMMAND"`: runs a shell command locally (no `on`),
//! in a `via local ROOT` host's folder, or on a `via ssh` host as
//! `ssh user@host -- COMMAND`. Output goes to the event log, bounded. An
//! `exec` cannot observe its own effect: its `verify` lines say whether it
//! is done (as a `verify` line, an `exec` runs its command and passes on
//! exit 0).

use crate::wrong_action;
use cutover_engine::{ActionRole, BoxFuture, Check, Evidence, StepContext, StepKind, bounded};
use cutover_lang::{ActionKind, HostId, Transport};
use std::process::Stdio;
use tokio::process::Command;

pub struct Exec;

/// Output kept in evidence (the event log keeps more).
const EVIDENCE_OUTPUT: usize = 512;

fn command_for(
    ctx: &StepContext<'_>,
    host: Option<HostId>,
    script: &str,
) -> anyhow::Result<(String, Command)> {
    let Some(id) = host else {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).current_dir(ctx.runbook_dir());
        return Ok(("local".to_owned(), cmd));
    };
    let host = ctx.runbook.host(id);
    match &host.transport {
        Transport::Local { root } => {
            let dir = ctx.runbook_dir().join(root);
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(script).current_dir(dir);
            Ok((host.name.clone(), cmd))
        }
        Transport::Ssh {
            user,
            host: address,
            port,
        } => {
            let mut cmd = Command::new("ssh");
            cmd.args(["-o", "BatchMode=yes"]);
            if let Some(port) = port {
                cmd.arg("-p").arg(port.to_string());
            }
            cmd.arg(format!("{user}@{address}")).arg("--").arg(script);
            Ok((host.name.clone(), cmd))
        }
        Transport::Agent { .. } => anyhow::bail!(
            "host `{}` is reached through an agent, which does not run commands; give it `via ssh` or `via local`",
            host.name
        ),
    }
}

/// Runs the command on every target in turn; stops at the first failure.
async fn run_all(ctx: &StepContext<'_>, log: bool) -> anyhow::Result<Result<Evidence, Evidence>> {
    let ActionKind::Exec { on, command } = &ctx.action.kind else {
        return Err(wrong_action("exec", &ctx.action.kind));
    };
    let hosts: Vec<Option<HostId>> = if on.is_empty() {
        vec![None]
    } else {
        on.iter().copied().map(Some).collect()
    };
    let mut results = Vec::new();
    for host in hosts {
        let (label, mut cmd) = command_for(ctx, host, command)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start the command on {label}: {e}"))?;
        let output = tokio::select! {
            out = child.wait_with_output() => out.map_err(|e| anyhow::anyhow!("the command on {label}: {e}"))?,
            () = ctx.cancel.cancelled() => anyhow::bail!("interrupted"),
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if log {
            if !stdout.is_empty() {
                ctx.log_output(&format!("stdout on {label}"), &stdout)?;
            }
            if !stderr.is_empty() {
                ctx.log_output(&format!("stderr on {label}"), &stderr)?;
            }
        }
        let code = output.status.code();
        let data = serde_json::json!({
            "on": label,
            "exit": code,
            "stdout": bounded(&stdout, EVIDENCE_OUTPUT),
            "stderr": bounded(&stderr, EVIDENCE_OUTPUT),
        });
        if !output.status.success() {
            let why = code.map_or_else(
                || "was killed by a signal".to_owned(),
                |c| format!("exited {c}"),
            );
            let first_line = stderr.lines().next().unwrap_or("").trim();
            let summary = if first_line.is_empty() {
                format!("`{command}` on {label} {why}")
            } else {
                format!("`{command}` on {label} {why}: {first_line}")
            };
            return Ok(Err(Evidence::new(summary, data)));
        }
        results.push((label, data));
    }
    let labels: Vec<&str> = results.iter().map(|(l, _)| l.as_str()).collect();
    Ok(Ok(Evidence::new(
        format!("`{command}` exited 0 on {}", labels.join(", ")),
        serde_json::Value::Array(results.into_iter().map(|(_, d)| d).collect()),
    )))
}

impl StepKind for Exec {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, anyhow::Result<Check>> {
        Box::pin(async move {
            if ctx.role != ActionRole::Verify {
                return Ok(Check::Unobservable);
            }
            Ok(match run_all(ctx, false).await? {
                Ok(e) => Check::Satisfied(e),
                Err(e) => Check::NotYet(e),
            })
        })
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, anyhow::Result<Evidence>> {
        Box::pin(async move {
            match run_all(ctx, true).await? {
                Ok(e) => Ok(e),
                Err(e) => Err(anyhow::anyhow!(e.summary)),
            }
        })
    }

    fn verify<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, anyhow::Result<Check>> {
        Box::pin(async { Ok(Check::Unobservable) })
    }
}
