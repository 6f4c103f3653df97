//! The step kinds, one module each, implementing the engine's
//! [`StepKind`](cutover_engine::StepKind). [`Kinds`] maps an action to its
//! kind with one `match`: adding a kind is a module and one line there.

pub mod copy;
pub mod dns;
pub mod exec;
pub mod http;
pub mod manual;
pub mod port;
pub mod probe;
pub mod wait;

use cutover_engine::{KindRegistry, StepKind};
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
            ActionKind::ImageCopy { .. } => &copy::ImageCopy,
            ActionKind::DbSync { .. } => &copy::DbSync,
        })
    }
}

/// A kind got an action of another kind: a registry bug, reported plainly.
fn wrong_action(expected: &str, action: &ActionKind) -> anyhow::Error {
    anyhow::anyhow!(
        "the {expected} kind was given a `{}` action",
        action.keyword()
    )
}
