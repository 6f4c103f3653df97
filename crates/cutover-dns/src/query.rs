//! Verification queries: one question to one server, no cache in between.
//!
//! A resolver would answer from its cache and hide exactly what a cutover must see, so each
//! question goes straight to the server named. Queries to one server share one UDP socket and
//! are matched by message id, so thousands can be in flight at once (see the `verify` bench);
//! a truncated answer is asked again over TCP.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::DnsError;
use crate::records::{canonical_values, owner_name, rcode_name, zone_name};

/// Largest UDP answer we advertise (the DNS flag day 2020 value).
const UDP_PAYLOAD: u16 = 1232;

/// What one server answered for one name and type, at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The server asked.
    pub server: SocketAddr,
    /// The fully qualified name asked for.
    pub name: String,
    /// The record type asked for.
    pub rtype: RecordType,
    /// The values served, canonical and sorted; empty when the record does not exist.
    pub values: Vec<String>,
    /// The TTL served (the smallest, should the records disagree); `None` when no record.
    pub ttl: Option<u32>,
    /// Whether the answer carried the AA flag.
    pub authoritative: bool,
    /// The response code (`NOERROR`, `NXDOMAIN`).
    pub rcode: String,
    /// When the answer arrived.
    pub at: DateTime<Utc>,
}

/// A zone's SOA timers as one server serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Soa {
    /// The zone's serial.
    pub serial: u32,
    /// Seconds between a secondary's checks of its primary.
    pub refresh: u32,
    /// Seconds between retries after a failed check.
    pub retry: u32,
    /// Seconds after which a secondary that cannot reach its primary stops answering.
    pub expire: u32,
    /// The negative-caching TTL.
    pub minimum: u32,
}

/// A name server of a zone, as the zone's NS set names it, with the addresses the same
/// server gives for that name (empty when the name lies outside the zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServer {
    /// The name server's host name.
    pub name: String,
    /// Its addresses (A and AAAA), when served by the same server.
    pub addresses: Vec<IpAddr>,
}

/// Asks `server` for `name` (relative to `zone`) of type `rtype`; the answer must be
/// authoritative.
pub async fn query(
    server: SocketAddr,
    zone: &str,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Observation, DnsError> {
    let querier = Querier::new(timeout);
    let zone = zone_name(zone)?;
    let name = owner_name(&zone, name)?;
    querier.observe(server, &zone, &name, rtype).await
}

/// The zone's SOA as `server` serves it (authoritatively).
pub async fn soa(server: SocketAddr, zone: &str, timeout: Duration) -> Result<Soa, DnsError> {
    Querier::new(timeout).soa(server, &zone_name(zone)?).await
}

/// The zone's NS set as `server` serves it, with in-zone addresses.
pub async fn live_ns(
    server: SocketAddr,
    zone: &str,
    timeout: Duration,
) -> Result<Vec<NameServer>, DnsError> {
    let querier = Querier::new(timeout);
    let zone = zone_name(zone)?;
    let ns = querier
        .exchange(server, &zone, RecordType::NS, false)
        .await?;
    let answer = authoritative_answer(server, &zone, &zone, RecordType::NS, ns)?;
    let mut servers = Vec::new();
    for data in &answer.1 {
        let RData::NS(ns) = data else { continue };
        let host = ns.0.clone();
        let mut addresses = Vec::new();
        if zone.zone_of(&host) {
            for rtype in [RecordType::A, RecordType::AAAA] {
                let observation = querier.observe(server, &zone, &host, rtype).await?;
                addresses.extend(
                    observation
                        .values
                        .iter()
                        .filter_map(|value| value.parse::<IpAddr>().ok()),
                );
            }
        }
        servers.push(NameServer {
            name: host.to_string(),
            addresses,
        });
    }
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(servers)
}

/// Sends queries and matches answers; one UDP socket per server, shared by all queries.
pub(crate) struct Querier {
    timeout: Duration,
    channels: Mutex<HashMap<SocketAddr, Arc<UdpChannel>>>,
}

impl Querier {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// One authoritative observation of `name`/`rtype` (both fully qualified) in `zone`.
    pub(crate) async fn observe(
        &self,
        server: SocketAddr,
        zone: &Name,
        name: &Name,
        rtype: RecordType,
    ) -> Result<Observation, DnsError> {
        let response = self.exchange(server, name, rtype, false).await?;
        let rcode = response.metadata.response_code;
        let (ttl, data) = authoritative_answer(server, zone, name, rtype, response)?;
        Ok(Observation {
            server,
            name: name.to_string(),
            rtype,
            values: canonical_values(&data),
            ttl,
            authoritative: true,
            rcode: rcode_name(rcode),
            at: Utc::now(),
        })
    }

    pub(crate) async fn soa(&self, server: SocketAddr, zone: &Name) -> Result<Soa, DnsError> {
        let response = self.exchange(server, zone, RecordType::SOA, false).await?;
        let (_, data) = authoritative_answer(server, zone, zone, RecordType::SOA, response)?;
        data.iter()
            .find_map(|data| match data {
                RData::SOA(soa) => Some(Soa {
                    serial: soa.serial,
                    refresh: soa.refresh.max(0) as u32,
                    retry: soa.retry.max(0) as u32,
                    expire: soa.expire.max(0) as u32,
                    minimum: soa.minimum,
                }),
                _ => None,
            })
            .ok_or_else(|| DnsError::NotAuthoritative {
                server,
                zone: zone.to_string(),
            })
    }

    /// The remaining TTL a (recursive) resolver reports for `name`/`rtype`, if it has it.
    pub(crate) async fn cached_ttl(
        &self,
        resolver: SocketAddr,
        name: &Name,
        rtype: RecordType,
    ) -> Result<Option<u32>, DnsError> {
        let response = self.exchange(resolver, name, rtype, true).await?;
        match response.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            code => {
                return Err(DnsError::Rcode {
                    server: resolver,
                    operation: "query",
                    subject: format!("{name} {rtype}"),
                    rcode: rcode_name(code),
                });
            }
        }
        Ok(response
            .answers
            .iter()
            .filter(|record| record.record_type() == rtype)
            .map(|record| record.ttl)
            .min())
    }

    /// Sends one question and returns the raw answer (over TCP when UDP was truncated).
    pub(crate) async fn exchange(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
        recursion_desired: bool,
    ) -> Result<Message, DnsError> {
        let mut message = Message::query();
        message.add_query(Query::query(name.clone(), rtype));
        message.metadata.recursion_desired = recursion_desired;
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_PAYLOAD);
        message.edns = Some(edns);

        let channel = self.channel(server).await?;
        let response = channel.exchange(message.clone(), self.timeout).await?;
        if response.metadata.truncation {
            return tcp_exchange(server, message, self.timeout).await;
        }
        Ok(response)
    }

    async fn channel(&self, server: SocketAddr) -> Result<Arc<UdpChannel>, DnsError> {
        if let Some(channel) = self.lock_channels().get(&server) {
            return Ok(channel.clone());
        }
        let channel = Arc::new(UdpChannel::connect(server).await?);
        Ok(self
            .lock_channels()
            .entry(server)
            .or_insert(channel)
            .clone())
    }

    fn lock_channels(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<UdpChannel>>> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Checks that an answer is authoritative and returns the TTL and data of `name`/`rtype`.
fn authoritative_answer(
    server: SocketAddr,
    zone: &Name,
    name: &Name,
    rtype: RecordType,
    response: Message,
) -> Result<(Option<u32>, Vec<RData>), DnsError> {
    let not_authoritative = || DnsError::NotAuthoritative {
        server,
        zone: zone.to_string(),
    };
    match response.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        ResponseCode::Refused | ResponseCode::NotAuth => return Err(not_authoritative()),
        code => {
            return Err(DnsError::Rcode {
                server,
                operation: "query",
                subject: format!("{name} {rtype}"),
                rcode: rcode_name(code),
            });
        }
    }
    if !response.metadata.authoritative {
        return Err(not_authoritative());
    }
    let matching: Vec<_> = response
        .answers
        .into_iter()
        .filter(|record| record.record_type() == rtype && record.name == *name)
        .collect();
    let ttl = matching.iter().map(|record| record.ttl).min();
    Ok((
        ttl,
        matching.into_iter().map(|record| record.data).collect(),
    ))
}

type Pending = Arc<Mutex<HashMap<u16, oneshot::Sender<Message>>>>;

/// A connected UDP socket to one server and the queries waiting on it.
struct UdpChannel {
    server: SocketAddr,
    socket: Arc<UdpSocket>,
    pending: Pending,
    next_id: AtomicU16,
    reader: JoinHandle<()>,
}

impl Drop for UdpChannel {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl UdpChannel {
    async fn connect(server: SocketAddr) -> Result<Self, DnsError> {
        let network = |err: std::io::Error| DnsError::Network {
            server,
            message: err.to_string(),
        };
        let local: SocketAddr = match server.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(network)?;
        socket.connect(server).await.map_err(network)?;
        let socket = Arc::new(socket);
        let pending: Pending = Arc::default();
        let reader = tokio::spawn(read_answers(socket.clone(), pending.clone()));
        Ok(Self {
            server,
            socket,
            pending,
            next_id: AtomicU16::new(initial_id()),
            reader,
        })
    }

    async fn exchange(&self, mut message: Message, timeout: Duration) -> Result<Message, DnsError> {
        let (sender, mut receiver) = oneshot::channel();
        let id = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let mut id = self.next_id.fetch_add(1, Ordering::Relaxed);
            while pending.contains_key(&id) {
                id = self.next_id.fetch_add(1, Ordering::Relaxed);
            }
            pending.insert(id, sender);
            id
        };
        message.metadata.id = id;
        let forget = || {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        };
        let bytes = match message.to_vec() {
            Ok(bytes) => bytes,
            Err(err) => {
                forget();
                return Err(DnsError::Input(format!("cannot encode the query: {err}")));
            }
        };
        // Resend a few times within the timeout: UDP may lose a datagram.
        let resend_every = (timeout / 3).max(Duration::from_millis(50));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // A refused port shows up as an error here; the server then counts as silent.
            let _ = self.socket.send(&bytes).await;
            let wait_until = (tokio::time::Instant::now() + resend_every).min(deadline);
            match tokio::time::timeout_at(wait_until, &mut receiver).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(_)) => break,
                Err(_) if tokio::time::Instant::now() >= deadline => break,
                Err(_) => continue,
            }
        }
        forget();
        Err(DnsError::Timeout {
            server: self.server,
            timeout,
        })
    }
}

async fn read_answers(socket: Arc<UdpSocket>, pending: Pending) {
    let mut buffer = vec![0u8; 65_535];
    loop {
        let Ok(length) = socket.recv(&mut buffer).await else {
            // ICMP errors (port unreachable) surface here; keep listening until dropped.
            tokio::task::yield_now().await;
            continue;
        };
        let Ok(message) = Message::from_bytes(&buffer[..length]) else {
            continue;
        };
        let waiter = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&message.metadata.id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(message);
        }
    }
}

fn initial_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id()) as u16
}

/// One question over TCP (used when the UDP answer was truncated).
async fn tcp_exchange(
    server: SocketAddr,
    message: Message,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let network = |err: std::io::Error| DnsError::Network {
        server,
        message: err.to_string(),
    };
    let exchange = async {
        let bytes = message
            .to_vec()
            .map_err(|err| DnsError::Input(format!("cannot encode the query: {err}")))?;
        let length =
            u16::try_from(bytes.len()).map_err(|_| DnsError::Input("query too large".into()))?;
        let mut stream = TcpStream::connect(server).await.map_err(network)?;
        stream
            .write_all(&length.to_be_bytes())
            .await
            .map_err(network)?;
        stream.write_all(&bytes).await.map_err(network)?;
        let answer_length = stream.read_u16().await.map_err(network)?;
        let mut answer = vec![0u8; usize::from(answer_length)];
        stream.read_exact(&mut answer).await.map_err(network)?;
        Message::from_bytes(&answer).map_err(|err| DnsError::Network {
            server,
            message: format!("malformed answer: {err}"),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DnsError::Timeout { server, timeout })?
}
