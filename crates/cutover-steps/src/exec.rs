//! `exec [on HOST|GROUP] "COMMAND" [env NAME, ...]`: runs a shell command
//! locally (no `on`), in a `via local ROOT` host's folder, or on a `via ssh`
//! host as `ssh user@host -- COMMAND`. Output goes to the event log, bounded,
//! with every known secret masked. An `exec` cannot observe its own effect:
//! its `verify` lines say whether it is done (as a `verify` line, an `exec`
//! runs its command and passes on exit 0).
//!
//! What a command gets, and how it is stopped:
//! - **Environment**: cleared, then `PATH`, `HOME`, `LANG`, `LC_*`, `TERM`
//!   (and `SSH_AUTH_SOCK` for the `ssh` process) plus the variables the
//!   runbook names with `env` ([`cutover_copy::agent::child_env`]). The
//!   coordinator's other variables, where `env:` key secrets live, are not
//!   handed on.
//! - **Process group**: the command leads its own group, so a Ctrl-C at
//!   the terminal does not reach it or its children. When the kind is
//!   cancelled (the second Ctrl-C) the whole group is killed: `SIGTERM`,
//!   then `SIGKILL` after [`KILL_GRACE`].
//! - **Time**: the step's `timeout` bounds the command (a `verify` line's
//!   command is bounded by the engine's default too): on expiry the group
//!   is killed and the attempt fails with "`CMD` on HOST did not finish
//!   within T".

use crate::wrong_action;
use cutover_copy::agent::{GroupSignal, KILL_GRACE, child_env, signal_group};
use cutover_engine::{
    ActionRole, BoxFuture, Check, Evidence, Interrupted, StepContext, StepError, StepKind,
    StepResult, bounded, describe_duration,
};
use cutover_lang::{ActionKind, HostId, Transport};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

pub struct Exec;

/// Output kept in evidence (the event log keeps more).
const EVIDENCE_OUTPUT: usize = 512;

/// Output of one stream read into memory; the rest is counted, not kept.
const READ_LIMIT: usize = 4 << 20;

/// A program as the path `PATH` finds it (the name itself where none is
/// found, so the spawn's error names it). Given a path, the standard
/// library starts a command with `posix_spawn`, which shares this
/// process's memory until the `exec`; given a bare name beside a cleared
/// environment it forks, which copies the page tables of a coordinator
/// holding a large run: a third of a 10,000-step fleet's run time.
fn program(name: &str) -> std::path::PathBuf {
    which::which(name).unwrap_or_else(|_| name.into())
}

fn command_for(
    ctx: &StepContext<'_>,
    host: Option<HostId>,
    script: &str,
    env: &[String],
) -> anyhow::Result<(String, Command)> {
    let shell = |dir: std::path::PathBuf| {
        let mut cmd = Command::new(program("sh"));
        cmd.arg("-c")
            .arg(script)
            .current_dir(dir)
            .env_clear()
            .envs(child_env(false, env));
        cmd
    };
    let Some(id) = host else {
        return Ok(("local".to_owned(), shell(ctx.runbook_dir().to_path_buf())));
    };
    let host = ctx.runbook.host(id);
    match &host.transport {
        Transport::Local { root } => Ok((host.name.clone(), shell(ctx.runbook_dir().join(root)))),
        Transport::Ssh {
            user,
            host: address,
            port,
        } => {
            let mut cmd = Command::new(program("ssh"));
            cmd.env_clear().envs(child_env(true, env));
            cmd.args(["-o", "BatchMode=yes"]);
            if let Some(port) = port {
                cmd.arg("-p").arg(port.to_string());
            }
            // ssh hands on no local variables without `SendEnv` (which
            // the server must accept): the named ones are set for the
            // remote command in front of it instead.
            let remote = remote_script(script, env);
            cmd.arg(format!("{user}@{address}")).arg("--").arg(remote);
            Ok((host.name.clone(), cmd))
        }
        Transport::Agent { .. } => anyhow::bail!(
            "host `{}` is reached through an agent, which does not run commands; give it `via ssh` or `via local`",
            host.name
        ),
    }
}

/// The script run by the far shell: `NAME='value' ...; export NAME ...`
/// before the command for every named variable that is set here.
fn remote_script(script: &str, env: &[String]) -> String {
    let mut prefix = String::new();
    for name in env {
        if let Ok(value) = std::env::var(name) {
            prefix.push_str(&format!("{name}={}; export {name}; ", shell_quote(&value)));
        }
    }
    format!("{prefix}{script}")
}

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Reads a stream to its end, keeping the first [`READ_LIMIT`] bytes;
/// returns them and the total.
async fn read_bounded(stream: Option<impl AsyncRead + Unpin>) -> (Vec<u8>, usize) {
    let Some(mut stream) = stream else {
        return (Vec::new(), 0);
    };
    let mut kept = Vec::new();
    let mut total = 0;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                let room = READ_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
    (kept, total)
}

/// Kills the group `child` leads: `SIGTERM`, then `SIGKILL` for whatever
/// is left after [`KILL_GRACE`] (or as soon as the leader is gone), and
/// reaps the leader. Takes at most about `KILL_GRACE` plus a moment.
async fn kill_group(child: &mut Child) {
    let Some(pgid) = child.id() else {
        // Already reaped: its group may still hold children.
        return;
    };
    if signal_group(pgid, GroupSignal::Terminate).is_err() {
        let _ = child.start_kill();
    }
    let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
    // The leader's pid stays the group's id while any member lives, so
    // this addresses only what is left of the group (ESRCH when nothing).
    let _ = signal_group(pgid, GroupSignal::Kill);
    let _ = child.start_kill();
    let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
}

/// How one command ended.
enum Ended {
    Exited(ExitStatus, (Vec<u8>, usize), (Vec<u8>, usize)),
    Cancelled,
    TimedOut,
}

/// The bound on one command: the step's `timeout`; for a `verify` line
/// (a probe polled by the engine) also the engine's default.
fn time_limit(ctx: &StepContext<'_>) -> Option<Duration> {
    match (ctx.step_def().timeout, ctx.role) {
        (Some(t), _) => Some(t),
        (None, ActionRole::Verify) => Some(ctx.options.default_timeout),
        (None, _) => None,
    }
}

/// Runs the command on every target in turn; stops at the first failure.
async fn run_all(ctx: &StepContext<'_>, log: bool) -> anyhow::Result<Result<Evidence, Evidence>> {
    let ActionKind::Exec { on, command, env } = &ctx.action.kind else {
        return Err(wrong_action("exec", &ctx.action.kind));
    };
    // Locally once without `on`; else each host in turn, groups expanded.
    let local = on.is_empty().then_some(None);
    let hosts = local.into_iter().chain(on.iter().map(Some));
    let limit = time_limit(ctx);
    let mut results = Vec::new();
    for host in hosts {
        let (label, mut cmd) = command_for(ctx, host, command, env)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        ctx.may_start_effect()?;
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start the command on {label}: {e}"))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let deadline = limit.map(|l| Instant::now() + l);
        let ended = {
            let finished = async {
                let (status, out, err) =
                    tokio::join!(child.wait(), read_bounded(stdout), read_bounded(stderr));
                (status, out, err)
            };
            let expired = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                (status, out, err) = finished => {
                    let status = status.map_err(|e| anyhow::anyhow!("the command on {label}: {e}"))?;
                    Ended::Exited(status, out, err)
                }
                () = ctx.cancel.cancelled() => Ended::Cancelled,
                () = expired => Ended::TimedOut,
            }
        };
        let (status, (out, out_total), (err, err_total)) = match ended {
            Ended::Exited(status, out, err) => (status, out, err),
            Ended::Cancelled => {
                kill_group(&mut child).await;
                return Err(Interrupted.into());
            }
            Ended::TimedOut => {
                kill_group(&mut child).await;
                let within = limit.map_or_else(String::new, describe_duration);
                let summary = ctx.mask(&format!(
                    "`{command}` on {label} did not finish within {within}"
                ));
                let data = serde_json::json!({ "on": label, "exit": null, "timed_out": true });
                return Ok(Err(Evidence::new(summary, data)));
            }
        };
        // Mask before anything is cut, so no part of a secret survives a cut.
        let stdout = ctx.mask(&String::from_utf8_lossy(&out));
        let stderr = ctx.mask(&String::from_utf8_lossy(&err));
        if log {
            if out_total > 0 {
                ctx.log_output(&format!("stdout on {label}"), &stdout)?;
            }
            if err_total > 0 {
                ctx.log_output(&format!("stderr on {label}"), &stderr)?;
            }
        }
        let code = status.code();
        let data = serde_json::json!({
            "on": label,
            "exit": code,
            "stdout": bounded(&stdout, EVIDENCE_OUTPUT),
            "stderr": bounded(&stderr, EVIDENCE_OUTPUT),
        });
        if !status.success() {
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
            return Ok(Err(Evidence::new(ctx.mask(&summary), data)));
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
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
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

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async move {
            match run_all(ctx, true).await? {
                Ok(e) => Ok(e),
                Err(e) => Err(StepError::from(anyhow::anyhow!(e.summary))),
            }
        })
    }

    fn verify<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async { Ok(Check::Unobservable) })
    }
}
