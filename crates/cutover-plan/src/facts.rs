//! Facts read from the live world (`cutover plan --probe`), passed to the
//! planner as plain data so that the planner itself never does IO. Whoever
//! probes fills what it could read; anything missing simply stays unknown.

use cutover_lang::units::Size;
use cutover_lang::{DbServer, Endpoint, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Everything a probe observed, each fact tagged with what it is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeFacts {
    /// Live answers for records, one entry per record per server asked.
    pub records: Vec<RecordFact>,
    /// The live NS set of a zone, as published by the zone itself.
    pub zone_ns: Vec<ZoneNsFact>,
    /// The SOA serial each server answered for a zone.
    pub soa_serials: Vec<SoaFact>,
    /// Sizes of copy sources (`image.copy`, `db.sync`), read on the host.
    pub source_sizes: Vec<SizeFact>,
    /// Sizes of replicating `db.sync` sources, as their servers report them.
    /// (Not held by a reviewed plan: a live database grows as it is written.)
    pub database_sizes: Vec<DatabaseSizeFact>,
    /// What could not be read (a server that did not answer, a source that
    /// could not be opened), each a sentence naming it.
    pub problems: Vec<String>,
}

/// One record as one server answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFact {
    /// Zone name as in the runbook, e.g. `maemo.org`.
    pub zone: String,
    /// Name relative to the zone as in the runbook (`@` is the apex).
    pub name: String,
    pub rtype: RecordType,
    pub server: SocketAddr,
    pub ttl: Duration,
    /// Values in zone-file syntax; empty when the server has no such record.
    pub values: Vec<String>,
}

/// The NS records of a zone and the addresses they resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneNsFact {
    pub zone: String,
    pub servers: Vec<NameServer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServer {
    /// e.g. `ns2.example.net`
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoaFact {
    pub zone: String,
    pub server: SocketAddr,
    pub serial: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeFact {
    pub endpoint: Endpoint,
    pub size: Size,
}

/// What a database server reports one database holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSizeFact {
    pub server: DbServer,
    pub size: Size,
}

impl ProbeFacts {
    /// The longest TTL any server answered for a record: how long a cache
    /// may hold it.
    pub fn live_ttl(&self, zone: &str, name: &str, rtype: RecordType) -> Option<Duration> {
        self.records
            .iter()
            .filter(|r| {
                r.zone == zone && r.name == name && r.rtype == rtype && !r.values.is_empty()
            })
            .map(|r| r.ttl)
            .max()
    }

    pub fn zone_ns(&self, zone: &str) -> Option<&ZoneNsFact> {
        self.zone_ns.iter().find(|z| z.zone == zone)
    }

    pub fn source_size(&self, endpoint: &Endpoint) -> Option<Size> {
        self.source_sizes
            .iter()
            .find(|s| &s.endpoint == endpoint)
            .map(|s| s.size)
    }

    /// The probed size of a replicating `db.sync`'s source database.
    pub fn database_size(&self, server: &DbServer) -> Option<Size> {
        self.database_sizes
            .iter()
            .find(|s| &s.server == server)
            .map(|s| s.size)
    }
}
