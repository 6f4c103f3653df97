//! Verification queries: one question to one server, no cache in between.
//!
//! A resolver would answer from its cache and hide exactly what a cutover must see, so each
//! question goes straight to the server named. A batch of questions goes to each server asked
//! many of them pipelined over one TCP connection, and otherwise over one shared UDP socket in
//! one task, answers matched by message id and question, so thousands can be in flight at once
//! (see the `verify` bench); a truncated UDP answer is asked again over TCP.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType as WireType};
use hickory_proto::serialize::binary::BinDecodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use crate::error::DnsError;
use crate::records::{RecordType, canonical_values, owner_name, rcode_name, wire, zone_name};

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
    let ns = querier.exchange(server, &zone, WireType::NS, false).await?;
    let answer = authoritative_answer(server, &zone, &zone, WireType::NS, ns)?;
    let mut servers = Vec::new();
    for data in &answer.1 {
        let RData::NS(ns) = data else { continue };
        let host = ns.0.clone();
        let mut addresses = Vec::new();
        if zone.zone_of(&host) {
            for rtype in [RecordType::A, RecordType::Aaaa] {
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

/// One question of a batch.
#[derive(Debug, Clone)]
pub(crate) struct Question {
    pub server: SocketAddr,
    pub name: Name,
    pub rtype: WireType,
    pub recursion_desired: bool,
}

/// Sends questions and matches answers.
pub(crate) struct Querier {
    timeout: Duration,
}

impl Querier {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// One authoritative observation of `name`/`rtype` (both fully qualified) in `zone`.
    pub(crate) async fn observe(
        &self,
        server: SocketAddr,
        zone: &Name,
        name: &Name,
        rtype: RecordType,
    ) -> Result<Observation, DnsError> {
        let response = self.exchange(server, name, wire(rtype), false).await?;
        observation(server, zone, name, rtype, response)
    }

    pub(crate) async fn soa(&self, server: SocketAddr, zone: &Name) -> Result<Soa, DnsError> {
        let response = self.exchange(server, zone, WireType::SOA, false).await?;
        soa_of(server, zone, response)
    }

    /// Sends one question and returns the raw answer (over TCP when UDP was truncated).
    pub(crate) async fn exchange(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: WireType,
        recursion_desired: bool,
    ) -> Result<Message, DnsError> {
        let question = Question {
            server,
            name: name.clone(),
            rtype,
            recursion_desired,
        };
        self.exchange_batch(vec![question], 1)
            .await
            .pop()
            .unwrap_or_else(|| Err(DnsError::Input("no answer".into())))
    }

    /// Sends all `questions` with up to `in_flight` unanswered at a time and returns the
    /// answers in the same order. A server asked [`PIPELINE_FROM`] questions or more gets them
    /// pipelined over one TCP connection (RFC 7766): a few writes and reads carry hundreds of
    /// questions and answers, where a datagram costs a system call on each side and a wakeup.
    /// The rest, and whatever a connection could not carry, share one task and one UDP socket
    /// per address family: no task, channel or lock per question. Unanswered datagrams are
    /// sent again within the timeout; truncated answers are asked again over TCP.
    pub(crate) async fn exchange_batch(
        &self,
        questions: Vec<Question>,
        in_flight: usize,
    ) -> Vec<Result<Message, DnsError>> {
        let questions = Arc::new(questions);
        let mut per_server: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
        for (index, question) in questions.iter().enumerate() {
            per_server.entry(question.server).or_default().push(index);
        }
        let (streamed, datagrams): (Vec<Vec<usize>>, Vec<Vec<usize>>) = per_server
            .into_values()
            .partition(|indexes| indexes.len() >= PIPELINE_FROM);
        let mut answers: Vec<Option<Result<Message, DnsError>>> =
            (0..questions.len()).map(|_| None).collect();
        // A task of its own runs on the runtime's workers next to its I/O driver, instead of
        // being woken across threads for every answer.
        let streams: Vec<_> = streamed
            .into_iter()
            .map(|indexes| {
                let questions = Arc::clone(&questions);
                let timeout = self.timeout;
                tokio::spawn(async move {
                    let answers = exchange_stream(&questions, &indexes, in_flight, timeout).await;
                    indexes.into_iter().zip(answers).collect::<Vec<_>>()
                })
            })
            .collect();
        let datagrams: Vec<usize> = datagrams.into_iter().flatten().collect();
        self.exchange_datagrams(&questions, datagrams, in_flight, &mut answers)
            .await;
        let mut carried_over = Vec::new();
        for stream in streams {
            for (index, answer) in stream.await.into_iter().flatten() {
                match answer {
                    Some(answer) => answers[index] = Some(answer),
                    None => carried_over.push(index),
                }
            }
        }
        self.exchange_datagrams(&questions, carried_over, in_flight, &mut answers)
            .await;
        let mut answers: Vec<Result<Message, DnsError>> = answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    Err(DnsError::Input(
                        "internal error: a query task failed".into(),
                    ))
                })
            })
            .collect();
        for (index, answer) in answers.iter_mut().enumerate() {
            if matches!(answer, Ok(message) if message.metadata.truncation) {
                let question = &questions[index];
                *answer = tcp_exchange(
                    question.server,
                    encode(question, 0).map(|(_, message)| message),
                    self.timeout,
                )
                .await;
            }
        }
        answers
    }

    /// The questions at `indexes` over UDP, their answers put in `answers`.
    async fn exchange_datagrams(
        &self,
        questions: &Arc<Vec<Question>>,
        indexes: Vec<usize>,
        in_flight: usize,
        answers: &mut [Option<Result<Message, DnsError>>],
    ) {
        if indexes.is_empty() {
            return;
        }
        let (v4, v6): (Vec<usize>, Vec<usize>) = indexes
            .into_iter()
            .partition(|&index| questions[index].server.is_ipv4());
        let family = |indexes: Vec<usize>| {
            let questions = Arc::clone(questions);
            let timeout = self.timeout;
            tokio::spawn(async move {
                let answers = exchange_family(&questions, &indexes, in_flight, timeout).await;
                indexes.into_iter().zip(answers).collect::<Vec<_>>()
            })
        };
        let (answers_v4, answers_v6) = tokio::join!(family(v4), family(v6));
        for (index, answer) in answers_v4.into_iter().chain(answers_v6).flatten() {
            answers[index] = Some(answer);
        }
    }
}

/// Questions to one server from which they go pipelined over one TCP connection.
const PIPELINE_FROM: usize = 32;

/// [`Querier::exchange_batch`] for the questions at `indexes`, all to one server, over one
/// TCP connection: up to `in_flight` unanswered, written a window at a time, answers matched
/// by message id and question (a server may answer pipelined questions in any order). `None`
/// for each question the connection could not carry (refused, closed early): those are asked
/// over UDP instead. A server silent for `timeout` times out the questions it holds.
async fn exchange_stream(
    questions: &[Question],
    indexes: &[usize],
    in_flight: usize,
    timeout: Duration,
) -> Vec<Option<Result<Message, DnsError>>> {
    let mut answers: Vec<Option<Result<Message, DnsError>>> =
        indexes.iter().map(|_| None).collect();
    let Some(&first) = indexes.first() else {
        return answers;
    };
    let server = questions[first].server;
    let Ok(Ok(stream)) = tokio::time::timeout(timeout, TcpStream::connect(server)).await else {
        return answers;
    };
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(65_536, reader);
    // Ids stay unique among the questions in flight: fewer than 2^16 at a time.
    let window = in_flight.clamp(1, usize::from(u16::MAX));
    let first_id = initial_id();
    let mut waiting: HashMap<u16, usize> = HashMap::new();
    let mut next = 0;
    let mut out = Vec::new();
    loop {
        if waiting.len() <= window / 2 && next < indexes.len() {
            out.clear();
            while waiting.len() < window && next < indexes.len() {
                let id = first_id.wrapping_add(next as u16);
                match encode(&questions[indexes[next]], id) {
                    Ok((bytes, _)) => {
                        // A query is far below 64 KiB: a name is at most 255 bytes.
                        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                        out.extend_from_slice(&bytes);
                        waiting.insert(id, next);
                    }
                    Err(err) => answers[next] = Some(Err(err)),
                }
                next += 1;
            }
            match tokio::time::timeout(timeout, writer.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    for &slot in waiting.values() {
                        answers[slot] = Some(Err(DnsError::Timeout { server, timeout }));
                    }
                    break;
                }
            }
        }
        if waiting.is_empty() {
            break;
        }
        let message = match tokio::time::timeout(timeout, read_framed(&mut reader)).await {
            Ok(Ok(bytes)) => Message::from_bytes(&bytes),
            // Closed or broken: what is still open goes over UDP.
            Ok(Err(_)) => break,
            Err(_) => {
                for &slot in waiting.values() {
                    answers[slot] = Some(Err(DnsError::Timeout { server, timeout }));
                }
                break;
            }
        };
        if let Ok(message) = message
            && let Some(&slot) = waiting.get(&message.metadata.id)
            && asks(&message, &questions[indexes[slot]])
        {
            waiting.remove(&message.metadata.id);
            answers[slot] = Some(Ok(message));
        }
    }
    let _ = writer.shutdown().await;
    answers
}

/// One length-prefixed DNS message from a stream.
async fn read_framed(reader: &mut BufReader<OwnedReadHalf>) -> std::io::Result<Vec<u8>> {
    let length = reader.read_u16().await?;
    let mut bytes = vec![0u8; usize::from(length)];
    reader.read_exact(&mut bytes).await?;
    Ok(bytes)
}

/// [`Querier::exchange_batch`] for the questions at `indexes`, all of one address family.
async fn exchange_family(
    questions: &[Question],
    indexes: &[usize],
    in_flight: usize,
    timeout: Duration,
) -> Vec<Result<Message, DnsError>> {
    let mut answers: Vec<Option<Result<Message, DnsError>>> =
        indexes.iter().map(|_| None).collect();
    let Some(&first) = indexes.first() else {
        return Vec::new();
    };
    let local: SocketAddr = match questions[first].server.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) => socket,
        Err(err) => {
            return indexes
                .iter()
                .map(|&index| {
                    Err(DnsError::Network {
                        server: questions[index].server,
                        message: err.to_string(),
                    })
                })
                .collect();
        }
    };

    let resend_every = (timeout / 3).max(Duration::from_millis(50));
    let mut waiting: HashMap<(SocketAddr, u16), Waiting> = HashMap::new();
    let mut next = 0;
    let mut next_id = initial_id();
    let mut next_check = Instant::now() + resend_every;
    let mut buffer = vec![0u8; 65_535];
    loop {
        while waiting.len() < in_flight.max(1) && next < indexes.len() {
            let question = &questions[indexes[next]];
            while waiting.contains_key(&(question.server, next_id)) {
                next_id = next_id.wrapping_add(1);
            }
            let id = next_id;
            next_id = next_id.wrapping_add(1);
            match encode(question, id) {
                Ok((bytes, _)) => {
                    let now = Instant::now();
                    // A refused port shows up as silence; the resend and timeout handle it.
                    let _ = socket.send_to(&bytes, question.server).await;
                    waiting.insert(
                        (question.server, id),
                        Waiting {
                            slot: next,
                            bytes,
                            sent_at: now,
                            first_sent_at: now,
                        },
                    );
                    next_check = next_check.min(now + resend_every);
                }
                Err(err) => answers[next] = Some(Err(err)),
            }
            next += 1;
        }
        if waiting.is_empty() {
            break;
        }
        match tokio::time::timeout_at(next_check, socket.recv_from(&mut buffer)).await {
            Ok(Ok((length, from))) => {
                let mut datagram = Some((length, from));
                // Take every answer already queued before waiting again.
                while let Some((length, from)) = datagram {
                    if let Ok(message) = Message::from_bytes(&buffer[..length])
                        && let Some(entry) = waiting.remove(&(from, message.metadata.id))
                    {
                        let question = &questions[indexes[entry.slot]];
                        if asks(&message, question) {
                            answers[entry.slot] = Some(Ok(message));
                        } else {
                            waiting.insert((from, message.metadata.id), entry);
                        }
                    }
                    datagram = socket.try_recv_from(&mut buffer).ok();
                }
            }
            // ICMP errors surface here on some systems; keep listening.
            Ok(Err(_)) => tokio::task::yield_now().await,
            Err(_) => {}
        }
        // Resend and expire on time, however busy or noisy the socket is.
        if Instant::now() >= next_check {
            let now = Instant::now();
            next_check = now + resend_every;
            let mut expired = Vec::new();
            for (key, entry) in waiting.iter_mut() {
                if now >= entry.first_sent_at + timeout {
                    expired.push(*key);
                } else if now >= entry.sent_at + resend_every {
                    let _ = socket.send_to(&entry.bytes, key.0).await;
                    entry.sent_at = now;
                }
                let due = (entry.sent_at + resend_every).min(entry.first_sent_at + timeout);
                if !expired.contains(key) {
                    next_check = next_check.min(due);
                }
            }
            for key in expired {
                if let Some(entry) = waiting.remove(&key) {
                    answers[entry.slot] = Some(Err(DnsError::Timeout {
                        server: key.0,
                        timeout,
                    }));
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|| Err(DnsError::Input("no answer".into()))))
        .collect()
}

/// A question sent and not yet answered.
struct Waiting {
    /// Its place in the batch.
    slot: usize,
    bytes: Vec<u8>,
    sent_at: Instant,
    first_sent_at: Instant,
}

/// The query message for `question` with message id `id`, and its wire form.
fn encode(question: &Question, id: u16) -> Result<(Vec<u8>, Message), DnsError> {
    let mut message = Message::query();
    message.add_query(Query::query(question.name.clone(), question.rtype));
    message.metadata.recursion_desired = question.recursion_desired;
    message.metadata.id = id;
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD);
    message.edns = Some(edns);
    let bytes = message
        .to_vec()
        .map_err(|err| DnsError::Input(format!("cannot encode the query: {err}")))?;
    Ok((bytes, message))
}

/// Whether `answer` answers `question` (a stray datagram with a reused id does not).
fn asks(answer: &Message, question: &Question) -> bool {
    answer
        .queries
        .first()
        .is_some_and(|query| *query.name() == question.name && query.query_type() == question.rtype)
}

/// An authoritative observation from an answer.
pub(crate) fn observation(
    server: SocketAddr,
    zone: &Name,
    name: &Name,
    rtype: RecordType,
    response: Message,
) -> Result<Observation, DnsError> {
    let rcode = response.metadata.response_code;
    let (ttl, data) = authoritative_answer(server, zone, name, wire(rtype), response)?;
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

/// The zone's SOA from an authoritative answer.
pub(crate) fn soa_of(server: SocketAddr, zone: &Name, response: Message) -> Result<Soa, DnsError> {
    let (_, data) = authoritative_answer(server, zone, zone, WireType::SOA, response)?;
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

/// Checks that an answer is authoritative and returns the TTL and data of `name`/`rtype`.
fn authoritative_answer(
    server: SocketAddr,
    zone: &Name,
    name: &Name,
    rtype: WireType,
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

/// A fresh message id (time and process mixed; each exchange then counts up from it).
pub(crate) fn initial_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id()) as u16
}

/// One question over TCP (used when the UDP answer was truncated).
async fn tcp_exchange(
    server: SocketAddr,
    message: Result<Message, DnsError>,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let message = message?;
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
