//! `plan --probe`: reads the live world a runbook will act on — every DNS
//! record its steps touch, at every verify server; each zone's NS set and
//! SOA serials; the sizes of copy sources; the replication settings of
//! `db.sync`'s database servers — so the planner can show what a run would
//! change and flag drift. Read-only: nothing is updated.

use std::path::Path;
use std::time::Duration;

use cutover_copy::Endpoint as CopyEndpoint;
use cutover_dns::{live_ns, query, soa};
use cutover_lang::units::Size;
use cutover_lang::{ActionKind, Runbook, ServerEngine};
use cutover_plan::{
    DatabaseSizeFact, NameServer, ProbeFacts, RecordFact, SizeFact, SoaFact, ZoneNsFact,
};

use crate::copy::location_in;
use crate::dns::verify_servers;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What was read, and what could not be (each a sentence naming the server
/// or host), so the plan says what it could not know.
pub struct Probe {
    pub facts: ProbeFacts,
    pub problems: Vec<String>,
}

/// Reads the live state for `runbook` (relative paths resolve from `runbook_dir`).
pub async fn probe(runbook: &Runbook, runbook_dir: &Path) -> Probe {
    let mut facts = ProbeFacts::default();
    let mut problems = Vec::new();

    // Each record once, in the order the runbook first names it.
    let mut records = Vec::new();
    for step in &runbook.steps {
        let actions = std::iter::once(&step.action).chain(step.undo.as_ref());
        for action in actions {
            match &action.kind {
                ActionKind::DnsTtl {
                    zone, names, rtype, ..
                } => {
                    for name in names {
                        let record = (zone.0, name.clone(), *rtype);
                        if !records.contains(&record) {
                            records.push(record);
                        }
                    }
                }
                ActionKind::DnsSwitch {
                    zone, name, rtype, ..
                }
                | ActionKind::DnsAdd {
                    zone, name, rtype, ..
                }
                | ActionKind::DnsRemove {
                    zone, name, rtype, ..
                } => {
                    let record = (zone.0, name.clone(), *rtype);
                    if !records.contains(&record) {
                        records.push(record);
                    }
                }
                ActionKind::ImageCopy { from, .. } | ActionKind::DbSync { from, .. } => {
                    if facts.source_size(from).is_some() {
                        continue;
                    }
                    let location = location_in(runbook, runbook_dir, from);
                    match CopyEndpoint::connect(&location)
                        .and_then(|(mut endpoint, path)| endpoint.open_source(&path))
                    {
                        Ok(size) => facts.source_sizes.push(SizeFact {
                            endpoint: from.clone(),
                            size: Size(size),
                        }),
                        Err(err) => problems.push(format!(
                            "size of {}:{}: {err}",
                            runbook.host(from.host).name,
                            from.path
                        )),
                    }
                }
                _ => {}
            }
        }
    }

    for (zone_index, name, rtype) in records {
        let zone = &runbook.zones[zone_index];
        for server in verify_servers(zone) {
            match query(server, &zone.name, &name, rtype, PROBE_TIMEOUT).await {
                Ok(observation) => facts.records.push(RecordFact {
                    zone: zone.name.clone(),
                    name: name.clone(),
                    rtype,
                    server,
                    ttl: Duration::from_secs(observation.ttl.map_or(0, u64::from)),
                    values: observation.values,
                }),
                Err(err) => problems.push(err.to_string()),
            }
        }
    }

    for zone in &runbook.zones {
        for server in verify_servers(zone) {
            match soa(server, &zone.name, PROBE_TIMEOUT).await {
                Ok(soa) => facts.soa_serials.push(SoaFact {
                    zone: zone.name.clone(),
                    server,
                    serial: soa.serial,
                }),
                Err(err) => problems.push(err.to_string()),
            }
        }
        match live_ns(zone.primary, &zone.name, PROBE_TIMEOUT).await {
            Ok(servers) => facts.zone_ns.push(ZoneNsFact {
                zone: zone.name.clone(),
                servers: servers
                    .into_iter()
                    .map(|ns| NameServer {
                        name: ns.name,
                        addrs: ns.addresses,
                    })
                    .collect(),
            }),
            Err(err) => problems.push(format!("NS set of {}: {err}", zone.name)),
        }
    }

    // Database servers: logged in to and checked as `run`'s preflight does;
    // a source that passes is asked its size, for the bulk copy's estimate.
    for step in &runbook.steps {
        let ActionKind::DbReplicate { from, .. } = &step.action.kind else {
            continue;
        };
        if let Err(found) = crate::preflight::database(runbook, runbook_dir, step).await {
            problems.extend(found.iter().map(|p| p.to_string()));
            continue;
        }
        if facts.database_size(from).is_some() {
            continue;
        }
        match database_size(runbook, runbook_dir, step).await {
            Ok(size) => facts.database_sizes.push(DatabaseSizeFact {
                server: from.clone(),
                size: Size(size),
            }),
            Err(err) => problems.push(format!("size of the database of `{}`: {err}", step.name)),
        }
    }
    let shared = crate::preflight::shared_replicas(runbook, &|_| false);
    problems.extend(shared.iter().map(|p| p.to_string()));

    Probe { facts, problems }
}

/// What the source server of a replicating `db.sync` step reports its
/// database holds, in bytes.
async fn database_size(
    runbook: &Runbook,
    runbook_dir: &Path,
    step: &cutover_lang::Step,
) -> Result<u64, String> {
    let sides = crate::db::sides(runbook, runbook_dir, &step.name, &step.action.kind)
        .map_err(|err| err.to_string())?;
    match sides.engine {
        ServerEngine::Postgres => cutover_db::size::postgres(&sides.source).await,
        ServerEngine::Mysql => cutover_db::size::mysql(&sides.source).await,
    }
    .map_err(|err| err.to_string())
}
