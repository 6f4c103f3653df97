//! Preflight: before the first step of a run, prove that every DNS step
//! and every database replication can act. Each zone's key is read (env or
//! file present, a valid secret) and used once in a signed, side-effect-free
//! request to the zone's primary (a TSIG-signed SOA query); each `db.sync`
//! to a database server logs in to both servers with the runbook's
//! credentials and checks what replication needs there (each missing
//! setting named, with the line to change), and, for a `db.sync` whose
//! `undo` replicates back, what that needs in the other direction (the new
//! server as the source, the old one as the destination); no two MariaDB
//! replications may need one replica connection at once. A missing
//! variable, a wrong key or password or `wal_level` not `logical` is
//! reported before anything runs, not when the step acts in the middle of
//! the window, nor when the fallback window opens after the step.

use crate::dns::tsig_key;
use cutover_dns::Updater;
use cutover_lang::{Action, ActionKind, Runbook, ServerEngine, Step, StepId, ZoneId};
use std::path::Path;
use std::time::Duration;

/// How long the primary may take to answer the signed query.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(3);

/// What cannot be used: which zone key or database, which server, what to
/// check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    #[error("preflight: zone {zone}: key `{key}` at {server}: {problem}")]
    Zone {
        zone: String,
        key: String,
        server: String,
        problem: String,
    },
    /// A `db.sync` to a database server; `setting` names what is missing
    /// (`wal_level`, a privilege, the login) when it is one.
    #[error("preflight: step `{step}`: {server}: {problem}")]
    Database {
        step: String,
        server: String,
        setting: Option<String>,
        problem: String,
    },
}

/// What preflight proved: one per zone with a key, one per database
/// replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreflightOk {
    Zone {
        zone: String,
        key: String,
        server: String,
    },
    Database {
        step: String,
        servers: String,
    },
}

/// Checks every zone with a key that a step still to run updates (`done`
/// says which steps are done already: a resumed run whose DNS steps are
/// done does not need their primary); all failures are returned, not only
/// the first.
pub async fn preflight(
    runbook: &Runbook,
    runbook_dir: &Path,
    done: &dyn Fn(&str) -> bool,
) -> Result<Vec<PreflightOk>, Vec<PreflightError>> {
    let mut proved = Vec::new();
    let mut failed = Vec::new();
    for (index, zone) in runbook.zones.iter().enumerate() {
        let Some(key_id) = zone.key else { continue };
        let updates_it = runbook
            .steps
            .iter()
            .filter(|step| !done(&step.name))
            .any(|step| {
                std::iter::once(&step.action)
                    .chain(step.undo.as_ref())
                    .any(|action| updates_zone(&action.kind, ZoneId(index)))
            });
        if !updates_it {
            continue;
        }
        let key_name = runbook.key(key_id).name.clone();
        let server = zone.primary.to_string();
        let fail = |problem: String| PreflightError::Zone {
            zone: zone.name.clone(),
            key: key_name.clone(),
            server: server.clone(),
            problem,
        };
        let key = match tsig_key(runbook, runbook_dir, key_id) {
            Ok(key) => key,
            Err(err) => {
                failed.push(fail(format!("{err:#}")));
                continue;
            }
        };
        let updater = Updater::new(zone.primary, Some(key), PREFLIGHT_TIMEOUT);
        match updater.verify_key(&zone.name).await {
            Ok(()) => proved.push(PreflightOk::Zone {
                zone: zone.name.clone(),
                key: key_name.clone(),
                server: server.clone(),
            }),
            Err(cutover_dns::DnsError::TsigFailed { .. }) => failed.push(fail(
                "the server refused the signature: check that the secret and the algorithm match the server's key of that name".into(),
            )),
            Err(err) => failed.push(fail(format!("{err}"))),
        }
    }
    databases(runbook, runbook_dir, done, &mut proved, &mut failed).await;
    if failed.is_empty() {
        Ok(proved)
    } else {
        Err(failed)
    }
}

/// Logs in to both servers of every `db.sync` to a database server that
/// is still to run and checks their replication settings.
async fn databases(
    runbook: &Runbook,
    runbook_dir: &Path,
    done: &dyn Fn(&str) -> bool,
    proved: &mut Vec<PreflightOk>,
    failed: &mut Vec<PreflightError>,
) {
    for step in runbook.steps.iter().filter(|step| !done(&step.name)) {
        if !matches!(step.action.kind, ActionKind::DbReplicate { .. }) {
            continue;
        }
        match database(runbook, runbook_dir, step).await {
            Ok(ok) => proved.push(ok),
            Err(problems) => failed.extend(problems),
        }
    }
    failed.extend(shared_replicas(runbook, done));
}

/// MariaDB takes one replica connection from a given source: two
/// `db.sync mysql` steps still to run between the same two servers, in
/// the same direction, must not replicate at once (the second act would
/// fail with the server's `ERROR 1934`), so one must wait for the other
/// (`after`, directly or through other steps). Their replication back
/// (a step's `undo`) stays up for the fallback window, so two of those
/// between the same servers cannot both be set up at all. `plan --probe`
/// reports the same.
pub(crate) fn shared_replicas(
    runbook: &Runbook,
    done: &dyn Fn(&str) -> bool,
) -> Vec<PreflightError> {
    let endpoints = |kind: &ActionKind| match kind {
        ActionKind::DbReplicate {
            engine: ServerEngine::Mysql,
            from,
            to,
            ..
        } => Some((
            (runbook.host(from.host).addr, from.port),
            (runbook.host(to.host).addr, to.port),
        )),
        _ => None,
    };
    let steps: Vec<(StepId, &Step)> = runbook
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| (StepId(i), step))
        .filter(|(_, step)| !done(&step.name))
        .collect();
    let mut problems = Vec::new();
    for (n, &(a, first)) in steps.iter().enumerate() {
        let Some(forward) = endpoints(&first.action.kind) else {
            continue;
        };
        let back = first.undo.as_ref().and_then(|undo| endpoints(&undo.kind));
        for &(b, second) in &steps[n + 1..] {
            let ordered = waits_for(runbook, a, b) || waits_for(runbook, b, a);
            let (servers, problem) = if endpoints(&second.action.kind) == Some(forward) && !ordered
            {
                (
                    forward,
                    format!(
                        "replicates from the same server to the same server as step `{}`, and neither waits for the other: MariaDB takes one replica connection from a source; put `after {}` on `{}`",
                        second.name, first.name, second.name
                    ),
                )
            } else if let Some(back) = back
                && second.undo.as_ref().and_then(|undo| endpoints(&undo.kind)) == Some(back)
            {
                (
                    back,
                    format!(
                        "its undo replicates back between the same servers as the undo of step `{}`: MariaDB takes one replica connection from a source, and a fallback window's stays up; keep the undo on one of them",
                        second.name
                    ),
                )
            } else {
                continue;
            };
            let ((source, source_port), (destination, destination_port)) = servers;
            problems.push(PreflightError::Database {
                step: first.name.clone(),
                server: format!("{source}:{source_port} -> {destination}:{destination_port}"),
                setting: None,
                problem,
            });
        }
    }
    problems
}

/// Whether step `later` waits (by `after`, directly or not) for `earlier`.
fn waits_for(runbook: &Runbook, earlier: StepId, later: StepId) -> bool {
    let mut seen = vec![false; runbook.steps.len()];
    let mut stack = vec![later];
    while let Some(step) = stack.pop() {
        for &before in &runbook.step(step).after {
            if before == earlier {
                return true;
            }
            if !std::mem::replace(&mut seen[before.0], true) {
                stack.push(before);
            }
        }
    }
    false
}

/// Logs in to both servers of one `db.sync` to a database server and
/// checks their replication settings (`plan --probe` reports the same).
/// When the step's `undo` replicates back (new to old, a fallback
/// window), what that needs is checked too, with the new server as the
/// source and the old one as the destination, each problem said to be
/// for the undo (one the forward check names already is not repeated).
pub(crate) async fn database(
    runbook: &Runbook,
    runbook_dir: &Path,
    step: &Step,
) -> Result<PreflightOk, Vec<PreflightError>> {
    let back = step
        .undo
        .as_ref()
        .filter(|undo| matches!(undo.kind, ActionKind::DbReplicate { .. }));
    let (forward, back) =
        tokio::join!(direction(runbook, runbook_dir, step, &step.action), async {
            match back {
                Some(undo) => Some(direction(runbook, runbook_dir, step, undo).await),
                None => None,
            }
        });
    let (label, mut failures) = forward;
    if let Some((_, back_failures)) = back {
        for failure in back_failures {
            let PreflightError::Database {
                step,
                server,
                setting,
                problem,
            } = failure
            else {
                continue;
            };
            // The same setting of the same login, or the same unread
            // password or unreachable server.
            let repeated = failures.iter().any(|f| {
                matches!(f, PreflightError::Database { server: s, setting: t, problem: p, .. }
                    if (*s == server && *t == setting) || (setting.is_none() && *p == problem))
            });
            if !repeated {
                failures.push(PreflightError::Database {
                    step,
                    server,
                    setting,
                    problem: format!("for the undo (replication back, new -> old): {problem}"),
                });
            }
        }
    }
    if failures.is_empty() {
        Ok(PreflightOk::Database {
            step: step.name.clone(),
            servers: label,
        })
    } else {
        Err(failures)
    }
}

/// Logs in to both servers of one direction of a `db.sync` (`action`,
/// the step's own or its `undo`) and checks what replication needs there:
/// the servers' label and every problem found.
async fn direction(
    runbook: &Runbook,
    runbook_dir: &Path,
    step: &Step,
    action: &Action,
) -> (String, Vec<PreflightError>) {
    let fail =
        |server: String, setting: Option<String>, problem: String| PreflightError::Database {
            step: step.name.clone(),
            server,
            setting,
            problem,
        };
    let sides = match crate::db::sides(runbook, runbook_dir, &step.name, &action.kind) {
        Ok(sides) => sides,
        Err(err) => {
            let label = runbook.describe(action);
            return (label.clone(), vec![fail(label, None, err.to_string())]);
        }
    };
    let checked = match sides.engine {
        ServerEngine::Postgres => {
            cutover_db::postgres::preflight(&sides.source, &sides.destination).await
        }
        ServerEngine::Mysql => {
            cutover_db::mysql::preflight(&sides.source, &sides.destination).await
        }
    };
    let failures = match checked {
        Ok(()) => Vec::new(),
        Err(cutover_db::DbError::Preflight(problems)) => problems
            .into_iter()
            .map(|problem| {
                fail(
                    problem.server.clone(),
                    Some(problem.setting.clone()),
                    format!("{} is {}: {}", problem.setting, problem.found, problem.fix),
                )
            })
            .collect(),
        Err(err) => vec![fail(sides.label.clone(), None, err.to_string())],
    };
    (sides.label, failures)
}

/// Whether an action sends updates to the zone.
fn updates_zone(kind: &ActionKind, zone: ZoneId) -> bool {
    matches!(
        kind,
        ActionKind::DnsTtl { zone: z, .. }
            | ActionKind::DnsSwitch { zone: z, .. }
            | ActionKind::DnsAdd { zone: z, .. }
            | ActionKind::DnsRemove { zone: z, .. } if *z == zone
    )
}
