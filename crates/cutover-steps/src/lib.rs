//! The step kinds, one module each, implementing the engine's
//! [`StepKind`](cutover_engine::StepKind). [`Kinds`] maps an action to its
//! kind with one `match`: adding a kind is a module and one line there.

pub mod copy;
pub mod db;
pub mod dns;
pub mod exec;
pub mod http;
pub mod manual;
pub mod port;
pub mod preflight;
pub mod probe;
mod vantage;
pub mod wait;

use cutover_engine::{KindRegistry, StepError, StepKind};
use cutover_lang::ActionKind;

/// Every kind this build runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kinds;

impl KindRegistry for Kinds {
    fn kind_for(&self, action: &ActionKind) -> anyhow::Result<&'static dyn StepKind> {
        Ok(match action {
            ActionKind::Manual { .. } => &manual::Manual,
            ActionKind::Wait(_) => &wait::Wait,
            ActionKind::Exec { .. } => &exec::Exec,
            ActionKind::PortOpen { .. } => &port::PortOpen,
            ActionKind::PortClosed { .. } => &port::PortClosed,
            ActionKind::HttpCheck { .. } => &http::HttpCheck,
            ActionKind::DnsTtl { .. } => &dns::DnsTtl,
            ActionKind::DnsSwitch { .. } => &dns::DnsSwitch,
            ActionKind::DnsAdd { .. } | ActionKind::DnsRemove { .. } => &dns::DnsValues,
            ActionKind::ImageCopy { .. } => &copy::ImageCopy,
            ActionKind::DbSync { .. } => &copy::DbSync,
            ActionKind::DbReplicate { .. } => &db::DbReplicate,
            ActionKind::DbUnfollow { .. } => &db::DbUnfollow,
        })
    }
}

/// A DNS failure as a step error, naming the server. Refused keys,
/// malformed input, a record that is not what the runbook expects (the
/// compare-and-swap refused) and a server that is not authoritative are
/// fatal: another attempt would be refused the same way. Timeouts and
/// network errors may pass on another attempt.
pub(crate) fn dns_error(err: cutover_dns::DnsError) -> StepError {
    use cutover_dns::DnsError as E;
    let server = match &err {
        E::Timeout { server, .. }
        | E::Network { server, .. }
        | E::PrerequisiteFailed { server, .. }
        | E::TsigFailed { server, .. }
        | E::Refused { server, .. }
        | E::NotAuthoritative { server, .. }
        | E::NotInZone { server, .. } => Some(server.to_string()),
        _ => None,
    };
    let fatal = !matches!(err, E::Timeout { .. } | E::Network { .. });
    let step_error = if fatal {
        StepError::fatal(err)
    } else {
        StepError::from(anyhow::Error::from(err))
    };
    match server {
        Some(server) => step_error.on(server),
        None => step_error,
    }
}

/// A copy failure as a step error: a protocol or version mismatch, a path
/// outside the agent's root, refused permissions and invalid input are
/// fatal; a full disk, a dead agent, I/O and verification failures and a
/// target the agent could not reach may pass on another attempt (after
/// space is freed, the agent restarted, the service started).
pub(crate) fn copy_error(err: cutover_copy::CopyError) -> StepError {
    use cutover_copy::ErrorKind as K;
    match err.kind {
        K::Cancelled => StepError::Interrupted,
        K::VersionMismatch
        | K::Protocol
        | K::OutsideRoot
        | K::PermissionDenied
        | K::InvalidInput
        | K::NotFound => StepError::fatal(err),
        K::NoSpace | K::AgentFailed | K::Verification | K::Sqlite | K::Io | K::Unreachable => {
            StepError::from(anyhow::Error::from(err))
        }
    }
}

/// A kind got an action of another kind: a registry bug, reported plainly.
fn wrong_action(expected: &str, action: &ActionKind) -> anyhow::Error {
    anyhow::anyhow!(
        "the {expected} kind was given a `{}` action",
        action.keyword()
    )
}
