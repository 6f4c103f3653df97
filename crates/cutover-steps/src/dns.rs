//! `dns.ttl`, `dns.switch`, `dns.add` and `dns.remove`: RFC 2136 updates
//! to a zone's primary, verified at every server the zone lists under
//! `verify`.
//!
//! All four kinds are idempotent: their check asks every verify server once and
//! is satisfied when all of them already serve the desired state. Their
//! verification is one round of queries per call (the engine polls); a round
//! that finds servers on different SOA serials carries the stale-secondary
//! diagnosis in its evidence, so a step that times out says which server
//! lags and how long the zone's timers allow it to.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::dns_error;
use chrono::{DateTime, Utc};
use cutover_dns::{
    Expectation, RecordCheck, RecordType, TsigKey, Updater, VerifyOptions, VerifyReport,
    cache_expiry, query, soa, verify_many,
};
use cutover_engine::{ActionRole, BoxFuture, Check, Evidence, StepContext, StepKind, StepResult};
use cutover_lang::{ActionKind, KeyId, RecordValues, Runbook, StepId, Zone, ZoneId};
use cutover_store::Phase;
use serde_json::{Value, json};

/// How long one query may take before its server counts as silent.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// `dns.ttl ZONE NAME... TYPE TTL [was TTL]`
pub struct DnsTtl;

/// `dns.switch ZONE NAME TYPE OLD -> NEW`
pub struct DnsSwitch;

/// `dns.add ZONE NAME TYPE VALUE[, VALUE...] [ttl TTL]` and
/// `dns.remove ZONE NAME TYPE VALUE[, VALUE...]`
pub struct DnsValues;

struct TtlArgs<'a> {
    zone: &'a Zone,
    names: &'a [String],
    rtype: RecordType,
    ttl: u32,
}

fn ttl_args<'a>(ctx: &'a StepContext<'a>) -> anyhow::Result<TtlArgs<'a>> {
    let ActionKind::DnsTtl {
        zone,
        names,
        rtype,
        ttl,
        ..
    } = &ctx.action.kind
    else {
        return Err(crate::wrong_action("dns.ttl", &ctx.action.kind));
    };
    Ok(TtlArgs {
        zone: ctx.runbook.zone(*zone),
        names,
        rtype: *rtype,
        ttl: seconds(*ttl)?,
    })
}

struct SwitchArgs<'a> {
    zone: &'a Zone,
    name: &'a str,
    rtype: RecordType,
    /// The whole RRset before the switch.
    old: &'a RecordValues,
    /// The whole RRset after it.
    new: &'a RecordValues,
}

fn switch_args<'a>(ctx: &'a StepContext<'a>) -> anyhow::Result<SwitchArgs<'a>> {
    let ActionKind::DnsSwitch {
        zone,
        name,
        rtype,
        old,
        new,
    } = &ctx.action.kind
    else {
        return Err(crate::wrong_action("dns.switch", &ctx.action.kind));
    };
    Ok(SwitchArgs {
        zone: ctx.runbook.zone(*zone),
        name,
        rtype: *rtype,
        old,
        new,
    })
}

fn seconds(duration: Duration) -> anyhow::Result<u32> {
    u32::try_from(duration.as_secs())
        .map_err(|_| anyhow::anyhow!("a TTL of {}s is longer than DNS allows", duration.as_secs()))
}

/// The servers that must agree: the zone's `verify` list, or its primary.
pub(crate) fn verify_servers(zone: &Zone) -> Vec<SocketAddr> {
    if zone.verify.is_empty() {
        vec![zone.primary]
    } else {
        zone.verify.clone()
    }
}

/// An updater for the zone's primary, signing with the zone's key.
fn updater(ctx: &StepContext<'_>, zone: &Zone, timeout: Duration) -> anyhow::Result<Updater> {
    let key = match zone.key {
        Some(key_id) => Some(tsig_key(ctx.runbook, ctx.runbook_dir(), key_id)?),
        None => None,
    };
    Ok(Updater::new(zone.primary, key, timeout))
}

/// A runbook key as a TSIG key: its secret read (env or file) and parsed.
/// Errors name the key, never the secret.
pub(crate) fn tsig_key(
    runbook: &Runbook,
    runbook_dir: &std::path::Path,
    key_id: KeyId,
) -> anyhow::Result<TsigKey> {
    let key = runbook.key(key_id);
    let text = cutover_engine::secrets::read_secret(runbook, runbook_dir, key_id)?;
    // "TSIG key `update` (env:MAEMO_TSIG): the secret is not valid base64".
    let source = format!("`{}` ({})", key.name, key.secret.reference());
    Ok(TsigKey::parse(
        &text,
        &source,
        Some(&key.name),
        Some(key.algorithm),
    )?)
}

/// One round of queries at every verify server.
async fn observe(
    servers: &[SocketAddr],
    checks: &[RecordCheck],
) -> anyhow::Result<Vec<VerifyReport>> {
    let options = VerifyOptions {
        timeout: Duration::ZERO,
        query_timeout: QUERY_TIMEOUT,
        ..VerifyOptions::default()
    };
    Ok(verify_many(servers, checks, options).await?)
}

/// Evidence of one round: per record and server, the answer, TTL, serial and time.
fn round_evidence(reports: &[VerifyReport]) -> (bool, Evidence) {
    let verified = reports.iter().all(|report| report.verified);
    let records: Vec<Value> = reports.iter().map(report_json).collect();
    let summary = if verified {
        let servers = reports.first().map_or(0, |report| report.servers.len());
        let what: Vec<String> = reports
            .iter()
            .map(|r| format!("{} {}", r.name, r.rtype))
            .collect();
        let by = match servers {
            1 => "its verify server".to_owned(),
            2 => "both verify servers".to_owned(),
            n => format!("all {n} verify servers"),
        };
        format!("{} served by {by}", what.join(", "))
    } else {
        let waiting: Vec<String> = reports
            .iter()
            .filter(|report| !report.verified)
            .map(|report| {
                let lagging: Vec<String> = report
                    .servers
                    .iter()
                    .filter(|server| !server.agrees)
                    .map(|server| match (&server.observation, &server.error) {
                        (_, Some(error)) => format!("{}: {error}", server.server),
                        (Some(obs), None) => format!(
                            "{} answers {} TTL {}",
                            server.server,
                            if obs.values.is_empty() {
                                "nothing".to_string()
                            } else {
                                obs.values.join(" ")
                            },
                            obs.ttl
                                .map_or_else(|| "-".to_string(), |ttl| ttl.to_string())
                        ),
                        (None, None) => format!("{}: not asked", server.server),
                    })
                    .collect();
                let mut text = format!("{} {}: {}", report.name, report.rtype, lagging.join("; "));
                if let Some(stale) = &report.stale {
                    text.push_str(&format!(" ({stale})"));
                }
                text
            })
            .collect();
        format!("waiting for {}", waiting.join(" | "))
    };
    (
        verified,
        Evidence::new(summary, json!({ "records": records })),
    )
}

fn report_json(report: &VerifyReport) -> Value {
    let servers: Vec<Value> = report
        .servers
        .iter()
        .map(|verdict| {
            json!({
                "server": verdict.server.to_string(),
                "values": verdict.observation.as_ref().map(|obs| obs.values.clone()),
                "ttl": verdict.observation.as_ref().and_then(|obs| obs.ttl),
                "serial": verdict.serial,
                "agrees": verdict.agrees,
                "error": verdict.error,
                "at": verdict.at.to_rfc3339(),
            })
        })
        .collect();
    json!({
        "name": report.name,
        "type": report.rtype.to_string(),
        "expected": {
            "values": report.expectation.values,
            "ttl": report.expectation.ttl,
            "min_serial": report.expectation.min_serial,
            "includes": report.expectation.includes,
            "excludes": report.expectation.excludes,
        },
        "verified": report.verified,
        "servers": servers,
        "stale": report.stale.as_ref().map(ToString::to_string),
    })
}

fn round_check(reports: &[VerifyReport]) -> Check {
    match round_evidence(reports) {
        (true, evidence) => Check::Satisfied(evidence),
        (false, evidence) => Check::NotYet(evidence),
    }
}

impl DnsTtl {
    fn checks(args: &TtlArgs<'_>) -> Vec<RecordCheck> {
        args.names
            .iter()
            .map(|name| RecordCheck {
                zone: args.zone.name.clone(),
                name: name.clone(),
                rtype: args.rtype,
                expect: Expectation {
                    ttl: Some(args.ttl),
                    ..Expectation::default()
                },
            })
            .collect()
    }
}

impl StepKind for DnsTtl {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            let args = ttl_args(ctx)?;
            let reports = observe(&verify_servers(args.zone), &Self::checks(&args)).await?;
            Ok(round_check(&reports))
        })
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async move {
            let args = ttl_args(ctx)?;
            let updater = updater(ctx, args.zone, QUERY_TIMEOUT)?;
            let mut changes = Vec::new();
            for name in args.names {
                // A resumed act finds names it already changed: their TTL
                // before the change is in the evidence of the first attempt.
                let current = query(
                    args.zone.primary,
                    &args.zone.name,
                    name,
                    args.rtype,
                    QUERY_TIMEOUT,
                )
                .await
                .map_err(dns_error)?;
                if current.ttl == Some(args.ttl) {
                    changes.push(json!({ "name": name, "previous_ttl": null, "new_ttl": args.ttl, "values": current.values }));
                    continue;
                }
                let change = updater
                    .set_ttl(&args.zone.name, name, args.rtype, args.ttl)
                    .await
                    .map_err(dns_error)?;
                changes.push(json!({
                    "name": name,
                    "previous_ttl": change.previous_ttl,
                    "new_ttl": change.new_ttl,
                    "values": change.values,
                }));
            }
            let previous: Vec<String> = changes
                .iter()
                .map(|c| match c["previous_ttl"].as_u64() {
                    Some(ttl) => format!("{} {ttl}s", c["name"].as_str().unwrap_or_default()),
                    None => format!("{} already", c["name"].as_str().unwrap_or_default()),
                })
                .collect();
            Ok(Evidence::new(
                format!(
                    "TTL {}s set at primary {} (before: {})",
                    args.ttl,
                    args.zone.primary,
                    previous.join(", ")
                ),
                json!({ "primary": args.zone.primary.to_string(), "changes": changes }),
            ))
        })
    }
}

/// What the verification of a switch has seen so far, per step and act:
/// when each verify server was first seen serving the new value (and at
/// which serial), and which servers were last reported as lagging. Kept in
/// the process: a resumed run starts it afresh from its first poll.
#[derive(Default)]
struct SwitchProgress {
    first_served: HashMap<SwitchAct, FirstServed>,
    /// The lagging servers last logged.
    lagging: HashMap<SwitchAct, String>,
}

/// One act of a switch: its step and when it acted.
type SwitchAct = (String, String);

/// Per server: when it was first seen serving the new value, at which serial.
type FirstServed = BTreeMap<String, (DateTime<Utc>, Option<u32>)>;

fn switch_progress() -> std::sync::MutexGuard<'static, SwitchProgress> {
    static PROGRESS: OnceLock<Mutex<SwitchProgress>> = OnceLock::new();
    PROGRESS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DnsSwitch {
    /// One round at every verify server: the new value, at `min_serial` or
    /// later. Before the act that is the serial the primary serves now (a
    /// secondary with the value from elsewhere but not the zone does not
    /// count); after it, the serial the update produced, read once right
    /// after the update — not the primary's current one, which on a zone
    /// that others also change moves on with every change.
    async fn round(
        args: &SwitchArgs<'_>,
        values: &[String],
        min_serial: Option<u32>,
    ) -> anyhow::Result<Vec<VerifyReport>> {
        let primary_serial = match min_serial {
            Some(serial) => serial,
            None => {
                soa(args.zone.primary, &args.zone.name, QUERY_TIMEOUT)
                    .await?
                    .serial
            }
        };
        let check = RecordCheck {
            zone: args.zone.name.clone(),
            name: args.name.to_string(),
            rtype: args.rtype,
            expect: Expectation {
                values: Some(values.to_vec()),
                min_serial: Some(primary_serial),
                ..Expectation::default()
            },
        };
        observe(&verify_servers(args.zone), &[check]).await
    }

    /// Notes, per verify server, when it was first seen serving the new
    /// value (logged once per server, with its lag after the update), and
    /// logs which servers still lag whenever that set changes ("waiting on
    /// 192.0.2.53: serial 41 < 42"). Returns the per-server figures for the
    /// evidence.
    fn note_progress(
        ctx: &StepContext<'_>,
        reports: &[VerifyReport],
        acted_at: Option<DateTime<Utc>>,
        min_serial: Option<u32>,
    ) -> anyhow::Result<Value> {
        let key = (
            ctx.step_name().to_owned(),
            acted_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        );
        let mut messages = Vec::new();
        let (servers, lagging_text) = {
            let mut progress = switch_progress();
            let first = progress.first_served.entry(key.clone()).or_default();
            let mut lagging = Vec::new();
            for verdict in reports.iter().flat_map(|r| &r.servers) {
                let server = verdict.server.to_string();
                if verdict.agrees {
                    if !first.contains_key(&server) {
                        first.insert(server.clone(), (verdict.at, verdict.serial));
                        let lag = acted_at.map_or_else(String::new, |at| {
                            format!(
                                ", {:.1}s after the update",
                                (verdict.at - at).num_milliseconds().max(0) as f64 / 1000.0
                            )
                        });
                        let serial = verdict
                            .serial
                            .map_or_else(String::new, |s| format!(" at serial {s}"));
                        messages.push(format!("{server} serves the new value{serial}{lag}"));
                    }
                } else {
                    let why = match (verdict.serial, min_serial, &verdict.error) {
                        (_, _, Some(error)) => format!("{server}: {error}"),
                        (Some(seen), Some(wanted), None) if seen < wanted => {
                            format!("{server}: serial {seen} < {wanted}")
                        }
                        _ => format!("{server}: not the new value yet"),
                    };
                    if !lagging.contains(&why) {
                        lagging.push(why);
                    }
                }
            }
            let servers: Vec<Value> = first
                .iter()
                .map(|(server, (at, serial))| {
                    json!({
                        "server": server,
                        "first_served_at": at.to_rfc3339(),
                        "serial": serial,
                        "lag_seconds": acted_at.map(|a| (*at - a).num_milliseconds().max(0) as f64 / 1000.0),
                    })
                })
                .collect();
            let text = if lagging.is_empty() {
                String::new()
            } else {
                format!("waiting on {}", lagging.join(", "))
            };
            let changed = progress.lagging.get(&key) != Some(&text);
            if changed {
                progress.lagging.insert(key, text.clone());
            }
            (servers, changed.then_some(text).filter(|t| !t.is_empty()))
        };
        for message in messages.iter().chain(lagging_text.iter()) {
            ctx.message(message)?;
        }
        Ok(Value::Array(servers))
    }

    /// The latest earlier `dns.ttl` step that lowered this record.
    fn lowering_step(
        runbook: &Runbook,
        this: StepId,
        (zone_id, name, rtype): (ZoneId, &str, RecordType),
    ) -> Option<StepId> {
        runbook.steps[..this.0]
            .iter()
            .enumerate()
            .rev()
            .find(|(_, step)| match &step.action.kind {
                ActionKind::DnsTtl {
                    zone,
                    names,
                    rtype: ttl_rtype,
                    ..
                } => *zone == zone_id && *ttl_rtype == rtype && names.iter().any(|n| n == name),
                _ => false,
            })
            .map(|(index, _)| StepId(index))
    }

    /// When caches may still hold the value from before the lowering step:
    /// its verification time plus the TTL it replaced (recorded, or the
    /// runbook's `was`, whichever is longer). For an undo (switching back),
    /// caches can only hold what was served since the lowering, so the TTL
    /// that counts is the lowered one.
    fn caches_expire_at(
        ctx: &StepContext<'_>,
        lowering: StepId,
        name: &str,
    ) -> anyhow::Result<Option<(DateTime<Utc>, u64)>> {
        let Some(verified) = ctx.evidence_of(lowering, Phase::Verify)? else {
            return Ok(None);
        };
        if ctx.role == ActionRole::Undo {
            let lowered = match &ctx.runbook.step(lowering).action.kind {
                ActionKind::DnsTtl { ttl, .. } => ttl.as_secs(),
                _ => return Ok(None),
            };
            let lowered_signed = i64::try_from(lowered).unwrap_or(i64::MAX);
            return Ok(Some((
                verified.at + chrono::Duration::seconds(lowered_signed),
                lowered,
            )));
        }
        let declared = match &ctx.runbook.step(lowering).action.kind {
            ActionKind::DnsTtl { previous_ttl, .. } => previous_ttl.map(|d| d.as_secs()),
            _ => None,
        };
        let recorded = ctx.evidence_of(lowering, Phase::Act)?.and_then(|act| {
            act.data["changes"]
                .as_array()?
                .iter()
                .filter(|change| change["name"] == name)
                .filter_map(|change| change["previous_ttl"].as_u64())
                .max()
        });
        let Some(old_ttl) = declared.max(recorded) else {
            return Ok(None);
        };
        let old_ttl_signed = i64::try_from(old_ttl).unwrap_or(i64::MAX);
        Ok(Some((
            verified.at + chrono::Duration::seconds(old_ttl_signed),
            old_ttl,
        )))
    }

    /// Waits until the old TTL has expired everywhere, unless told not to,
    /// before an action that takes served values away (a switch, a removal).
    async fn wait_out_old_ttl(ctx: &StepContext<'_>) -> anyhow::Result<Value> {
        let record = ctx.action.kind.retired_record();
        let Some(lowering) = record.and_then(|r| Self::lowering_step(ctx.runbook, ctx.step, r))
        else {
            return Ok(json!({ "lowered_by": null }));
        };
        let name = record.map_or("", |(_, name, _)| name);
        let lowering_name = &ctx.runbook.step(lowering).name;
        let Some((expires, old_ttl)) = Self::caches_expire_at(ctx, lowering, name)? else {
            return Ok(json!({ "lowered_by": lowering_name, "old_ttl": null }));
        };
        let remaining = (expires - Utc::now()).to_std().unwrap_or_default();
        let mut waited = false;
        if !remaining.is_zero() {
            if ctx.options.no_ttl_wait {
                ctx.message(&format!(
                    "not waiting {}s for the old TTL ({old_ttl}s, lowered by `{lowering_name}`) to expire: --no-ttl-wait was confirmed",
                    remaining.as_secs()
                ))?;
            } else {
                ctx.countdown(expires, &format!("old TTL {old_ttl}s expiring"));
                ctx.sleep(remaining).await?;
                waited = true;
            }
        }
        Ok(json!({
            "lowered_by": lowering_name,
            "old_ttl": old_ttl,
            "caches_expired_at": expires.to_rfc3339(),
            "waited_seconds": if waited { remaining.as_secs() } else { 0 },
            "wait_skipped": ctx.options.no_ttl_wait && !remaining.is_zero(),
        }))
    }
}

impl StepKind for DnsSwitch {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            let args = switch_args(ctx)?;
            Ok(round_check(&Self::round(&args, &args.new.0, None).await?))
        })
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async move {
            let args = switch_args(ctx)?;
            let ttl_wait = Self::wait_out_old_ttl(ctx).await?;
            let current = query(
                args.zone.primary,
                &args.zone.name,
                args.name,
                args.rtype,
                QUERY_TIMEOUT,
            )
            .await
            .map_err(dns_error)?;
            let new = cutover_dns::canonical_input(args.rtype, &args.new.0).map_err(dns_error)?;
            let swapped = if current.values == new {
                // A resumed act whose update had already landed.
                false
            } else {
                // A stop requested during the countdown ends the act here.
                ctx.may_start_effect()?;
                let ttl = current.ttl.unwrap_or(300);
                updater(ctx, args.zone, QUERY_TIMEOUT)?
                    .compare_and_swap(
                        &args.zone.name,
                        args.name,
                        args.rtype,
                        &args.old.0,
                        &args.new.0,
                        ttl,
                    )
                    .await
                    .map_err(dns_error)?;
                true
            };
            let serial = soa(args.zone.primary, &args.zone.name, QUERY_TIMEOUT)
                .await
                .map_err(dns_error)?
                .serial;
            let summary = if swapped {
                format!(
                    "{} {} {} -> {} at primary {}, serial {serial}",
                    current.name, args.rtype, args.old, args.new, args.zone.primary
                )
            } else {
                format!(
                    "{} {} already {} at primary {}, serial {serial}",
                    current.name, args.rtype, args.new, args.zone.primary
                )
            };
            Ok(Evidence::new(
                summary,
                json!({
                    "primary": args.zone.primary.to_string(),
                    "old": args.old.to_string(),
                    "new": args.new.to_string(),
                    "old_values": args.old.0,
                    "new_values": args.new.0,
                    "swapped": swapped,
                    "ttl": current.ttl,
                    "serial": serial,
                    "ttl_wait": ttl_wait,
                }),
            ))
        })
    }

    fn verify<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move {
            let args = switch_args(ctx)?;
            // The serial the update produced (the act's evidence of this
            // attempt); an undo, whose act keeps no evidence, reads the
            // primary's.
            let acted = match ctx.role {
                ActionRole::Undo => None,
                _ => ctx.evidence_of(ctx.step, Phase::Act)?,
            };
            let min_serial = acted
                .as_ref()
                .and_then(|e| e.data["serial"].as_u64())
                .and_then(|s| u32::try_from(s).ok());
            let reports = Self::round(&args, &args.new.0, min_serial).await?;
            let (verified, mut evidence) = round_evidence(&reports);
            let acted_at = acted.as_ref().map(|e| e.at);
            evidence.data["servers"] = Self::note_progress(ctx, &reports, acted_at, min_serial)?;
            if !verified {
                return Ok(Check::NotYet(evidence));
            }
            if !args.zone.resolvers.is_empty() {
                let fqdn = reports.first().map_or_else(String::new, |r| r.name.clone());
                let expiry = cache_expiry(&args.zone.resolvers, &fqdn, args.rtype, QUERY_TIMEOUT)
                    .await
                    .map_err(dns_error)?;
                let resolvers: Vec<Value> = expiry
                    .resolvers
                    .iter()
                    .map(|r| json!({ "resolver": r.resolver.to_string(), "remaining_ttl": r.remaining, "error": r.error }))
                    .collect();
                let worst = expiry.worst_case.map(|d| d.as_secs());
                if let Some(worst) = worst {
                    evidence.summary.push_str(&format!(
                        "; resolver caches may hold the old answer for up to {worst}s more"
                    ));
                }
                evidence.data["caches"] =
                    json!({ "resolvers": resolvers, "worst_case_seconds": worst });
            }
            Ok(Check::Satisfied(evidence))
        })
    }
}

/// The TTL of an RRset that `dns.add` creates when the runbook names none.
const DEFAULT_ADD_TTL: u32 = 300;

struct ValuesArgs<'a> {
    zone: &'a Zone,
    name: &'a str,
    rtype: RecordType,
    values: &'a RecordValues,
    /// The TTL of a set `dns.add` creates.
    ttl: Option<Duration>,
    /// `dns.add` (else `dns.remove`).
    adding: bool,
}

fn values_args<'a>(ctx: &'a StepContext<'a>) -> anyhow::Result<ValuesArgs<'a>> {
    let (zone, name, rtype, values, ttl, adding) = match &ctx.action.kind {
        ActionKind::DnsAdd {
            zone,
            name,
            rtype,
            values,
            ttl,
        } => (zone, name, rtype, values, *ttl, true),
        ActionKind::DnsRemove {
            zone,
            name,
            rtype,
            values,
        } => (zone, name, rtype, values, None, false),
        other => return Err(crate::wrong_action("dns.add or dns.remove", other)),
    };
    Ok(ValuesArgs {
        zone: ctx.runbook.zone(*zone),
        name,
        rtype: *rtype,
        values,
        ttl,
        adding,
    })
}

/// One round at every verify server: the set holds every value (`dns.add`)
/// or none of them (`dns.remove`), at `min_serial` or later — the serial the
/// update produced, or before the act (`None`) the primary's current one.
async fn values_round(
    args: &ValuesArgs<'_>,
    min_serial: Option<u32>,
) -> anyhow::Result<Vec<VerifyReport>> {
    let min_serial = match min_serial {
        Some(serial) => serial,
        None => {
            soa(args.zone.primary, &args.zone.name, QUERY_TIMEOUT)
                .await?
                .serial
        }
    };
    let values = Some(args.values.0.clone());
    let (includes, excludes) = if args.adding {
        (values, None)
    } else {
        (None, values)
    };
    let check = RecordCheck {
        zone: args.zone.name.clone(),
        name: args.name.to_string(),
        rtype: args.rtype,
        expect: Expectation {
            min_serial: Some(min_serial),
            includes,
            excludes,
            ..Expectation::default()
        },
    };
    observe(&verify_servers(args.zone), &[check]).await
}

fn values_check<'a>(ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
    Box::pin(async move {
        let args = values_args(ctx)?;
        Ok(round_check(&values_round(&args, None).await?))
    })
}

/// Adds the values the primary's set lacks, or removes those it holds; a
/// value already as wanted is left alone and named in the evidence.
fn values_act<'a>(ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
    Box::pin(async move {
        let args = values_args(ctx)?;
        // Caches may hand out a removed value for the TTL it had.
        let ttl_wait = if args.adding {
            None
        } else {
            Some(DnsSwitch::wait_out_old_ttl(ctx).await?)
        };
        let current = query(
            args.zone.primary,
            &args.zone.name,
            args.name,
            args.rtype,
            QUERY_TIMEOUT,
        )
        .await
        .map_err(dns_error)?;
        let wanted = cutover_dns::canonical_input(args.rtype, &args.values.0).map_err(dns_error)?;
        // Pairs of (as written, canonical); `change` is what the update sends.
        let (change, unchanged): (Vec<_>, Vec<_>) = args
            .values
            .iter()
            .zip(&wanted)
            .partition(|(_, canonical)| current.values.contains(canonical) != args.adding);
        let change: Vec<&String> = change.into_iter().map(|(written, _)| written).collect();
        let unchanged: Vec<&String> = unchanged.into_iter().map(|(written, _)| written).collect();
        if !change.is_empty() {
            ctx.may_start_effect()?;
            let updater = updater(ctx, args.zone, QUERY_TIMEOUT)?;
            if args.adding {
                // A set that exists keeps its TTL; a new one takes the runbook's.
                let ttl = match (current.ttl, args.ttl) {
                    (Some(ttl), _) if !current.values.is_empty() => ttl,
                    (_, Some(ttl)) => seconds(ttl)?,
                    _ => DEFAULT_ADD_TTL,
                };
                updater
                    .add_values(&args.zone.name, args.name, args.rtype, &change, ttl)
                    .await
            } else {
                updater
                    .remove_values(&args.zone.name, args.name, args.rtype, &change)
                    .await
            }
            .map_err(dns_error)?;
        }
        let serial = soa(args.zone.primary, &args.zone.name, QUERY_TIMEOUT)
            .await
            .map_err(dns_error)?
            .serial;
        let (sign, verb, state) = if args.adding {
            ("+", "added", "already present")
        } else {
            ("-", "removed", "already absent")
        };
        let list = |values: &[&String]| RecordValues(values.iter().map(|v| (*v).clone()).collect());
        let mut parts = Vec::new();
        if !change.is_empty() {
            parts.push(format!("{sign} {}", list(&change)));
        }
        if !unchanged.is_empty() {
            parts.push(format!("{} {state}", list(&unchanged)));
        }
        let mut data = json!({
            "primary": args.zone.primary.to_string(),
            verb: change,
            "unchanged": unchanged,
            "changed": !change.is_empty(),
            "values_before": current.values,
            "serial": serial,
        });
        if let Some(ttl_wait) = ttl_wait {
            data["ttl_wait"] = ttl_wait;
        }
        Ok(Evidence::new(
            format!(
                "{} {} {} at primary {}, serial {serial}",
                current.name,
                args.rtype,
                parts.join("; "),
                args.zone.primary
            ),
            data,
        ))
    })
}

/// Verification at every verify server, at the serial the update produced
/// (the act's evidence; an undo, whose act keeps no evidence, reads the
/// primary's), with the same per-server progress as a switch.
fn values_verify<'a>(ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
    Box::pin(async move {
        let args = values_args(ctx)?;
        let acted = match ctx.role {
            ActionRole::Undo => None,
            _ => ctx.evidence_of(ctx.step, Phase::Act)?,
        };
        let min_serial = acted
            .as_ref()
            .and_then(|e| e.data["serial"].as_u64())
            .and_then(|s| u32::try_from(s).ok());
        let reports = values_round(&args, min_serial).await?;
        let (verified, mut evidence) = round_evidence(&reports);
        let acted_at = acted.as_ref().map(|e| e.at);
        evidence.data["servers"] = DnsSwitch::note_progress(ctx, &reports, acted_at, min_serial)?;
        Ok(if verified {
            Check::Satisfied(evidence)
        } else {
            Check::NotYet(evidence)
        })
    })
}

impl StepKind for DnsValues {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        values_check(ctx)
    }

    fn act<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        values_act(ctx)
    }

    fn verify<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        values_verify(ctx)
    }
}
