//! What clients see: the runbook's recursive resolvers, asked through
//! hickory-resolver how long their caches may still hold an answer.
//!
//! Verification asks authoritative servers one at a time, without a cache
//! ([`crate::verify_all`]); this asks the resolvers clients use, which answer
//! from their caches, so the TTL they report is the time left until they ask
//! again. It is information for the coordinator, never a condition of a
//! step. Each resolver gets a fresh hickory resolver of its own, with no cache
//! and no search domains, so what is reported is what that resolver said.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use hickory_proto::rr::{Name, RecordType as WireType};
use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::error::DnsError;
use crate::records::{RecordType, wire, zone_name};

/// What one resolver still has cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    /// The resolver asked.
    pub resolver: SocketAddr,
    /// The remaining TTL it reported; `None` when it gave no record.
    pub remaining: Option<u32>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

/// Informational: how long resolvers may keep serving an old answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExpiry {
    /// Per resolver, in the order given.
    pub resolvers: Vec<CachedAnswer>,
    /// The longest remaining TTL among them: the worst case until every cache has expired.
    pub worst_case: Option<Duration>,
}

/// Asks each resolver (recursively) for `name`/`rtype` and reports the remaining TTLs.
pub async fn cache_expiry(
    resolvers: &[SocketAddr],
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<CacheExpiry, DnsError> {
    let name = zone_name(name)?;
    let rtype = wire(rtype);
    let name = &name;
    let answers: Vec<CachedAnswer> = stream::iter(resolvers.iter().copied())
        .map(|resolver| async move {
            match remaining_ttl(resolver, name, rtype, timeout).await {
                Ok(remaining) => CachedAnswer {
                    resolver,
                    remaining,
                    error: None,
                },
                Err(error) => CachedAnswer {
                    resolver,
                    remaining: None,
                    error: Some(error),
                },
            }
        })
        .buffered(16)
        .collect()
        .await;
    let worst_case = answers
        .iter()
        .filter_map(|answer| answer.remaining)
        .max()
        .map(|seconds| Duration::from_secs(u64::from(seconds)));
    Ok(CacheExpiry {
        resolvers: answers,
        worst_case,
    })
}

/// The lowest TTL among `resolver`'s records of `name`/`rtype`; `None` when
/// it has none (no such name, or no such record).
async fn remaining_ttl(
    resolver: SocketAddr,
    name: &Name,
    rtype: WireType,
    timeout: Duration,
) -> Result<Option<u32>, String> {
    let connection = |mut config: ConnectionConfig| {
        config.port = resolver.port();
        config
    };
    let mut server = NameServerConfig::udp_and_tcp(resolver.ip());
    server.connections = vec![
        connection(ConnectionConfig::udp()),
        connection(ConnectionConfig::tcp()),
    ];
    let mut options = ResolverOpts::default();
    options.cache_size = 0;
    options.timeout = timeout;
    options.attempts = 1;
    options.recursion_desired = true;
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![server]),
        TokioRuntimeProvider::default(),
    );
    *builder.options_mut() = options;
    let lookup = builder
        .build()
        .map_err(|err| format!("{resolver}: {err}"))?;
    match lookup.lookup(name.clone(), rtype).await {
        Ok(found) => Ok(found
            .answers()
            .iter()
            .filter(|record| record.record_type() == rtype)
            .map(|record| record.ttl)
            .min()),
        Err(err) if err.is_no_records_found() || err.is_nx_domain() => Ok(None),
        Err(err) => Err(format!("{resolver}: {err}")),
    }
}
