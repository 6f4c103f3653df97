//! Where a check's connections are made from (`from HOST`): a port open
//! from the coordinator says little about what the new host's clients can
//! reach. Without `from`, and from a `via local` host (which is this
//! machine), they are made here; from a `via agent` or `via ssh` host, by
//! the host's agent ([`cutover_copy::agent::AgentClient::connect`] and
//! [`tunnel`](cutover_copy::agent::AgentClient::tunnel)), started the way
//! copies start it ([`location_in`]).

use std::net::SocketAddr;
use std::time::Duration;

use cutover_copy::Location;
use cutover_copy::agent::AgentClient;
use cutover_copy::protocol::Reach;
use cutover_engine::{StepContext, StepError};
use cutover_lang::{Endpoint, HostId};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::copy::location_in;
use crate::copy_error;

/// The place a check connects from.
pub(crate) enum Vantage {
    /// This machine: no `from`, or a `via local` host.
    Here { host: Option<Named> },
    /// A host whose agent makes the connections.
    Agent { host: Named, command: Vec<String> },
}

/// A runbook host as evidence names it.
pub(crate) struct Named {
    pub name: String,
    pub addr: std::net::IpAddr,
}

/// A byte stream to a check's target, from wherever the check runs.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connection a check made: the stream and, from an agent, the
/// connection's address on that host.
pub(crate) struct Opened {
    pub stream: Box<dyn Stream>,
    pub local: Option<String>,
}

impl Vantage {
    /// Where the check of `ctx` connects from.
    pub fn of(ctx: &StepContext<'_>, from: Option<HostId>) -> Vantage {
        let Some(id) = from else {
            return Vantage::Here { host: None };
        };
        let host = ctx.runbook.host(id);
        let named = Named {
            name: host.name.clone(),
            addr: host.addr,
        };
        let anywhere = Endpoint {
            host: id,
            path: String::new(),
        };
        match location_in(ctx.runbook, ctx.runbook_dir(), &anywhere) {
            Location::Agent { command, .. } => Vantage::Agent {
                host: named,
                command,
            },
            Location::Local(_) | Location::Rooted { .. } => Vantage::Here { host: Some(named) },
        }
    }

    /// `from old-lb (10.0.0.9)`, or `None` for the coordinator itself.
    pub fn place(&self) -> Option<String> {
        match self {
            Vantage::Here { host: None } => None,
            Vantage::Here { host: Some(h) } => {
                Some(format!("from {} ({}, this machine)", h.name, h.addr))
            }
            Vantage::Agent { host, .. } => Some(format!("from {} ({})", host.name, host.addr)),
        }
    }

    /// The `from` host for evidence data.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Vantage::Here { host: None } => serde_json::Value::Null,
            Vantage::Here { host: Some(h) } | Vantage::Agent { host: h, .. } => {
                serde_json::json!({ "host": h.name, "addr": h.addr.to_string() })
            }
        }
    }

    /// TCP connects to every target, each within `timeout`: for each, in
    /// order, the local address of an accepted connection (from an agent)
    /// or why it was not. `Err` when the agent itself failed.
    pub async fn connect_all(
        &self,
        targets: &[SocketAddr],
        timeout: Duration,
        concurrent: usize,
    ) -> Result<Vec<Result<Option<String>, String>>, StepError> {
        match self {
            Vantage::Here { .. } => {
                let mut results = Vec::with_capacity(targets.len());
                for chunk in targets.chunks(concurrent.max(1)) {
                    let connects = chunk.iter().map(|addr| async move {
                        connect_here(*addr, timeout).await.map(|_| None)
                    });
                    results.extend(futures_util::future::join_all(connects).await);
                }
                Ok(results)
            }
            Vantage::Agent { host, command } => {
                let command = command.clone();
                let wanted: Vec<(String, u16)> = targets
                    .iter()
                    .map(|a| (a.ip().to_string(), a.port()))
                    .collect();
                let outcomes = tokio::task::spawn_blocking(move || {
                    AgentClient::spawn(&command)?.connect(wanted, timeout)
                })
                .await
                .map_err(|e| StepError::from(anyhow::anyhow!("the connect thread failed: {e}")))?
                .map_err(|e| copy_error(e.context(&format!("agent on {}", host.name))))?;
                Ok(outcomes
                    .into_iter()
                    .map(|outcome| match outcome {
                        Reach::Open { local, .. } => Ok(Some(local)),
                        Reach::Failed { error } => Err(error),
                    })
                    .collect())
            }
        }
    }

    /// One connection to `host:port` (a name resolves where the connection
    /// is made), made within `timeout`. `Err` says why there is none: the
    /// agent's failure or the connect's.
    pub async fn open(&self, host: &str, port: u16, timeout: Duration) -> Result<Opened, String> {
        match self {
            Vantage::Here { .. } => {
                let addr = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
                    .await
                    .map_err(|_| format!("{host} did not resolve within {timeout:?}"))?
                    .map_err(|e| format!("{host} does not resolve: {e}"))?
                    .next()
                    .ok_or_else(|| format!("{host} has no address"))?;
                let stream = connect_here(addr, timeout).await?;
                Ok(Opened {
                    stream: Box::new(stream),
                    local: None,
                })
            }
            Vantage::Agent {
                host: from,
                command,
            } => {
                let command = command.clone();
                let target = host.to_string();
                let tunnel = tokio::task::spawn_blocking(move || {
                    AgentClient::spawn(&command)?.tunnel(&target, port, timeout)
                })
                .await
                .map_err(|e| format!("the connect thread failed: {e}"))?
                .map_err(|e| match e.kind {
                    cutover_copy::ErrorKind::Unreachable => e.message,
                    _ => format!("agent on {}: {}", from.name, e.message),
                })?;
                let setup = |e: std::io::Error| format!("the tunnel from {}: {e}", from.name);
                tunnel.stream.set_nonblocking(true).map_err(setup)?;
                let stream = tokio::net::UnixStream::from_std(tunnel.stream).map_err(setup)?;
                Ok(Opened {
                    stream: Box::new(stream),
                    local: Some(tunnel.local),
                })
            }
        }
    }
}

/// A TCP connect from this machine, within `timeout`.
async fn connect_here(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}
