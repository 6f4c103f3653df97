//! `image.copy` and `db.sync`: delta copies between hosts, verified by
//! content hash (images) or per-table checksums (databases).
//!
//! The copy machinery is synchronous and uses both cores; it runs on a
//! blocking thread while this side forwards its progress to the engine's
//! reporter and turns the engine's cancellation into the copy's stop flag
//! (checked between blocks, so an interrupted copy resumes where it was).

use crate::copy_error;
use cutover_copy::{
    Cancel, CopyOptions, Location, Outcome, Progress, check_image, copy_image, sync_sqlite,
    table_checksums,
};
use cutover_engine::{BoxFuture, Check, Evidence, StepContext, StepError, StepKind, StepResult};
use cutover_lang::{ActionKind, Endpoint, Runbook, Transport};
use cutover_store::Phase;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// The command that serves files on a host reached by ssh.
const REMOTE_AGENT: &str = "cutover agent --stdio --root /";

/// `image.copy HOST:/PATH -> HOST:/PATH`
pub struct ImageCopy;

/// `db.sync sqlite HOST:/PATH -> HOST:/PATH`
pub struct DbSync;

/// Where an endpoint's file is, through its host's transport (relative
/// `via local` roots resolve from the runbook's folder). The host path is
/// taken from the host's root the same way for every transport: by the
/// file side that serves it ([`Location::Rooted`], or the agent's `--root`).
pub(crate) fn location_in(runbook: &Runbook, runbook_dir: &Path, endpoint: &Endpoint) -> Location {
    match &runbook.host(endpoint.host).transport {
        Transport::Local { root } => Location::Rooted {
            root: runbook_dir.join(root),
            path: endpoint.path.clone(),
        },
        Transport::Ssh { user, host, port } => {
            Location::ssh(user, host, *port, REMOTE_AGENT, &endpoint.path)
        }
        Transport::Agent { command } => {
            Location::agent_shell(&runbook.host(endpoint.host).name, command, &endpoint.path)
        }
    }
}

fn endpoints(ctx: &StepContext<'_>) -> anyhow::Result<(Location, Location, String)> {
    let (from, to) = match &ctx.action.kind {
        ActionKind::ImageCopy { from, to, .. } | ActionKind::DbSync { from, to, .. } => (from, to),
        other => return Err(crate::wrong_action("image.copy or db.sync", other)),
    };
    let label = format!(
        "{}:{} -> {}:{}",
        ctx.runbook.host(from.host).name,
        from.path,
        ctx.runbook.host(to.host).name,
        to.path
    );
    Ok((
        location_in(ctx.runbook, ctx.runbook_dir(), from),
        location_in(ctx.runbook, ctx.runbook_dir(), to),
        label,
    ))
}

/// Runs `work` on a blocking thread, forwarding its progress and stopping
/// it when the engine cancels the step; `limit` caps its bandwidth (bytes
/// a second).
async fn run_blocking<T: Send + 'static>(
    ctx: &StepContext<'_>,
    limit: Option<u64>,
    work: impl FnOnce(&CopyOptions<'_>) -> Result<T, cutover_copy::CopyError> + Send + 'static,
) -> StepResult<T> {
    let cancel = Cancel::new();
    let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(Progress::default());
    let stop = cancel.clone();
    let handle = tokio::task::spawn_blocking(move || {
        let report = move |progress: Progress| {
            // The receiver only goes away when the step is being abandoned.
            let _ = progress_tx.send(progress);
        };
        work(&CopyOptions {
            progress: Some(&report),
            cancel: Some(&stop),
            limit,
        })
    });
    tokio::pin!(handle);
    let mut cancelled = false;
    let mut reporting = true;
    let mut forwarded = Progress::default();
    loop {
        tokio::select! {
            joined = &mut handle => {
                // The last report comes with the end of the work, and the
                // end may be seen first: forward it still (the dashboard
                // shows the total).
                let last = *progress_rx.borrow();
                if last != forwarded {
                    ctx.progress_with_eta(last.scanned, Some(last.total), "bytes", last.eta);
                }
                let done = joined
                    .map_err(|e| StepError::from(anyhow::anyhow!("the copy thread failed: {e}")))?;
                return done.map_err(copy_error);
            }
            changed = progress_rx.changed(), if reporting => {
                if changed.is_ok() {
                    forwarded = *progress_rx.borrow_and_update();
                    ctx.progress_with_eta(
                        forwarded.scanned,
                        Some(forwarded.total),
                        "bytes",
                        forwarded.eta,
                    );
                } else {
                    // The work is over; its end is next.
                    reporting = false;
                }
            }
            () = ctx.cancel.cancelled(), if !cancelled => {
                cancel.cancel();
                cancelled = true;
            }
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Copies acted in this process whose verification has not yet taken them:
/// (step, source, destination) and the act's report as recorded.
type Acted = Vec<((String, Location, Location), Value)>;

static ACTED: Mutex<Acted> = Mutex::new(Vec::new());

fn acted() -> std::sync::MutexGuard<'static, Acted> {
    // A panic elsewhere cannot leave the list half-changed.
    ACTED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Compares both images whole (the check standing alone, or a verification
/// without the act's result at hand).
async fn compare(
    ctx: &StepContext<'_>,
    source: Location,
    dest: Location,
    label: &str,
    why: &str,
) -> StepResult<Check> {
    let report = run_blocking(ctx, None, move |_| check_image(&source, &dest)).await?;
    let mut data = serde_json::to_value(&report).map_err(anyhow::Error::from)?;
    data["compared_by"] = json!("re-read");
    Ok(if report.equal {
        Check::Satisfied(Evidence::new(
            format!(
                "{label}: destination equals the source ({}, blake3 {}){why}",
                mib(report.source_size),
                short(&report.source_hash)
            ),
            data,
        ))
    } else {
        let dest = match (report.dest_size, &report.dest_hash) {
            (None, _) => "missing".to_string(),
            (Some(size), Some(hash)) => format!("{} blake3 {}", mib(size), short(hash)),
            (Some(size), None) => format!("{} (size differs)", mib(size)),
        };
        Check::NotYet(Evidence::new(
            format!(
                "{label}: source {} blake3 {}, destination {dest}{why}",
                mib(report.source_size),
                short(&report.source_hash)
            ),
            data,
        ))
    })
}

/// One pass per step: when the act follows, the check leaves its question
/// to the copy (which finds equal windows first and leaves an equal image
/// untouched), and the verification takes the copy's own end-to-end
/// verification (the destination's digest of what it holds, after its
/// sync, equal to the source's). Both images are read again only for a
/// check standing alone or a verification whose act ran in another process
/// (a resumed run, a step caught mid-flight).
impl StepKind for ImageCopy {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            let (source, dest, label) = endpoints(ctx)?;
            if ctx.act_follows() {
                return Ok(Check::NotYet(Evidence::new(
                    format!(
                        "{label}: left to the copy, which compares before it writes and leaves an equal image untouched"
                    ),
                    json!({ "compared_by": "act" }),
                )));
            }
            compare(ctx, source, dest, &label, "").await
        })
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async move {
            let (source, dest, label) = endpoints(ctx)?;
            let key = (ctx.step_name().to_string(), source.clone(), dest.clone());
            let limit = match &ctx.action.kind {
                ActionKind::ImageCopy { limit, .. } => limit.map(|l| l.0 / 8),
                _ => None,
            };
            let report = run_blocking(ctx, limit, move |options| {
                copy_image(&source, &dest, options)
            })
            .await?;
            let mut data = serde_json::to_value(&report).map_err(anyhow::Error::from)?;
            let held = match limit {
                Some(rate) => {
                    data["limit_bytes_per_sec"] = json!(rate);
                    format!(" (limit {:.1} MB/s)", rate as f64 / 1e6)
                }
                None => String::new(),
            };
            let summary = if report.outcome == Outcome::AlreadyEqual {
                format!(
                    "{label}: destination already equal to the source, left untouched ({} compared in {:.1}s, blake3 {})",
                    mib(report.bytes_scanned),
                    report.duration.as_secs_f64(),
                    short(&report.hash),
                )
            } else {
                format!(
                    "{label}: {} scanned, {} sent, {} reused, {} of holes/zeros skipped{}{} in {:.1}s{held}, blake3 {}",
                    mib(report.bytes_scanned),
                    mib(report.bytes_sent),
                    mib(report.bytes_reused),
                    mib(report.zero_bytes_skipped),
                    if report.in_place {
                        ", patched in place"
                    } else {
                        ""
                    },
                    if report.resumed {
                        " (resumed a partial copy)"
                    } else {
                        ""
                    },
                    report.duration.as_secs_f64(),
                    short(&report.hash),
                )
            };
            let mut acted = acted();
            acted.retain(|(k, _)| *k != key);
            acted.push((key, data.clone()));
            Ok(Evidence::new(summary, data))
        })
    }

    fn verify<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            let (source, dest, label) = endpoints(ctx)?;
            let key = (ctx.step_name().to_string(), source.clone(), dest.clone());
            let taken = {
                let mut acted = acted();
                acted
                    .iter()
                    .position(|(k, _)| *k == key)
                    .map(|at| acted.remove(at).1)
            };
            // The act's result counts only if it is the act the state
            // records last for this step (the one this verification follows).
            let recorded = ctx.evidence_of(ctx.step, Phase::Act)?.map(|e| e.data);
            match taken {
                Some(report) if recorded.as_ref() == Some(&report) => {
                    let hash = report["hash"].as_str().unwrap_or_default();
                    let size = report["size"].as_u64().unwrap_or_default();
                    let summary = if report["outcome"] == "already-equal" {
                        format!(
                            "{label}: the copy found the destination equal to the source and left it untouched ({}, blake3 {})",
                            mib(size),
                            short(hash)
                        )
                    } else {
                        format!(
                            "{label}: verified by the copy itself: the destination's content after its sync has the source's blake3 {} ({}; not re-read)",
                            short(hash),
                            mib(size)
                        )
                    };
                    Ok(Check::Satisfied(Evidence::new(
                        summary,
                        json!({ "verified_by": "act", "size": size, "hash": hash }),
                    )))
                }
                _ => {
                    let why = "; both images re-read: the copy's own result is not at hand (acted by an earlier run)";
                    let mut checked = compare(ctx, source, dest, &label, why).await?;
                    if let Check::Satisfied(e) | Check::NotYet(e) = &mut checked {
                        e.data["verified_by"] = json!("re-read");
                    }
                    Ok(checked)
                }
            }
        })
    }
}

/// The table checksums a sync's snapshot had (from its act evidence).
fn snapshot_tables(ctx: &StepContext<'_>) -> anyhow::Result<Option<Value>> {
    Ok(ctx
        .evidence_of(ctx.step, Phase::Act)?
        .and_then(|act| act.data.get("tables").cloned()))
}

impl StepKind for DbSync {
    /// Before acting: the destination already holds what the live source
    /// holds now.
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            let (source, dest, label) = endpoints(ctx)?;
            let (source_tables, dest_tables) = run_blocking(ctx, None, move |_| {
                let source_tables = table_checksums(&source)?;
                let dest_tables = match table_checksums(&dest) {
                    Ok(tables) => Some(tables),
                    Err(err) if err.kind == cutover_copy::ErrorKind::NotFound => None,
                    Err(err) => return Err(err),
                };
                Ok((source_tables, dest_tables))
            })
            .await?;
            let data = json!({ "source": source_tables, "destination": dest_tables });
            Ok(if dest_tables.as_ref() == Some(&source_tables) {
                Check::Satisfied(Evidence::new(
                    format!("{label}: all {} tables match", source_tables.len()),
                    data,
                ))
            } else {
                Check::NotYet(Evidence::new(
                    format!("{label}: destination differs from the source"),
                    data,
                ))
            })
        })
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async move {
            let (source, dest, label) = endpoints(ctx)?;
            let report = run_blocking(ctx, None, move |options| {
                sync_sqlite(&source, &dest, options)
            })
            .await?;
            let rows: u64 = report.tables.iter().map(|t| t.rows).sum();
            Ok(Evidence::new(
                format!(
                    "{label}: snapshot by {} of {} tables ({rows} rows), {} sent, blake3 {}",
                    report.method,
                    report.tables.len(),
                    mib(report.copy.bytes_sent),
                    short(&report.copy.hash)
                ),
                serde_json::to_value(&report).map_err(anyhow::Error::from)?,
            ))
        })
    }

    /// After acting: the destination holds exactly the snapshot the act
    /// took (the live source may have moved on since).
    fn verify<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            let Some(expected) = snapshot_tables(ctx)? else {
                return self.check(ctx).await;
            };
            let (_, dest, label) = endpoints(ctx)?;
            let dest_tables = run_blocking(ctx, None, move |_| table_checksums(&dest)).await?;
            let observed = serde_json::to_value(&dest_tables).map_err(anyhow::Error::from)?;
            let data = json!({ "snapshot": expected, "destination": observed });
            Ok(if observed == expected {
                let rows: u64 = dest_tables.iter().map(|t| t.rows).sum();
                Check::Satisfied(Evidence::new(
                    format!(
                        "{label}: {} tables ({rows} rows) match the snapshot's row counts and checksums",
                        dest_tables.len()
                    ),
                    data,
                ))
            } else {
                Check::NotYet(Evidence::new(
                    format!("{label}: destination differs from the snapshot"),
                    data,
                ))
            })
        })
    }
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}
