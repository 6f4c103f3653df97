//! Preflight: before the first step of a run, prove that every DNS step
//! can act. Each zone's key is read (env or file present, a valid secret)
//! and used once in a signed, side-effect-free request to the zone's primary
//! (a TSIG-signed SOA query), so a missing variable or a wrong key is
//! reported before anything runs, not when the first DNS step acts in the
//! middle of the window.

use crate::dns::tsig_key;
use cutover_dns::Updater;
use cutover_lang::{ActionKind, Runbook, ZoneId};
use std::path::Path;
use std::time::Duration;

/// How long the primary may take to answer the signed query.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(3);

/// A zone whose key cannot be used: which key, which server, what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("preflight: zone {zone}: key `{key}` at {server}: {problem}")]
pub struct PreflightError {
    pub zone: String,
    pub key: String,
    pub server: String,
    pub problem: String,
}

/// What preflight proved, one line per zone with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightOk {
    pub zone: String,
    pub key: String,
    pub server: String,
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
        let fail = |problem: String| PreflightError {
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
            Ok(()) => proved.push(PreflightOk {
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
    if failed.is_empty() {
        Ok(proved)
    } else {
        Err(failed)
    }
}

/// Whether an action sends updates to the zone.
fn updates_zone(kind: &ActionKind, zone: ZoneId) -> bool {
    matches!(
        kind,
        ActionKind::DnsTtl { zone: z, .. } | ActionKind::DnsSwitch { zone: z, .. } if *z == zone
    )
}
