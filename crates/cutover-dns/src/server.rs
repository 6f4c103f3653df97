//! The authoritative server behind `cutover dns serve`: the hidden primary of the 2013 move,
//! and the lab's DNS.
//!
//! Zones come from standard master files and are served by hickory-server's SQLite zone
//! handler, which applies RFC 2136 updates and writes each change to a journal. The journal
//! lives in the state directory; when it exists it wins over the zone file, so a restart serves
//! the updated zone. In front of hickory's catalog sit what a hidden primary needs and hickory
//! lacks: TSIG checked as BIND does, IXFR and multi-message AXFR ([`crate::primary`]), and
//! NOTIFY to the secondaries after each change ([`crate::notify`]).
//!
//! A second mode serves a *lagging secondary*: a copy of the primary's zones, transferred by
//! AXFR, that checks the primary's SOA serial every `check_every`, transfers each newer zone it
//! sees at once and serves it only once `lag` has passed since it saw it. That is the stale secondary of the seeds, made
//! on purpose and bounded, so the engine's verification can be seen waiting for it.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::{Time, TokioRuntimeProvider};
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::DnsMultiplexer;
use hickory_proto::op::Edns;
use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey, TSigner};
use hickory_server::Server;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::store::sqlite::{Journal, SqliteZoneHandler};
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, MessageResponseBuilder, ZoneHandler, ZoneType,
};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::error::DnsError;
use crate::notify::{NotifyEvent, NotifyTargets, notify_changes};
use crate::primary::{PrimaryZone, answer_update, not_sent, send_error};
use crate::query::Querier;
use crate::records::{rcode_name, zone_name};
use crate::tsig::{Authentication, ResponseSigner, TsigKey, authenticate};
use crate::zonefile::{ZoneRecords, load_zone_file};

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Messages buffered per TCP connection. hickory writes a connection's answers only once the
/// request's handler has returned, so a zone transfer must fit whole: 65,536 messages of up to
/// 32 KiB each.
const TCP_RESPONSE_BUFFER: usize = 65_536;

/// A zone to serve: its name and master file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSource {
    /// The zone's name.
    pub name: String,
    /// Its master file.
    pub file: PathBuf,
}

/// Configuration of a primary server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The zones.
    pub zones: Vec<ZoneSource>,
    /// Addresses to answer on, UDP and TCP (port 0 picks a free port).
    pub listen: Vec<SocketAddr>,
    /// Keys allowed to sign updates, for every zone.
    pub keys: Vec<TsigKey>,
    /// Where the journals are kept.
    pub state_dir: PathBuf,
    /// Addresses allowed to transfer the zones (AXFR); none by default.
    pub allow_transfer: Vec<IpAddr>,
}

/// How a primary tells its secondaries about changes; [`serve`] uses the defaults.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Whom to send NOTIFY after each change (default: the zone's name servers).
    pub notify: NotifyTargets,
}

/// NOTIFY outcomes kept for a slow reader before the oldest are dropped.
const NOTIFY_EVENTS: usize = 256;

/// Configuration of a lagging secondary.
#[derive(Debug, Clone)]
pub struct SecondaryConfig {
    /// The zones to copy.
    pub zones: Vec<String>,
    /// The primary to copy them from.
    pub primary: SocketAddr,
    /// A key to sign the transfers with, when the primary wants signed transfers.
    pub key: Option<TsigKey>,
    /// Addresses to answer on.
    pub listen: Vec<SocketAddr>,
    /// How long a change on the primary stays invisible here.
    pub lag: Duration,
    /// How often the primary's serial is checked.
    pub check_every: Duration,
    /// Timeout for each query and transfer to the primary.
    pub timeout: Duration,
}

/// Where a served zone's data came from at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    /// The master file (no journal yet).
    ZoneFile,
    /// The journal of earlier runs (the master file was not read).
    Journal,
    /// A zone transfer from the primary.
    Transfer,
}

/// A zone being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedZone {
    /// The zone (fully qualified).
    pub name: String,
    /// Its serial at start.
    pub serial: u32,
    /// Where its data came from.
    pub loaded_from: LoadedFrom,
}

/// A running server. Dropping it stops the server; [`ServerHandle::shutdown`] waits for that.
pub struct ServerHandle {
    addresses: Vec<SocketAddr>,
    zones: Vec<ServedZone>,
    server: Server<ZoneRequestHandler>,
    tasks: Vec<JoinHandle<()>>,
    notify_events: broadcast::Sender<NotifyEvent>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addresses", &self.addresses)
            .field("zones", &self.zones)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The bound addresses (each serves UDP and TCP on the same port).
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// The zones served, as loaded at start.
    pub fn zones(&self) -> &[ServedZone] {
        &self.zones
    }

    /// The outcome of every NOTIFY sent from now on (one event per secondary and change).
    pub fn notify_events(&self) -> broadcast::Receiver<NotifyEvent> {
        self.notify_events.subscribe()
    }

    /// Stops answering and waits until every listener has closed.
    pub async fn shutdown(mut self) -> Result<(), DnsError> {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.server
            .shutdown_gracefully()
            .await
            .map_err(|err| DnsError::Serve(format!("shutting down: {err}")))
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.server.shutdown_token().cancel();
    }
}

/// Starts a primary: loads every zone (from its journal if one exists in the state directory,
/// else from its master file), then answers on every listen address, and notifies the zones'
/// name servers of every change.
pub async fn serve(config: ServeConfig) -> Result<ServerHandle, DnsError> {
    serve_with(config, ServeOptions::default()).await
}

/// [`serve`] with options: whom to notify of changes.
pub async fn serve_with(
    config: ServeConfig,
    options: ServeOptions,
) -> Result<ServerHandle, DnsError> {
    if config.zones.is_empty() {
        return Err(DnsError::Input("no zone to serve".into()));
    }
    std::fs::create_dir_all(&config.state_dir).map_err(|err| {
        DnsError::io(
            format!(
                "cannot create state directory {}",
                config.state_dir.display()
            ),
            err,
        )
    })?;
    let signers = config
        .keys
        .iter()
        .map(TsigKey::signer)
        .collect::<Result<Vec<_>, _>>()?;

    let mut catalog = Catalog::new();
    let mut zones = Vec::new();
    let mut primaries = BTreeMap::new();
    for source in &config.zones {
        let origin = zone_name(&source.name)?;
        if catalog.contains(&LowerName::from(&origin)) {
            return Err(DnsError::Input(format!("zone {origin} is given twice")));
        }
        let journal_path = config.state_dir.join(journal_file_name(&origin));
        let (handler, loaded_from) = if journal_path.exists() {
            let journal = open_journal(&journal_path)?;
            let empty = InMemoryZoneHandler::empty(
                origin.clone(),
                ZoneType::Primary,
                AxfrPolicy::AllowAll,
                None,
            );
            let mut handler = SqliteZoneHandler::new(empty, AxfrPolicy::AllowAll, true, false);
            handler
                .recover_with_journal(&journal)
                .await
                .map_err(|err| {
                    DnsError::Serve(format!(
                        "cannot recover zone {origin} from {}: {err}",
                        journal_path.display()
                    ))
                })?;
            handler.set_journal(journal).await;
            (handler, LoadedFrom::Journal)
        } else {
            let records = load_zone_file(&source.file, &origin)?;
            let in_memory = in_memory_zone(&origin, records, ZoneType::Primary)?;
            let mut handler = SqliteZoneHandler::new(in_memory, AxfrPolicy::AllowAll, true, false);
            handler.set_journal(open_journal(&journal_path)?).await;
            handler.persist_to_journal().await.map_err(|err| {
                DnsError::Serve(format!(
                    "cannot write journal {}: {err}",
                    journal_path.display()
                ))
            })?;
            (handler, LoadedFrom::ZoneFile)
        };
        let handler = Arc::new(handler);
        let primary = Arc::new(PrimaryZone::new(origin.clone(), handler.clone()).await);
        zones.push(ServedZone {
            name: origin.to_string(),
            serial: handler.serial().await,
            loaded_from,
        });
        catalog.upsert(LowerName::from(&origin), vec![handler]);
        primaries.insert(LowerName::from(&origin), primary);
    }

    let catalog = Arc::new(RwLock::new(Arc::new(catalog)));
    let handler = ZoneRequestHandler {
        catalog,
        allow_transfer: config.allow_transfer.clone(),
        primaries: primaries.clone(),
        signers,
    };
    let (server, addresses) = listen(handler, &config.listen).await?;
    let (notify_events, _) = broadcast::channel(NOTIFY_EVENTS);
    let tasks = primaries
        .into_values()
        .map(|zone| {
            tokio::spawn(notify_changes(
                zone,
                options.notify.clone(),
                addresses.clone(),
                notify_events.clone(),
            ))
        })
        .collect();
    Ok(ServerHandle {
        addresses,
        zones,
        server,
        tasks,
        notify_events,
    })
}

/// Starts a lagging secondary: transfers every zone from the primary now, then follows the
/// primary's changes `lag` late.
pub async fn serve_secondary(config: SecondaryConfig) -> Result<ServerHandle, DnsError> {
    if config.zones.is_empty() {
        return Err(DnsError::Input("no zone to serve".into()));
    }
    let origins = config
        .zones
        .iter()
        .map(|zone| zone_name(zone))
        .collect::<Result<Vec<_>, _>>()?;
    let mut handlers = BTreeMap::new();
    let mut zones = Vec::new();
    for origin in &origins {
        let (handler, serial) = transfer_zone(&config, origin).await?;
        handlers.insert(LowerName::from(origin), (handler, serial));
        zones.push(ServedZone {
            name: origin.to_string(),
            serial,
            loaded_from: LoadedFrom::Transfer,
        });
    }
    let catalog = Arc::new(RwLock::new(Arc::new(catalog_of(&handlers))));
    let handler = ZoneRequestHandler {
        catalog: catalog.clone(),
        allow_transfer: Vec::new(),
        primaries: BTreeMap::new(),
        signers: Vec::new(),
    };
    let (server, addresses) = listen(handler, &config.listen).await?;
    let follower = tokio::spawn(follow_primary(config, origins, handlers, catalog));
    Ok(ServerHandle {
        addresses,
        zones,
        server,
        tasks: vec![follower],
        notify_events: broadcast::channel(1).0,
    })
}

type SecondaryZones = BTreeMap<LowerName, (Arc<InMemoryZoneHandler>, u32)>;

fn catalog_of(handlers: &SecondaryZones) -> Catalog {
    let mut catalog = Catalog::new();
    for (name, (handler, _)) in handlers {
        catalog.upsert(name.clone(), vec![handler.clone() as Arc<dyn ZoneHandler>]);
    }
    catalog
}

/// The secondary's refresh loop. Each newer serial it notices is transferred at once and held
/// back until `lag` has passed since it was noticed, so every change is served `lag` late,
/// whatever else changes in between (a copy taken when a first change was noticed, then applied
/// later, would carry later changes early and make a lag that depends on their timing).
async fn follow_primary(
    config: SecondaryConfig,
    origins: Vec<Name>,
    mut handlers: SecondaryZones,
    catalog: Arc<RwLock<Arc<Catalog>>>,
) {
    let querier = Querier::new(config.timeout);
    let mut held: BTreeMap<LowerName, VecDeque<HeldCopy>> = BTreeMap::new();
    loop {
        tokio::time::sleep(config.check_every).await;
        let mut changed = false;
        for origin in &origins {
            let key = LowerName::from(origin);
            let Some(served_serial) = handlers.get(&key).map(|(_, serial)| *serial) else {
                continue;
            };
            let copies = held.entry(key.clone()).or_default();
            let newest_known = copies.back().map_or(served_serial, |copy| copy.serial);
            if let Ok(primary) = querier.soa(config.primary, origin).await
                && primary.serial != newest_known
            {
                let noticed = Instant::now();
                if let Ok((handler, serial)) = transfer_zone(&config, origin).await {
                    copies.push_back(HeldCopy {
                        handler,
                        serial,
                        noticed,
                    });
                }
            }
            while copies
                .front()
                .is_some_and(|copy| copy.noticed.elapsed() >= config.lag)
            {
                let copy = copies.pop_front().expect("checked above");
                handlers.insert(key.clone(), (copy.handler, copy.serial));
                changed = true;
            }
        }
        if changed {
            let fresh = Arc::new(catalog_of(&handlers));
            *catalog.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
    }
}

/// A zone transferred from the primary, served once `lag` has passed since its serial was noticed.
struct HeldCopy {
    handler: Arc<InMemoryZoneHandler>,
    serial: u32,
    noticed: Instant,
}

/// Copies a zone from the primary by AXFR (over TCP, signed when a key is given).
async fn transfer_zone(
    config: &SecondaryConfig,
    origin: &Name,
) -> Result<(Arc<InMemoryZoneHandler>, u32), DnsError> {
    let primary = config.primary;
    let failed = |message: String| {
        DnsError::Serve(format!(
            "zone transfer of {origin} from {primary}: {message}"
        ))
    };
    let transfer = async {
        let (connect, sender) = TcpClientStream::new(
            primary,
            None,
            Some(config.timeout),
            TokioRuntimeProvider::new(),
        );
        let stream = connect.await.map_err(|err| failed(err.to_string()))?;
        let mut multiplexer = DnsMultiplexer::new(stream, sender).with_timeout(config.timeout);
        if let Some(key) = &config.key {
            multiplexer = multiplexer.with_signer(key.signer()?);
        }
        let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(multiplexer);
        let background = tokio::spawn(background);
        let mut responses = client.zone_transfer(origin.clone(), None);
        let mut records: Vec<Record> = Vec::new();
        let mut outcome = Ok(());
        while let Some(response) = responses.next().await {
            match response {
                Ok(response) => {
                    let code = response.metadata.response_code;
                    if code != ResponseCode::NoError {
                        outcome = Err(failed(format!("the primary answered {}", rcode_name(code))));
                        break;
                    }
                    records.extend(response.into_message().answers);
                }
                Err(err) => {
                    outcome = Err(failed(err.to_string()));
                    break;
                }
            }
        }
        drop(client);
        background.abort();
        outcome.map(|()| records)
    };
    let records = tokio::time::timeout(config.timeout * 4, transfer)
        .await
        .map_err(|_| DnsError::Timeout {
            server: primary,
            timeout: config.timeout * 4,
        })??;

    let mut zone: ZoneRecords = BTreeMap::new();
    let mut serial = None;
    for record in records {
        if let RData::SOA(soa) = &record.data {
            if serial.is_some() {
                continue; // AXFR ends with the SOA it started with
            }
            serial = Some(soa.serial);
        }
        let key = RrKey::new(LowerName::from(&record.name), record.record_type());
        let set = zone
            .entry(key)
            .or_insert_with(|| RecordSet::new(record.name.clone(), record.record_type(), 0));
        set.insert(record, 0);
    }
    let serial = serial.ok_or_else(|| failed("the transfer held no SOA record".into()))?;
    let handler = in_memory_zone(origin, zone, ZoneType::Secondary)?;
    Ok((Arc::new(handler), serial))
}

fn in_memory_zone(
    origin: &Name,
    records: ZoneRecords,
    zone_type: ZoneType,
) -> Result<InMemoryZoneHandler, DnsError> {
    InMemoryZoneHandler::new(
        origin.clone(),
        records,
        zone_type,
        AxfrPolicy::AllowAll,
        None,
    )
    .map_err(|err| DnsError::Serve(format!("cannot load zone {origin}: {err}")))
}

fn journal_file_name(origin: &Name) -> String {
    let base: String = origin
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = if base.is_empty() {
        "root".to_string()
    } else {
        base
    };
    format!("{base}.journal.sqlite")
}

/// Opens (or creates) a journal. hickory writes each record in a transaction of its own; in
/// SQLite's default mode every one waits for the disk, so a 50,000-record zone took minutes to
/// journal at start. In WAL mode with `synchronous = NORMAL` a commit survives a crash of the
/// process (not necessarily of the machine) without waiting for the disk.
fn open_journal(path: &Path) -> Result<Journal, DnsError> {
    let failed = |err: &dyn std::fmt::Display| {
        DnsError::Serve(format!("cannot open journal {}: {err}", path.display()))
    };
    let journal = Journal::from_file(path).map_err(|err| failed(&err))?;
    journal
        .conn()
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .map_err(|err| failed(&err))?;
    Ok(journal)
}

/// Binds UDP and TCP on each address (the same port for both) and starts answering.
async fn listen(
    handler: ZoneRequestHandler,
    addresses: &[SocketAddr],
) -> Result<(Server<ZoneRequestHandler>, Vec<SocketAddr>), DnsError> {
    if addresses.is_empty() {
        return Err(DnsError::Input("no address to listen on".into()));
    }
    let mut bound = Vec::new();
    let mut sockets = Vec::new();
    for &address in addresses {
        let (udp, tcp) = bind_pair(address).await?;
        let local = udp.local_addr().map_err(|err| {
            DnsError::io(format!("cannot read the address bound for {address}"), err)
        })?;
        bound.push(local);
        sockets.push((udp, tcp));
    }
    let mut server = Server::new(handler);
    for (udp, tcp) in sockets {
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, TCP_RESPONSE_BUFFER);
    }
    Ok((server, bound))
}

async fn bind_pair(address: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    // With port 0 the UDP port is chosen first; TCP may find it taken, so try a few.
    let attempts = if address.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(address)
            .await
            .map_err(|err| DnsError::io(format!("cannot listen on {address} (UDP)"), err))?;
        let port = udp
            .local_addr()
            .map_err(|err| DnsError::io(format!("cannot listen on {address} (UDP)"), err))?
            .port();
        match tcp_listener(SocketAddr::new(address.ip(), port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err) => last_error = Some(err),
        }
    }
    Err(DnsError::io(
        format!("cannot listen on {address} (TCP)"),
        last_error.unwrap_or_else(|| std::io::Error::other("no attempt made")),
    ))
}

/// A TCP listener whose connections send each answer at once (`TCP_NODELAY`, inherited by
/// every accepted connection): answers to pipelined questions are written one by one, and
/// Nagle's algorithm would hold each small one back until the client's delayed ACK.
fn tcp_listener(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// hickory's catalog, with what a primary needs in front of it: zone transfers only to listed
/// addresses, answered in as many messages as needed and incrementally where possible; updates
/// authenticated as RFC 8945 says (BADKEY for an unknown key or algorithm, a signed NOTAUTH for
/// a zone not served here) and applied one at a time per zone. The catalog can be replaced
/// while serving, which the lagging secondary does after each transfer.
struct ZoneRequestHandler {
    catalog: Arc<RwLock<Arc<Catalog>>>,
    allow_transfer: Vec<IpAddr>,
    /// The zones this server is the primary of (none for a secondary).
    primaries: BTreeMap<LowerName, Arc<PrimaryZone>>,
    /// Keys allowed to sign updates.
    signers: Vec<TSigner>,
}

impl ZoneRequestHandler {
    async fn update<R: ResponseHandler>(
        &self,
        request: &Request,
        zone: &LowerName,
        response_edns: Option<&Edns>,
        response_handle: R,
    ) -> ResponseInfo {
        let authentication = authenticate(&self.signers, request);
        let (code, signer): (ResponseCode, Option<&ResponseSigner>) = match &authentication {
            Authentication::Failed(signer) => (ResponseCode::NotAuth, Some(signer)),
            authentication => {
                let signer = match authentication {
                    Authentication::Valid(signer) => Some(signer),
                    _ => None,
                };
                let code = match self.primaries.get(zone) {
                    // RFC 2136 §3.1: a zone not served here.
                    None => ResponseCode::NotAuth,
                    // hickory's zone handler accepts only signed updates.
                    Some(_) if signer.is_none() => ResponseCode::Refused,
                    Some(primary) => primary.apply_update(request).await,
                };
                (code, signer)
            }
        };
        answer_update(request, code, signer, response_edns, response_handle).await
    }
}

#[async_trait::async_trait]
impl RequestHandler for ZoneRequestHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let catalog = self
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Ok(info) = request.request_info() {
            let op_code = request.metadata.op_code;
            let query_type = info.query.query_type();
            let is_transfer = matches!(query_type, RecordType::AXFR | RecordType::IXFR);
            let edns = response_edns(request);
            if op_code == OpCode::Query && is_transfer {
                if !self
                    .allow_transfer
                    .contains(&request.src().ip().to_canonical())
                {
                    return reply_error(request, ResponseCode::Refused, response_handle).await;
                }
                if let Some(primary) = self.primaries.get(info.query.name()) {
                    return primary
                        .answer_transfer(request, query_type, edns.as_ref(), response_handle)
                        .await;
                }
            }
            if op_code == OpCode::Update {
                if !self.primaries.is_empty() {
                    if query_type != RecordType::SOA {
                        return send_error(
                            request,
                            ResponseCode::FormErr,
                            edns.as_ref(),
                            response_handle,
                        )
                        .await;
                    }
                    return self
                        .update(request, info.query.name(), edns.as_ref(), response_handle)
                        .await;
                }
                if catalog.find(info.query.name()).is_none() {
                    return reply_error(request, ResponseCode::NotAuth, response_handle).await;
                }
            }
        }
        catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// The EDNS of an answer to `request`, as hickory's catalog makes it.
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|asked| {
        let mut edns = Edns::new();
        edns.set_max_payload(asked.max_payload().max(512));
        edns.set_version(0);
        edns
    })
}

async fn reply_error<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    mut response_handle: R,
) -> ResponseInfo {
    let response =
        MessageResponseBuilder::new(&request.queries, None).error_msg(&request.metadata, code);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => not_sent(request, code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn journal_names_are_plain_file_names() {
        let name = Name::from_str("Maemo.org.").unwrap();
        assert_eq!(journal_file_name(&name), "maemo.org.journal.sqlite");
        assert_eq!(journal_file_name(&Name::root()), "root.journal.sqlite");
    }
}
