//! The authoritative server behind `cutover dns serve`: the hidden primary of the 2013 move,
//! and the lab's DNS.
//!
//! Zones come from standard master files and are served by hickory-server's SQLite zone
//! handler, the one that accepts RFC 2136 updates (TSIG-signed only) and writes each change to
//! a journal. The journal lives in the state directory; when it exists it wins over the zone
//! file, so a restart serves the updated zone.
//!
//! A second mode serves a *lagging secondary*: a copy of the primary's zones, transferred by
//! AXFR, that checks the primary's SOA serial every `check_every` and applies a newer zone only
//! once `lag` has passed since it first saw it. That is the stale secondary of the seeds, made
//! on purpose and bounded, so the engine's verification can be seen waiting for it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::{Time, TokioRuntimeProvider};
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::DnsMultiplexer;
use hickory_proto::op::{Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::Server;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::store::sqlite::{Journal, SqliteZoneHandler};
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, MessageResponseBuilder, ZoneHandler, ZoneType,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::error::DnsError;
use crate::query::Querier;
use crate::records::{rcode_name, zone_name};
use crate::tsig::TsigKey;
use crate::zonefile::{ZoneRecords, load_zone_file};

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Responses buffered per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

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
    follower: Option<JoinHandle<()>>,
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

    /// Stops answering and waits until every listener has closed.
    pub async fn shutdown(mut self) -> Result<(), DnsError> {
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        self.server
            .shutdown_gracefully()
            .await
            .map_err(|err| DnsError::Serve(format!("shutting down: {err}")))
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        self.server.shutdown_token().cancel();
    }
}

/// Starts a primary: loads every zone (from its journal if one exists in the state directory,
/// else from its master file), then answers on every listen address.
pub async fn serve(config: ServeConfig) -> Result<ServerHandle, DnsError> {
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
    for source in &config.zones {
        let origin = zone_name(&source.name)?;
        if catalog.contains(&LowerName::from(&origin)) {
            return Err(DnsError::Input(format!("zone {origin} is given twice")));
        }
        let journal_path = config.state_dir.join(journal_file_name(&origin));
        let (mut handler, loaded_from) = if journal_path.exists() {
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
        handler.set_tsig_signers(signers.clone());
        zones.push(ServedZone {
            name: origin.to_string(),
            serial: handler.serial().await,
            loaded_from,
        });
        catalog.upsert(LowerName::from(&origin), vec![Arc::new(handler)]);
    }

    let catalog = Arc::new(RwLock::new(Arc::new(catalog)));
    let handler = ZoneRequestHandler {
        catalog,
        allow_transfer: config.allow_transfer.clone(),
    };
    let (server, addresses) = listen(handler, &config.listen).await?;
    Ok(ServerHandle {
        addresses,
        zones,
        server,
        follower: None,
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
    };
    let (server, addresses) = listen(handler, &config.listen).await?;
    let follower = tokio::spawn(follow_primary(config, origins, handlers, catalog));
    Ok(ServerHandle {
        addresses,
        zones,
        server,
        follower: Some(follower),
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

/// The secondary's refresh loop: notices a newer serial, waits out the lag, transfers.
async fn follow_primary(
    config: SecondaryConfig,
    origins: Vec<Name>,
    mut handlers: SecondaryZones,
    catalog: Arc<RwLock<Arc<Catalog>>>,
) {
    let querier = Querier::new(config.timeout);
    let mut noticed: BTreeMap<LowerName, Instant> = BTreeMap::new();
    loop {
        tokio::time::sleep(config.check_every).await;
        let mut changed = false;
        for origin in &origins {
            let key = LowerName::from(origin);
            let Some(served_serial) = handlers.get(&key).map(|(_, serial)| *serial) else {
                continue;
            };
            let Ok(primary) = querier.soa(config.primary, origin).await else {
                continue;
            };
            if primary.serial == served_serial {
                noticed.remove(&key);
                continue;
            }
            let since = *noticed.entry(key.clone()).or_insert_with(Instant::now);
            if since.elapsed() < config.lag {
                continue;
            }
            if let Ok((handler, serial)) = transfer_zone(&config, origin).await {
                handlers.insert(key.clone(), (handler, serial));
                noticed.remove(&key);
                changed = true;
            }
        }
        if changed {
            let fresh = Arc::new(catalog_of(&handlers));
            *catalog.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
    }
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

fn open_journal(path: &Path) -> Result<Journal, DnsError> {
    Journal::from_file(path)
        .map_err(|err| DnsError::Serve(format!("cannot open journal {}: {err}", path.display())))
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
        match TcpListener::bind(SocketAddr::new(address.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err) => last_error = Some(err),
        }
    }
    Err(DnsError::io(
        format!("cannot listen on {address} (TCP)"),
        last_error.unwrap_or_else(|| std::io::Error::other("no attempt made")),
    ))
}

/// hickory's catalog, with two checks in front: zone transfers only to listed addresses, and
/// NOTAUTH (RFC 2136 §3.1) for an update to a zone not served here. The catalog can be
/// replaced while serving, which the lagging secondary does after each transfer.
struct ZoneRequestHandler {
    catalog: Arc<RwLock<Arc<Catalog>>>,
    allow_transfer: Vec<IpAddr>,
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
            if op_code == OpCode::Query
                && is_transfer
                && !self
                    .allow_transfer
                    .contains(&request.src().ip().to_canonical())
            {
                return reply_error(request, ResponseCode::Refused, response_handle).await;
            }
            if op_code == OpCode::Update && catalog.find(info.query.name()).is_none() {
                return reply_error(request, ResponseCode::NotAuth, response_handle).await;
            }
        }
        catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
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
        Err(_) => {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = code;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
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
