//! NOTIFY (RFC 1996) from the primary: after every change to a zone its secondaries are told,
//! so they transfer the change now rather than at their next SOA refresh.
//!
//! Each secondary gets a NOTIFY over UDP carrying the zone's SOA, sent again (bounded) until it
//! answers with a NOTIFY response. Changes that come while a round is under way are coalesced:
//! the next round announces the newest serial. Every outcome is published as a
//! [`NotifyEvent`] for the caller to log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, RecordType, RrKey};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, watch};

use crate::primary::PrimaryZone;
use crate::query::initial_id;
use crate::records::rcode_name;

/// NOTIFY messages sent to one secondary for one change before giving up.
const ATTEMPTS: u32 = 5;
/// How long each attempt waits for the answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the address of a name server outside the zone is looked up for.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Whom a primary notifies of changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NotifyTargets {
    /// The zone's name servers (its NS set) other than the primary named in its SOA, at port
    /// 53, each at the addresses the zone itself gives it or else the system resolver finds.
    #[default]
    NameServers,
    /// Exactly these addresses (none: no NOTIFY at all), BIND's `also-notify`.
    Addresses(Vec<SocketAddr>),
}

/// The outcome of notifying one secondary of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyEvent {
    /// The zone (fully qualified).
    pub zone: String,
    /// The serial announced.
    pub serial: u32,
    /// The secondary.
    pub target: SocketAddr,
    /// Messages sent.
    pub attempts: u32,
    /// `None` when the secondary acknowledged; else why not.
    pub error: Option<String>,
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tries = if self.attempts == 1 {
            "1 attempt".to_string()
        } else {
            format!("{} attempts", self.attempts)
        };
        match &self.error {
            None => write!(
                f,
                "notified {} of {} serial {} ({tries})",
                self.target, self.zone, self.serial
            ),
            Some(error) => write!(
                f,
                "NOTIFY of {} serial {} to {} failed after {tries}: {error}",
                self.zone, self.serial, self.target
            ),
        }
    }
}

/// Notifies the zone's secondaries after each change, until the task is aborted.
pub(crate) async fn notify_changes(
    zone: Arc<PrimaryZone>,
    targets: NotifyTargets,
    own_addresses: Vec<SocketAddr>,
    events: broadcast::Sender<NotifyEvent>,
) {
    let mut serial: watch::Receiver<u32> = zone.watch_serial();
    loop {
        if serial.changed().await.is_err() {
            return;
        }
        let announced = *serial.borrow_and_update();
        let addresses = match &targets {
            NotifyTargets::Addresses(addresses) => addresses.clone(),
            NotifyTargets::NameServers => name_server_addresses(&zone).await,
        };
        let addresses: Vec<SocketAddr> = addresses
            .into_iter()
            .filter(|address| !own_addresses.contains(address))
            .collect();
        let rounds = addresses.iter().map(|&target| {
            let zone = zone.clone();
            let own = own_addresses.clone();
            async move { notify_one(&zone, announced, target, &own).await }
        });
        for event in futures_util::future::join_all(rounds).await {
            // Nobody listening is fine: the events are for whoever wants them.
            let _ = events.send(event);
        }
    }
}

/// Sends NOTIFY to one secondary until it answers (at most [`ATTEMPTS`] times).
async fn notify_one(
    zone: &PrimaryZone,
    serial: u32,
    target: SocketAddr,
    own_addresses: &[SocketAddr],
) -> NotifyEvent {
    let mut event = NotifyEvent {
        zone: zone.origin().to_string(),
        serial,
        target,
        attempts: 0,
        error: None,
    };
    let socket = match UdpSocket::bind(source_for(target, own_addresses)).await {
        Ok(socket) => socket,
        Err(err) => {
            event.error = Some(format!("cannot open a UDP socket: {err}"));
            return event;
        }
    };
    let id = initial_id();
    let bytes = match notify_message(zone, id).await.to_vec() {
        Ok(bytes) => bytes,
        Err(err) => {
            event.error = Some(format!("cannot encode the message: {err}"));
            return event;
        }
    };
    let mut last_error = "no answer".to_string();
    for attempt in 1..=ATTEMPTS {
        event.attempts = attempt;
        if let Err(err) = socket.send_to(&bytes, target).await {
            last_error = err.to_string();
            tokio::time::sleep(ATTEMPT_TIMEOUT).await;
            continue;
        }
        match tokio::time::timeout(ATTEMPT_TIMEOUT, answer(&socket, target, id)).await {
            Ok(Ok(ResponseCode::NoError)) => return event,
            Ok(Ok(code)) => {
                // A definite refusal: sending again would get the same.
                event.error = Some(format!("it answered {}", rcode_name(code)));
                return event;
            }
            Ok(Err(err)) => {
                last_error = err;
                // An ICMP error arrives at once; wait before trying again.
                tokio::time::sleep(ATTEMPT_TIMEOUT).await;
            }
            Err(_) => last_error = format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()),
        }
    }
    event.error = Some(last_error);
    event
}

/// Waits for the NOTIFY response with `id` from `target`, skipping anything else.
async fn answer(socket: &UdpSocket, target: SocketAddr, id: u16) -> Result<ResponseCode, String> {
    let mut buffer = vec![0u8; 4096];
    loop {
        let (length, from) = socket
            .recv_from(&mut buffer)
            .await
            .map_err(|err| err.to_string())?;
        if from != target {
            continue;
        }
        let Ok(message) = Message::from_vec(&buffer[..length]) else {
            continue;
        };
        if message.metadata.id == id
            && message.metadata.message_type == MessageType::Response
            && message.metadata.op_code == OpCode::Notify
        {
            return Ok(message.metadata.response_code);
        }
    }
}

/// NOTIFY for the zone: the SOA question, and the current SOA as the answer (RFC 1996 §3.7).
async fn notify_message(zone: &PrimaryZone, id: u16) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    let mut question = Query::new();
    question
        .set_name(zone.origin().clone())
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::SOA);
    message.add_query(question);
    let records = zone.handler().records().await;
    if let Some(soa) = records
        .get(&RrKey::new(LowerName::from(zone.origin()), RecordType::SOA))
        .and_then(|set| set.records_without_rrsigs().next())
    {
        message.add_answer(soa.clone());
    }
    message
}

/// The addresses of the zone's name servers other than its SOA's primary, at port 53.
async fn name_server_addresses(zone: &PrimaryZone) -> Vec<SocketAddr> {
    let origin = LowerName::from(zone.origin());
    let (primary, names, in_zone) = {
        let records = zone.handler().records().await;
        let primary = records
            .get(&RrKey::new(origin.clone(), RecordType::SOA))
            .and_then(|set| set.records_without_rrsigs().next())
            .and_then(|record| match &record.data {
                RData::SOA(soa) => Some(LowerName::from(&soa.mname)),
                _ => None,
            });
        let names: Vec<Name> = records
            .get(&RrKey::new(origin.clone(), RecordType::NS))
            .map(|set| {
                set.records_without_rrsigs()
                    .filter_map(|record| match &record.data {
                        RData::NS(ns) => Some(ns.0.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut in_zone: Vec<(LowerName, IpAddr)> = Vec::new();
        for name in &names {
            let lower = LowerName::from(name);
            for rtype in [RecordType::A, RecordType::AAAA] {
                if let Some(set) = records.get(&RrKey::new(lower.clone(), rtype)) {
                    for record in set.records_without_rrsigs() {
                        match &record.data {
                            RData::A(a) => in_zone.push((lower.clone(), IpAddr::V4(a.0))),
                            RData::AAAA(aaaa) => in_zone.push((lower.clone(), IpAddr::V6(aaaa.0))),
                            _ => {}
                        }
                    }
                }
            }
        }
        (primary, names, in_zone)
    };
    let mut addresses = Vec::new();
    for name in names {
        let lower = LowerName::from(&name);
        if primary.as_ref() == Some(&lower) {
            continue;
        }
        let known: Vec<SocketAddr> = in_zone
            .iter()
            .filter(|(owner, _)| *owner == lower)
            .map(|(_, ip)| SocketAddr::new(*ip, 53))
            .collect();
        if !known.is_empty() {
            addresses.extend(known);
            continue;
        }
        let host = name.to_ascii();
        let host = host.trim_end_matches('.');
        if let Ok(Ok(found)) =
            tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 53))).await
        {
            addresses.extend(found);
        }
    }
    addresses.sort();
    addresses.dedup();
    addresses
}

/// Send from the address the server answers on (a secondary accepts NOTIFY only from the
/// primary it knows), in the target's address family.
fn source_for(target: SocketAddr, own_addresses: &[SocketAddr]) -> SocketAddr {
    let ip = own_addresses
        .iter()
        .map(SocketAddr::ip)
        .find(|ip| ip.is_ipv4() == target.is_ipv4())
        .unwrap_or(if target.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        });
    SocketAddr::new(ip, 0)
}
