//! `db.sync postgres|mysql SERVER -> SERVER`: replication from a live
//! source (see `cutover_db`). The act sets replication up, or finds it set
//! up (a resumed run continues the same copy); each verification reports
//! the bulk copy and the lag as progress and is satisfied only when the
//! writers are stopped (the `freeze` step is done), the destination has
//! applied everything the source wrote, the sequences are copied and both
//! sides' checksums agree. Replication is then taken down, so the new
//! primary is independent.
//!
//! A step whose `undo` is its `db.sync` in reverse (new to old) opens a
//! fallback window: once the step is done, the old server replicates from
//! the new one, so every write made on the new side reaches the old side
//! too. `cutover rollback` runs that undo like a `db.sync`: it waits for
//! the undo's freeze step (if any), for the old side to apply everything,
//! copies the counters back, compares, and removes the replication back,
//! so the old database stands alone again.
//!
//! `db.unfollow STEP` ends that window when the team stays on the new
//! side: it removes the replication back (as rollback's undo does at its
//! end) and verifies on the old server that nothing of it remains. From
//! then on a rollback of STEP refuses: the old side no longer has the new
//! side's writes, and the undo would set replication back up from now,
//! without the writes made in between.
//!
//! Passwords are read from where the runbook points each time they are
//! needed and go only to the database servers; the engine masks them in
//! everything it stores.

use cutover_db::{Comparison, DbError, Lag, Password, SequenceValue, Server, mysql, postgres};
use cutover_engine::{
    ActionRole, BoxFuture, Check, Evidence, StepContext, StepError, StepKind, StepResult,
};
use cutover_lang::{ActionKind, DbServer, Runbook, ServerEngine, StepId};
use cutover_store::StepStatus;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Rows per checksum chunk.
const CHUNK_ROWS: u64 = 10_000;

/// Differences named in a failure (all are in the evidence's count).
const SHOWN_DIFFERENCES: usize = 5;

/// How often a replicating step says where it stands (copied, lag in
/// transactions or bytes and seconds) as a message, beside the progress
/// figure every verification reports.
const REPORT_EVERY: Duration = Duration::from_secs(15);

/// When each step of this process last said where it stands.
static REPORTED: Mutex<BTreeMap<String, Instant>> = Mutex::new(BTreeMap::new());

/// Whether `step` is due to say where it stands (and notes that it does).
fn report_due(step: &str) -> bool {
    let mut reported = REPORTED.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    match reported.get(step) {
        Some(last) if now.duration_since(*last) < REPORT_EVERY => false,
        _ => {
            reported.insert(step.to_owned(), now);
            true
        }
    }
}

/// `db.sync postgres|mysql SERVER -> SERVER [freeze STEP]`
pub struct DbReplicate;

/// `db.unfollow STEP`
pub struct DbUnfollow;

/// Both servers of one `db.sync`, passwords read.
pub(crate) struct Sides {
    pub engine: ServerEngine,
    pub source: Server,
    pub destination: Server,
    /// Publication, subscription and slot name (PostgreSQL), replica
    /// connection name (MariaDB).
    pub name: String,
    pub label: String,
    freeze: Option<StepId>,
    /// Replication back, new to old (a step's `undo`): set up without a
    /// copy, from where the new side is.
    back: bool,
}

/// The server a runbook's `HOST[:PORT]/DATABASE user USER [password REF]`
/// names, its password read now.
fn server(runbook: &Runbook, runbook_dir: &Path, db: &DbServer) -> anyhow::Result<Server> {
    let host = runbook.host(db.host);
    let password = match &db.password {
        Some(secret) => Some(Password::new(cutover_engine::secrets::read_secret_ref(
            secret,
            runbook_dir,
            &format!("the password of {}:{}/{}", host.name, db.port, db.database),
        )?)),
        None => None,
    };
    Ok(Server {
        host: host.addr.to_string(),
        port: db.port,
        database: db.database.clone(),
        user: db.user.clone(),
        password,
    })
}

pub(crate) fn sides(
    runbook: &Runbook,
    runbook_dir: &Path,
    step: &str,
    kind: &ActionKind,
) -> StepResult<Sides> {
    let ActionKind::DbReplicate {
        engine,
        from,
        to,
        freeze,
        ..
    } = kind
    else {
        return Err(crate::wrong_action("db.sync", kind).into());
    };
    let source = server(runbook, runbook_dir, from).map_err(StepError::fatal)?;
    let destination = server(runbook, runbook_dir, to).map_err(StepError::fatal)?;
    let label = format!(
        "{}:{}/{} -> {}:{}/{}",
        runbook.host(from.host).name,
        from.port,
        from.database,
        runbook.host(to.host).name,
        to.port,
        to.database
    );
    Ok(Sides {
        engine: *engine,
        source,
        destination,
        name: cutover_db::replication_name(step),
        label,
        freeze: *freeze,
        back: false,
    })
}

/// The sides of the line being run; an `undo` is the replication back.
fn ctx_sides(ctx: &StepContext<'_>) -> StepResult<Sides> {
    let mut sides = sides(
        ctx.runbook,
        ctx.runbook_dir(),
        ctx.step_name(),
        &ctx.action.kind,
    )?;
    if ctx.role == ActionRole::Undo {
        sides.back = true;
        sides.name = cutover_db::fallback_name(ctx.step_name());
    }
    Ok(sides)
}

/// The replication back a step's `undo` names, when it is a `db.sync`
/// (the language allows only the step's own in reverse).
fn fallback_sides(ctx: &StepContext<'_>, step: StepId) -> StepResult<Option<Sides>> {
    let step = ctx.runbook.step(step);
    let Some(undo) = &step.undo else {
        return Ok(None);
    };
    if !matches!(undo.kind, ActionKind::DbReplicate { .. }) {
        return Ok(None);
    }
    let mut sides = sides(ctx.runbook, ctx.runbook_dir(), &step.name, &undo.kind)?;
    sides.back = true;
    sides.name = cutover_db::fallback_name(&step.name);
    Ok(Some(sides))
}

/// The `db.unfollow` step that ended the fallback window of the step
/// being run, when one is done or has started removing it: the old side
/// then lacks the new side's writes since, and no undo brings them back.
fn fallback_ended(ctx: &StepContext<'_>) -> StepResult<Option<String>> {
    for (i, step) in ctx.runbook.steps.iter().enumerate() {
        if !matches!(step.action.kind, ActionKind::DbUnfollow { step } if step == ctx.step) {
            continue;
        }
        let Some(record) = ctx.step_record(StepId(i))? else {
            continue;
        };
        let ended = match record.status {
            StepStatus::Done => true,
            StepStatus::Running | StepStatus::Failed => record.attempts > 0,
            StepStatus::Pending | StepStatus::Skipped | StepStatus::Undone => false,
        };
        if ended {
            let when = record
                .finished_at
                .map(|t| format!(" (done {})", t.format("%Y-%m-%d %H:%M:%S UTC")))
                .unwrap_or_else(|| " (started, not verified)".to_owned());
            return Ok(Some(format!(
                "the fallback window of `{}` ended at step `{}`{when}: the old side stopped following the new one then, so this undo cannot bring back the writes made on the new side since; the old database holds only what reached it until then",
                ctx.step_name(),
                step.name
            )));
        }
    }
    Ok(None)
}

/// Refuses the undo of a step whose fallback window has ended.
fn refuse_after_fallback(ctx: &StepContext<'_>) -> StepResult<()> {
    if ctx.role == ActionRole::Undo
        && let Some(text) = fallback_ended(ctx)?
    {
        return Err(StepError::fatal(anyhow::anyhow!(text)));
    }
    Ok(())
}

/// Opens the fallback window of a done step whose `undo` replicates back:
/// the old server follows the new one from now on. Idempotent. The
/// evidence sentence, when there is such an undo.
async fn open_fallback(ctx: &StepContext<'_>) -> StepResult<Option<(String, String)>> {
    let Some(back) = fallback_sides(ctx, ctx.step)? else {
        return Ok(None);
    };
    ctx.may_start_effect()?;
    let created = back.start_back().await?;
    let sentence = format!(
        "replication back `{}` {}: {} follows {} for the fallback window (`cutover rollback` ends it)",
        back.name,
        if created {
            "set up"
        } else {
            "was set up already"
        },
        back.label.rsplit(" -> ").next().unwrap_or_default(),
        back.label.split(" -> ").next().unwrap_or_default(),
    );
    Ok(Some((back.name, sentence)))
}

/// A database failure as a step error: refused logins, missing settings and
/// what cannot be copied are fatal; the rest may pass on another attempt.
pub(crate) fn db_error(err: DbError, server: &str) -> StepError {
    let step_error = if err.is_fatal() {
        StepError::fatal(err)
    } else {
        StepError::from(anyhow::Error::from(err))
    };
    step_error.on(server)
}

impl Sides {
    fn err(&self) -> impl Fn(DbError) -> StepError + '_ {
        move |err| db_error(err, &self.label)
    }

    async fn compare(&self) -> StepResult<Comparison> {
        match self.engine {
            ServerEngine::Postgres => {
                postgres::compare(&self.source, &self.destination, CHUNK_ROWS).await
            }
            ServerEngine::Mysql => {
                mysql::compare(&self.source, &self.destination, CHUNK_ROWS).await
            }
        }
        .map_err(self.err())
    }

    async fn is_replicating(&self) -> StepResult<bool> {
        match self.engine {
            ServerEngine::Postgres => postgres::is_replicating(&self.destination, &self.name).await,
            ServerEngine::Mysql => mysql::is_replicating(&self.destination, &self.name).await,
        }
        .map_err(self.err())
    }

    async fn lag(&self) -> StepResult<Option<Lag>> {
        let (source, destination) = (&self.source, &self.destination);
        match self.engine {
            ServerEngine::Postgres => postgres::lag(source, destination, &self.name).await,
            ServerEngine::Mysql => mysql::lag(source, destination, &self.name).await,
        }
        .map_err(self.err())
    }

    /// What replication does not carry: sequence values (PostgreSQL),
    /// auto-increment counters (MariaDB).
    async fn copy_counters(&self) -> StepResult<Vec<SequenceValue>> {
        let (source, destination) = (&self.source, &self.destination);
        match self.engine {
            ServerEngine::Postgres => postgres::copy_sequences(source, destination).await,
            ServerEngine::Mysql => mysql::copy_auto_increments(source, destination).await,
        }
        .map_err(self.err())
    }

    async fn stop(&self) -> StepResult<()> {
        match self.engine {
            ServerEngine::Postgres => {
                postgres::stop(&self.source, &self.destination, &self.name).await
            }
            ServerEngine::Mysql => mysql::stop(&self.destination, &self.name).await,
        }
        .map_err(self.err())
    }

    /// Sets replication back up (the source is the new side), or finds
    /// it set up; whether it was set up now.
    async fn start_back(&self) -> StepResult<bool> {
        let (new, old) = (&self.source, &self.destination);
        match self.engine {
            ServerEngine::Postgres => postgres::start_back(new, new, old, &self.name).await,
            ServerEngine::Mysql => mysql::start_back(new, new, old, &self.name).await,
        }
        .map_err(self.err())
    }

    fn counters_word(&self) -> &'static str {
        match self.engine {
            ServerEngine::Postgres => "sequences",
            ServerEngine::Mysql => "auto-increment values",
        }
    }

    /// Sets replication up (PostgreSQL: the subscription copies on its
    /// own; MariaDB: the copy runs here, with progress) or finds it set up.
    async fn start(&self, ctx: &StepContext<'_>) -> StepResult<Evidence> {
        let (source, destination) = (&self.source, &self.destination);
        if self.back {
            let created = self.start_back().await?;
            return Ok(Evidence::new(
                format!(
                    "{}: replication back `{}` {}",
                    self.label,
                    self.name,
                    if created {
                        "set up now (it was not running: writes made on the new side before now are not in it)"
                    } else {
                        "is running; following it to its end"
                    }
                ),
                json!({ "replication": self.name, "created": created }),
            ));
        }
        match self.engine {
            ServerEngine::Postgres => {
                let started = postgres::start(source, source, destination, &self.name)
                    .await
                    .map_err(self.err())?;
                let summary = if started.subscription_created {
                    format!(
                        "{}: replication `{}` set up for {} tables ({} created on the destination); the initial copy runs while the source takes writes",
                        self.label, self.name, started.tables, started.tables_created
                    )
                } else {
                    format!(
                        "{}: replication `{}` was set up already; continuing it",
                        self.label, self.name
                    )
                };
                Ok(Evidence::new(
                    summary,
                    serde_json::to_value(&started).map_err(anyhow::Error::from)?,
                ))
            }
            ServerEngine::Mysql => {
                let (sender, mut receiver) = tokio::sync::watch::channel(mysql::Copied::default());
                let progress = move |copied: mysql::Copied| {
                    let _ = sender.send(copied);
                };
                let copy = mysql::start(source, source, destination, &self.name, &progress);
                tokio::pin!(copy);
                let started = loop {
                    tokio::select! {
                        started = &mut copy => break started.map_err(self.err())?,
                        Ok(()) = receiver.changed() => {
                            let copied = *receiver.borrow_and_update();
                            ctx.progress(copied.rows, Some(copied.rows_total.max(copied.rows)), "rows copied");
                        }
                    }
                };
                let summary = if started.replica_created {
                    format!(
                        "{}: replication `{}` set up for {} tables ({} created on the destination): {} rows ({} bytes) copied from a snapshot at GTID {}, the replica follows from there",
                        self.label,
                        self.name,
                        started.tables,
                        started.tables_created,
                        started.rows_copied,
                        started.bytes_copied,
                        started.gtid
                    )
                } else if started.copy_resumed {
                    format!(
                        "{}: replication `{}` was set up already; its copy was cut short and is finished now ({} more rows), the replica follows from GTID {}",
                        self.label, self.name, started.rows_copied, started.gtid
                    )
                } else {
                    format!(
                        "{}: replication `{}` was set up already; continuing it",
                        self.label, self.name
                    )
                };
                Ok(Evidence::new(
                    summary,
                    serde_json::to_value(&started).map_err(anyhow::Error::from)?,
                ))
            }
        }
    }
}

fn lag_text(lag: &Lag) -> String {
    let mut text = format!(
        "{}/{} tables copied ({} of {} bytes)",
        lag.tables_ready, lag.tables, lag.copied_bytes, lag.source_bytes
    );
    let mut figures = Vec::new();
    if let Some(transactions) = lag.lag_transactions {
        figures.push(format!("{transactions} transactions"));
    }
    if let Some(bytes) = lag.lag_bytes {
        figures.push(format!("{bytes} bytes"));
    }
    if let Some(seconds) = lag.lag_seconds {
        figures.push(format!("{seconds:.1} s"));
    }
    if figures.is_empty() {
        text.push_str(", the stream is not connected yet");
    } else {
        text.push_str(&format!(", lag {}", figures.join(", ")));
    }
    text
}

fn comparison_text(comparison: &Comparison) -> String {
    let mut parts: Vec<String> = comparison
        .schema
        .iter()
        .take(SHOWN_DIFFERENCES)
        .cloned()
        .collect();
    parts.extend(
        comparison
            .differences
            .iter()
            .take(SHOWN_DIFFERENCES)
            .map(|d| d.to_string()),
    );
    let total = comparison.schema.len() + comparison.differences.len();
    if total > parts.len() {
        parts.push(format!("and {} more", total - parts.len()));
    }
    parts.join("; ")
}

fn equal_evidence(
    label: &str,
    comparison: &Comparison,
    extra: serde_json::Value,
) -> StepResult<Evidence> {
    let mut data = serde_json::to_value(comparison).map_err(anyhow::Error::from)?;
    if let (Some(map), serde_json::Value::Object(more)) = (data.as_object_mut(), extra) {
        map.extend(more);
    }
    Ok(Evidence::new(
        format!(
            "{label}: {} tables ({} rows) match by row count and checksum{}",
            comparison.tables.len(),
            comparison.rows(),
            if comparison.warnings.is_empty() {
                String::new()
            } else {
                format!(" ({} warnings)", comparison.warnings.len())
            }
        ),
        data,
    ))
}

impl StepKind for DbReplicate {
    /// Satisfied when no replication of this step runs and both sides
    /// already hold the same data.
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            refuse_after_fallback(ctx)?;
            let sides = ctx_sides(ctx)?;
            if sides.is_replicating().await? {
                return Ok(Check::NotYet(Evidence::new(
                    format!("{}: replication `{}` is running", sides.label, sides.name),
                    json!({ "replication": sides.name }),
                )));
            }
            let comparison = sides.compare().await?;
            Ok(if comparison.equal() {
                let mut evidence = equal_evidence(&sides.label, &comparison, json!({}))?;
                // Done: the fallback window its undo asks for is open
                // (a verification cut short after taking replication down
                // comes here too).
                if ctx.role == ActionRole::Main
                    && let Some((name, sentence)) = open_fallback(ctx).await?
                {
                    evidence.summary.push_str(&format!("; {sentence}"));
                    if let Some(map) = evidence.data.as_object_mut() {
                        map.insert("replication_back".into(), json!(name));
                    }
                }
                Check::Satisfied(evidence)
            } else {
                Check::NotYet(Evidence::new(
                    format!(
                        "{}: the destination differs: {}",
                        sides.label,
                        comparison_text(&comparison)
                    ),
                    serde_json::to_value(&comparison).map_err(anyhow::Error::from)?,
                ))
            })
        })
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async move {
            refuse_after_fallback(ctx)?;
            let sides = ctx_sides(ctx)?;
            ctx.may_start_effect()?;
            sides.start(ctx).await
        })
    }

    fn verify<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            refuse_after_fallback(ctx)?;
            let sides = ctx_sides(ctx)?;
            let Some(lag) = sides.lag().await? else {
                // Taken down already (a verification that ended before it
                // was recorded): the data must agree without it.
                return self.check(ctx).await;
            };
            if lag.tables_ready < lag.tables {
                ctx.progress(
                    lag.copied_bytes,
                    Some(lag.source_bytes.max(lag.copied_bytes)),
                    "bytes copied",
                );
            } else if let Some(transactions) = lag.lag_transactions {
                ctx.progress(transactions, None, "transactions of lag");
            } else {
                ctx.progress(lag.lag_bytes.unwrap_or(0), None, "bytes of lag");
            }
            if report_due(ctx.step_name()) {
                ctx.message(&format!("{}: {}", sides.label, lag_text(&lag)))?;
            }
            if sides.engine == ServerEngine::Postgres {
                // Keys and indexes are built as each falls due.
                let built = postgres::create_indexes(&sides.source, &sides.destination)
                    .await
                    .map_err(sides.err())?;
                if built > 0 {
                    ctx.message(&format!(
                        "{}: {built} keys and indexes built after the copy",
                        sides.label
                    ))?;
                }
            }
            let data = serde_json::to_value(&lag).map_err(anyhow::Error::from)?;
            if let Some(gate) = sides.freeze {
                let gate_name = &ctx.runbook.step(gate).name;
                let frozen = ctx
                    .step_record(gate)?
                    // A skipped gate is the coordinator's decision too.
                    .is_some_and(|r| matches!(r.status, StepStatus::Done | StepStatus::Skipped));
                if !frozen {
                    return Ok(Check::NotYet(Evidence::new(
                        format!(
                            "{}: {}; waiting for `{gate_name}` to stop the writers",
                            sides.label,
                            lag_text(&lag)
                        ),
                        data,
                    )));
                }
            }
            if !lag.caught_up() {
                return Ok(Check::NotYet(Evidence::new(
                    format!("{}: {}", sides.label, lag_text(&lag)),
                    data,
                )));
            }
            let sequences = sides.copy_counters().await?;
            let comparison = sides.compare().await?;
            if !comparison.equal() {
                let after = sides.lag().await?;
                let moved = after
                    .as_ref()
                    .is_none_or(|a| a.source_position != lag.source_position);
                if moved {
                    return Ok(Check::NotYet(Evidence::new(
                        format!(
                            "{}: the source was written during the comparison ({}); comparing again",
                            sides.label,
                            comparison_text(&comparison)
                        ),
                        serde_json::to_value(&comparison).map_err(anyhow::Error::from)?,
                    )));
                }
                return Err(StepError::fatal(anyhow::anyhow!(
                    "{}: the destination differs from the source, which took no writes meanwhile: {}",
                    sides.label,
                    comparison_text(&comparison)
                )));
            }
            sides.stop().await?;
            let mut evidence = equal_evidence(
                &sides.label,
                &comparison,
                json!({ "sequences": sequences, "caught_up_at": lag.source_position, "replication_removed": sides.name }),
            )?;
            evidence.summary.push_str(&format!(
                "; {} {} copied; caught up at {}; replication `{}` removed, {}",
                sequences.len(),
                sides.counters_word(),
                lag.source_position,
                sides.name,
                if sides.back {
                    "the old database is independent again"
                } else {
                    "the destination is independent"
                }
            ));
            if ctx.role == ActionRole::Main
                && let Some((name, sentence)) = open_fallback(ctx).await?
            {
                evidence.summary.push_str(&format!("; {sentence}"));
                if let Some(map) = evidence.data.as_object_mut() {
                    map.insert("replication_back".into(), json!(name));
                }
            }
            Ok(Check::Satisfied(evidence))
        })
    }
}

/// The replication back `db.unfollow STEP` ends (the language makes
/// STEP a `db.sync` whose undo replicates back).
fn ended_sides(ctx: &StepContext<'_>) -> StepResult<(StepId, Sides)> {
    let ActionKind::DbUnfollow { step } = ctx.action.kind else {
        return Err(crate::wrong_action("db.unfollow", &ctx.action.kind).into());
    };
    let sides = fallback_sides(ctx, step)?.ok_or_else(|| {
        StepError::fatal(anyhow::anyhow!(
            "step `{}` has no undo that replicates back",
            ctx.runbook.step(step).name
        ))
    })?;
    Ok((step, sides))
}

/// What `db.unfollow` sees on the old server.
async fn fallback_state(sides: &Sides) -> StepResult<Check> {
    let (new, old) = sides.label.split_once(" -> ").unwrap_or_default();
    let data = json!({ "fallback_window": sides.name, "old": old, "new": new });
    Ok(if sides.is_replicating().await? {
        Check::NotYet(Evidence::new(
            format!(
                "{}: replication back `{}` is set up on {old}: the fallback window is open",
                sides.label, sides.name
            ),
            data,
        ))
    } else {
        Check::Satisfied(Evidence::new(
            format!(
                "{}: no replication back `{}` on {old}: it no longer follows {new}, which stands alone; the fallback window is closed",
                sides.label, sides.name
            ),
            data,
        ))
    })
}

impl StepKind for DbUnfollow {
    /// Satisfied when the old server has no replication back of the step;
    /// right before the act, never: an act cut short may have removed the
    /// old server's part and left the new one's (a publication), and the
    /// act removes whatever is left.
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            match fallback_state(&ended_sides(ctx)?.1).await? {
                Check::Satisfied(evidence) if ctx.act_follows() => Ok(Check::NotYet(evidence)),
                other => Ok(other),
            }
        })
    }

    /// Removes the replication back (subscription on the old server and
    /// publication on the new one; MariaDB: the old server's replica
    /// connection), as rollback does; removing what is gone is a no-op.
    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async move {
            let (step, sides) = ended_sides(ctx)?;
            let was_set_up = sides.is_replicating().await?;
            ctx.may_start_effect()?;
            sides.stop().await?;
            let what = match sides.engine {
                ServerEngine::Postgres => {
                    "its subscription on the old server and its publication on the new one"
                }
                ServerEngine::Mysql => "the old server's replica connection",
            };
            Ok(Evidence::new(
                if was_set_up {
                    format!(
                        "{}: replication back `{}` removed ({what}); a rollback of `{}` can no longer bring the new side's writes back",
                        sides.label,
                        sides.name,
                        ctx.runbook.step(step).name
                    )
                } else {
                    format!(
                        "{}: replication back `{}` was removed already from {}; whatever was left of it is removed now",
                        sides.label,
                        sides.name,
                        sides.label.split(" -> ").nth(1).unwrap_or_default()
                    )
                },
                json!({ "fallback_window": sides.name, "removed": was_set_up }),
            ))
        })
    }

    fn verify<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move { fallback_state(&ended_sides(ctx)?.1).await })
    }
}
