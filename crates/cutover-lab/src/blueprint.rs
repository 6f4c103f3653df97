//! What a runbook needs from the world, worked out from the runbook alone, before anything is
//! started: the zones with the records its DNS steps expect to find, the servers that serve
//! them, the keys, and for each host its listening and closed ports and the files its copy and
//! sync steps read. Keeping this pure makes the lab's choices testable and its refusals early.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use cutover_lang::{
    Action, ActionKind, DbServer, Endpoint, HostId, RecordType, Runbook, SecretRef, ServerEngine,
    Transport, TsigAlgorithm,
};

use crate::error::LabError;

/// TTL, in seconds, of records whose earlier TTL the runbook does not state (`was`).
pub const DEFAULT_TTL: u32 = 30;
/// Size of an image or database whose step gives no `size`.
pub const DEFAULT_FILE_SIZE: u64 = 16 << 20;
/// The largest file the lab generates: lab-sized means small.
pub const MAX_FILE_SIZE: u64 = 4 << 30;

/// Everything the lab builds for one runbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blueprint {
    pub zones: Vec<ZoneBlueprint>,
    /// One per primary address (a primary may serve several zones).
    pub primaries: Vec<PrimaryBlueprint>,
    /// One per verify address that is not a primary.
    pub secondaries: Vec<SecondaryBlueprint>,
    pub keys: Vec<KeyBlueprint>,
    pub hosts: Vec<HostBlueprint>,
    /// The PostgreSQL and MariaDB servers `db.sync` steps (and their `undo`s) name.
    pub servers: Vec<DbServerBlueprint>,
}

/// A database server on a host: what `db.sync postgres|mysql` lines name at its address
/// and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbServerBlueprint {
    pub engine: ServerEngine,
    /// The host it runs on.
    pub host: String,
    pub addr: IpAddr,
    pub port: u16,
    /// Every database named on it (made empty, unless seeded).
    pub databases: BTreeSet<String>,
    /// The users that log in, with where their passwords are (resolved against the lab's
    /// folder).
    pub logins: Vec<(String, SecretRef)>,
    /// The databases a `db.sync` reads: filled with rows and written to until the freeze.
    pub seeded: Vec<SeedBlueprint>,
}

/// A source database: its rows, and the steps whose end stops its writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedBlueprint {
    pub database: String,
    /// About how much table data to generate.
    pub size: u64,
    /// The `freeze` steps of the `db.sync`s reading it: once one of them is done (or
    /// skipped) in the lab's run, the writer stops. None: no writer.
    pub freeze: Vec<String>,
}

/// A zone as the lab serves it before the run: the records the runbook's DNS steps expect,
/// with their old values and TTLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneBlueprint {
    /// Without the trailing dot.
    pub name: String,
    pub primary: SocketAddr,
    pub verify: Vec<SocketAddr>,
    /// TTL of the apex NS records (the runbook's `was` when it lowers `@ NS`).
    pub ns_ttl: u32,
    pub records: Vec<RecordBlueprint>,
}

/// One record of a lab zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBlueprint {
    /// Relative to the zone; `@` is the apex.
    pub name: String,
    pub rtype: RecordType,
    pub ttl: u32,
    /// In zone-file syntax.
    pub value: String,
    /// Where the value came from, for the zone file's comments.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryBlueprint {
    pub address: SocketAddr,
    /// Indices into [`Blueprint::zones`].
    pub zones: Vec<usize>,
    /// Indices into [`Blueprint::keys`]: the keys allowed to sign updates.
    pub keys: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryBlueprint {
    pub address: SocketAddr,
    pub primary: SocketAddr,
    /// Indices into [`Blueprint::zones`].
    pub zones: Vec<usize>,
}

/// A TSIG key a zone's updates are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBlueprint {
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: SecretRef,
}

/// A host: its folder, the ports that answer and the ones that must not, its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBlueprint {
    pub name: String,
    pub site: Option<String>,
    pub addr: IpAddr,
    /// `via local DIR`, resolved against the runbook's folder.
    pub root: Option<PathBuf>,
    /// Ports the runbook checks open or sends HTTP to: each gets a listener.
    pub listen: BTreeSet<u16>,
    /// Ports the runbook checks closed: nothing listens there.
    pub closed: BTreeSet<u16>,
    /// Images that copy steps read: generated.
    pub images: Vec<FileBlueprint>,
    /// SQLite databases that sync steps read: generated.
    pub databases: Vec<FileBlueprint>,
    /// Files copy and sync steps write: removed when the lab is built afresh.
    pub outputs: Vec<FileBlueprint>,
}

/// A file on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBlueprint {
    /// The path as the runbook names it on the host.
    pub path: String,
    /// Where it lives on this machine.
    pub file: PathBuf,
    pub size: u64,
}

impl Blueprint {
    /// Works out the lab for `runbook`, whose relative paths (host folders, key files) are
    /// resolved against `dir`.
    pub fn from_runbook(runbook: &Runbook, dir: &Path) -> Result<Blueprint, LabError> {
        check_addresses(runbook)?;
        let zones = zones(runbook)?;
        let keys: Vec<KeyBlueprint> = runbook
            .keys
            .iter()
            .map(|key| KeyBlueprint {
                name: key.name.clone(),
                algorithm: key.algorithm,
                secret: match &key.secret {
                    SecretRef::File(path) => SecretRef::File(dir.join(path)),
                    other => other.clone(),
                },
            })
            .collect();
        let (primaries, secondaries) = servers(runbook, &zones)?;
        let mut hosts = hosts(runbook, dir)?;
        let servers = servers_of(runbook, dir)?;
        // A port a database server answers on needs no listener of its own.
        for server in &servers {
            if let Some(host) = hosts.iter_mut().find(|h| h.name == server.host) {
                host.listen.remove(&server.port);
            }
        }
        let blueprint = Blueprint {
            zones,
            primaries,
            secondaries,
            keys,
            hosts,
            servers,
        };
        blueprint.check_collisions()?;
        Ok(blueprint)
    }

    /// Moves every address to the one `network` chose for it: servers, hosts, and record
    /// values that name a runbook address (as the lab's copy of the runbook does).
    pub fn relocate(&mut self, network: &crate::network::Network) {
        let ip = |ip: IpAddr| network.map_ip(ip).unwrap_or(ip);
        let dns = |address: SocketAddr| {
            network
                .map_dns(address)
                .unwrap_or_else(|| SocketAddr::new(ip(address.ip()), address.port()))
        };
        for zone in &mut self.zones {
            zone.primary = dns(zone.primary);
            for address in &mut zone.verify {
                *address = dns(*address);
            }
            for record in &mut zone.records {
                if let Ok(old) = record.value.parse::<IpAddr>()
                    && let Some(new) = network.map_ip(old)
                {
                    record.value = new.to_string();
                }
            }
        }
        for primary in &mut self.primaries {
            primary.address = dns(primary.address);
        }
        for secondary in &mut self.secondaries {
            secondary.address = dns(secondary.address);
            secondary.primary = dns(secondary.primary);
        }
        for host in &mut self.hosts {
            host.addr = ip(host.addr);
        }
        for server in &mut self.servers {
            server.addr = ip(server.addr);
        }
    }

    /// Every DNS server address with what it is, for messages and the manifest.
    fn dns_addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.primaries
            .iter()
            .map(|p| p.address)
            .chain(self.secondaries.iter().map(|s| s.address))
    }

    fn check_collisions(&self) -> Result<(), LabError> {
        let mut taken: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for address in self.dns_addresses() {
            taken.insert(address, format!("a DNS server at {address}"));
        }
        for host in &self.hosts {
            for &port in &host.listen {
                let address = SocketAddr::new(host.addr, port);
                if let Some(other) =
                    taken.insert(address, format!("host {}'s port {port}", host.name))
                {
                    return Err(LabError::Unsupported(format!(
                        "{address} would be both {other} and host {}'s port {port}; give the hosts distinct addresses",
                        host.name
                    )));
                }
            }
        }
        for server in &self.servers {
            let address = SocketAddr::new(server.addr, server.port);
            if let Some(other) = taken.insert(
                address,
                format!("host {}'s {} server", server.host, server.engine.as_str()),
            ) {
                return Err(LabError::Unsupported(format!(
                    "{address} would be both {other} and host {}'s {} server; give the database another port",
                    server.host,
                    server.engine.as_str()
                )));
            }
            if let Some(host) = self.hosts.iter().find(|h| h.name == server.host)
                && host.closed.contains(&server.port)
            {
                return Err(LabError::Unsupported(format!(
                    "host {}: port {} is checked closed, but a `db.sync` reaches its {} server there",
                    server.host,
                    server.port,
                    server.engine.as_str()
                )));
            }
        }
        Ok(())
    }
}

/// The database servers of every `db.sync postgres|mysql` line (kind and `undo`): one per
/// host and port, with every database and login named there; a step's source is seeded.
fn servers_of(runbook: &Runbook, dir: &Path) -> Result<Vec<DbServerBlueprint>, LabError> {
    let mut servers: Vec<DbServerBlueprint> = Vec::new();
    let mut add = |engine: ServerEngine,
                   db: &DbServer,
                   seed: Option<(u64, Option<String>)>|
     -> Result<(), LabError> {
        let host = runbook.host(db.host);
        let index = match servers
            .iter()
            .position(|s| s.host == host.name && s.port == db.port)
        {
            Some(index) => index,
            None => {
                servers.push(DbServerBlueprint {
                    engine,
                    host: host.name.clone(),
                    addr: host.addr,
                    port: db.port,
                    databases: BTreeSet::new(),
                    logins: Vec::new(),
                    seeded: Vec::new(),
                });
                servers.len() - 1
            }
        };
        let server = &mut servers[index];
        if server.engine != engine {
            return Err(LabError::Unsupported(format!(
                "{}:{} is named both a {} and a {} server",
                host.name,
                db.port,
                server.engine.as_str(),
                engine.as_str()
            )));
        }
        server.databases.insert(db.database.clone());
        let Some(password) = &db.password else {
            return Err(LabError::Unsupported(format!(
                "{}:{}/{}: user `{}` has no password; the lab's {} servers take logins with a password only (`password file:PATH` or `password env:VARIABLE`)",
                host.name,
                db.port,
                db.database,
                db.user,
                engine.as_str()
            )));
        };
        let password = match password {
            SecretRef::File(path) => SecretRef::File(dir.join(path)),
            other => other.clone(),
        };
        match server.logins.iter().find(|(user, _)| *user == db.user) {
            Some((_, known)) if *known != password => {
                return Err(LabError::Unsupported(format!(
                    "{}:{}: user `{}` is given two different passwords",
                    host.name, db.port, db.user
                )));
            }
            Some(_) => {}
            None => server.logins.push((db.user.clone(), password)),
        }
        if let Some((size, freeze)) = seed {
            let seed = match server.seeded.iter_mut().find(|s| s.database == db.database) {
                Some(seed) => seed,
                None => {
                    server.seeded.push(SeedBlueprint {
                        database: db.database.clone(),
                        size: 0,
                        freeze: Vec::new(),
                    });
                    server.seeded.last_mut().expect("just pushed")
                }
            };
            seed.size = seed.size.max(size);
            seed.freeze
                .extend(freeze.filter(|f| !seed.freeze.contains(f)));
        }
        Ok(())
    };
    for step in &runbook.steps {
        let lines =
            std::iter::once((&step.action, true)).chain(step.undo.iter().map(|u| (u, false)));
        for (line, is_kind) in lines {
            let ActionKind::DbReplicate {
                engine,
                from,
                to,
                freeze,
                size,
            } = &line.kind
            else {
                continue;
            };
            let size = size.map_or(DEFAULT_FILE_SIZE, |s| s.0);
            if size > MAX_FILE_SIZE {
                return Err(LabError::Unsupported(format!(
                    "step {}: size {size} bytes; the lab generates databases up to {MAX_FILE_SIZE} bytes (write lab sizes in MiB)",
                    step.name
                )));
            }
            let freeze = freeze.map(|f| runbook.step(f).name.clone());
            add(*engine, from, is_kind.then_some((size, freeze)))?;
            add(*engine, to, None)?;
        }
    }
    // A database some step writes (a destination) is not also generated.
    let destinations: BTreeSet<(String, u16, String)> = runbook
        .steps
        .iter()
        .filter_map(|step| match &step.action.kind {
            ActionKind::DbReplicate { to, .. } => Some((
                runbook.host(to.host).name.clone(),
                to.port,
                to.database.clone(),
            )),
            _ => None,
        })
        .collect();
    for server in &mut servers {
        let (host, port) = (server.host.clone(), server.port);
        server
            .seeded
            .retain(|seed| !destinations.contains(&(host.clone(), port, seed.database.clone())));
    }
    Ok(servers)
}

/// Every address the lab would use must be loopback and name its port.
fn check_addresses(runbook: &Runbook) -> Result<(), LabError> {
    for zone in &runbook.zones {
        let all = std::iter::once(("primary", zone.primary))
            .chain(zone.verify.iter().map(|a| ("verify", *a)))
            .chain(zone.resolvers.iter().map(|a| ("resolvers", *a)));
        for (line, address) in all {
            if !address.ip().is_loopback() {
                return Err(LabError::Unsupported(format!(
                    "zone {}: `{line}` address {address} is not a loopback address; the lab listens only on 127.0.0.0/8 and ::1",
                    zone.name
                )));
            }
            if address.port() == 0 {
                return Err(LabError::Unsupported(format!(
                    "zone {}: `{line}` address {address} has port 0; name the port the lab should listen on",
                    zone.name
                )));
            }
        }
    }
    for host in &runbook.hosts {
        if !host.addr.is_loopback() {
            return Err(LabError::Unsupported(format!(
                "host {}: address {} is not a loopback address; the lab listens only on 127.0.0.0/8 and ::1",
                host.name, host.addr
            )));
        }
    }
    Ok(())
}

/// The kind lines of every step (not `undo` or `verify` lines), in source order.
fn kind_lines(runbook: &Runbook) -> impl Iterator<Item = &ActionKind> {
    runbook.steps.iter().map(|step| &step.action.kind)
}

/// Every line of every step: kind, `undo` and `verify` lines.
fn all_lines(runbook: &Runbook) -> impl Iterator<Item = &Action> {
    runbook.steps.iter().flat_map(|step| {
        std::iter::once(&step.action)
            .chain(step.undo.iter())
            .chain(step.verify.iter())
    })
}

fn seconds(ttl: Duration, what: &str) -> Result<u32, LabError> {
    u32::try_from(ttl.as_secs())
        .map_err(|_| LabError::Unsupported(format!("{what}: TTL {}s is too large", ttl.as_secs())))
}

/// A record name relative to `zone` (`@` for the apex), lower-cased.
fn relative_name(zone: &str, name: &str) -> Result<String, LabError> {
    let lower = name.to_ascii_lowercase();
    let Some(absolute) = lower.strip_suffix('.') else {
        return Ok(lower);
    };
    let zone = zone.to_ascii_lowercase();
    if absolute == zone {
        return Ok("@".into());
    }
    match absolute.strip_suffix(&format!(".{zone}")) {
        Some(relative) => Ok(relative.to_string()),
        None => Err(LabError::Unsupported(format!(
            "record {name} is not inside zone {zone}"
        ))),
    }
}

/// The records of each zone: the DNS steps' records with the value the first `dns.switch`
/// expects to replace and the TTL the first `dns.ttl` says they had (`was`).
fn zones(runbook: &Runbook) -> Result<Vec<ZoneBlueprint>, LabError> {
    // Per zone: (name, type) -> (ttl, value), both optional until the end.
    type Slot = (Option<(u32, String)>, Option<(Vec<String>, String)>);
    let mut wanted: Vec<BTreeMap<(String, RecordType), Slot>> =
        vec![BTreeMap::new(); runbook.zones.len()];
    let mut order: Vec<Vec<(String, RecordType)>> = vec![Vec::new(); runbook.zones.len()];
    // Records an earlier `dns.add` creates: a later removal finds them there.
    let mut added: Vec<(usize, String, RecordType)> = Vec::new();
    for (step, kind) in runbook.steps.iter().zip(kind_lines(runbook)) {
        match kind {
            ActionKind::DnsTtl {
                zone,
                names,
                rtype,
                previous_ttl,
                ..
            } => {
                let zone_name = &runbook.zone(*zone).name;
                for name in names {
                    let key = (relative_name(zone_name, name)?, *rtype);
                    let slot = wanted[zone.0].entry(key.clone()).or_insert_with(|| {
                        order[zone.0].push(key.clone());
                        (None, None)
                    });
                    if slot.0.is_none()
                        && let Some(was) = previous_ttl
                    {
                        let what = format!("step {}", step.name);
                        slot.0 = Some((
                            seconds(*was, &what)?,
                            format!("`was` of step {}", step.name),
                        ));
                    }
                }
            }
            ActionKind::DnsSwitch {
                zone,
                name,
                rtype,
                old,
                ..
            } => {
                let zone_name = &runbook.zone(*zone).name;
                let key = (relative_name(zone_name, name)?, *rtype);
                let slot = wanted[zone.0].entry(key.clone()).or_insert_with(|| {
                    order[zone.0].push(key.clone());
                    (None, None)
                });
                if slot.1.is_none() {
                    slot.1 = Some((old.0.clone(), format!("old value of step {}", step.name)));
                }
            }
            ActionKind::DnsAdd {
                zone, name, rtype, ..
            } => {
                let zone_name = &runbook.zone(*zone).name;
                added.push((zone.0, relative_name(zone_name, name)?, *rtype));
            }
            ActionKind::DnsRemove {
                zone,
                name,
                rtype,
                values,
            } => {
                // The lab's zone holds the values a removal expects, unless
                // an earlier step already spoke for the record.
                let zone_name = &runbook.zone(*zone).name;
                let key = (relative_name(zone_name, name)?, *rtype);
                let created = added.contains(&(zone.0, key.0.clone(), key.1));
                if !created && !wanted[zone.0].contains_key(&key) {
                    order[zone.0].push(key.clone());
                    let value = (
                        values.0.clone(),
                        format!("values step {} removes", step.name),
                    );
                    wanted[zone.0].insert(key, (None, Some(value)));
                }
            }
            _ => {}
        }
    }

    let mut zones = Vec::new();
    for (index, zone) in runbook.zones.iter().enumerate() {
        let mut records = Vec::new();
        let mut ns_ttl = DEFAULT_TTL;
        let mut generated = 0u32;
        for key in &order[index] {
            let (ttl, value) = &wanted[index][key];
            let (name, rtype) = key;
            let ttl_value = ttl.as_ref().map_or(DEFAULT_TTL, |(ttl, _)| *ttl);
            let ttl_origin = ttl
                .as_ref()
                .map_or_else(|| format!("default TTL {DEFAULT_TTL}"), |(_, o)| o.clone());
            if name == "@" && *rtype == RecordType::Ns {
                if value.is_some() {
                    return Err(LabError::Unsupported(format!(
                        "zone {}: the lab generates the apex NS records from the `verify` servers; it cannot switch them",
                        zone.name
                    )));
                }
                ns_ttl = ttl_value;
                continue;
            }
            let (values, value_origin) = match value {
                Some((values, origin)) => (values.clone(), origin.clone()),
                None => {
                    generated += 1;
                    (
                        vec![placeholder(&zone.name, name, *rtype, generated)?],
                        "placeholder value".to_string(),
                    )
                }
            };
            // One record per value of the set.
            for value in values {
                records.push(RecordBlueprint {
                    name: name.clone(),
                    rtype: *rtype,
                    ttl: ttl_value,
                    value,
                    origin: format!("{value_origin}, {ttl_origin}"),
                });
            }
        }
        zones.push(ZoneBlueprint {
            name: zone.name.trim_end_matches('.').to_string(),
            primary: zone.primary,
            verify: zone.verify.clone(),
            ns_ttl,
            records,
        });
    }
    Ok(zones)
}

/// A value for a record the runbook only changes the TTL of; documentation addresses, so
/// nothing points at a real host.
fn placeholder(zone: &str, name: &str, rtype: RecordType, index: u32) -> Result<String, LabError> {
    let host_part = u8::try_from(index.min(254)).unwrap_or(254);
    Ok(match rtype {
        RecordType::A => format!("192.0.2.{host_part}"),
        RecordType::Aaaa => {
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host_part)).to_string()
        }
        RecordType::Cname => format!("lab-target.{zone}."),
        RecordType::Mx => format!("10 lab-mail.{zone}."),
        RecordType::Txt => "\"cutover lab\"".to_string(),
        RecordType::Srv => format!("0 0 80 lab-target.{zone}."),
        RecordType::Caa => "0 issue \"lab.invalid\"".to_string(),
        RecordType::Ptr => format!("lab-target.{zone}."),
        RecordType::Https | RecordType::Svcb => format!("1 lab-target.{zone}."),
        RecordType::Ns => {
            return Err(LabError::Unsupported(format!(
                "zone {zone}: record {name} NS would delegate a subzone; the lab serves whole zones only"
            )));
        }
    })
}

/// Groups zones by primary, and verify addresses that are not primaries into secondaries.
fn servers(
    runbook: &Runbook,
    zones: &[ZoneBlueprint],
) -> Result<(Vec<PrimaryBlueprint>, Vec<SecondaryBlueprint>), LabError> {
    let mut primaries: BTreeMap<SocketAddr, PrimaryBlueprint> = BTreeMap::new();
    for (index, zone) in runbook.zones.iter().enumerate() {
        let primary = primaries
            .entry(zone.primary)
            .or_insert_with(|| PrimaryBlueprint {
                address: zone.primary,
                zones: Vec::new(),
                keys: Vec::new(),
            });
        primary.zones.push(index);
        if let Some(key) = zone.key
            && !primary.keys.contains(&key.0)
        {
            primary.keys.push(key.0);
        }
    }
    let mut secondaries: BTreeMap<SocketAddr, SecondaryBlueprint> = BTreeMap::new();
    for (index, zone) in zones.iter().enumerate() {
        for &address in &zone.verify {
            if address == zone.primary {
                continue;
            }
            if primaries.contains_key(&address) {
                return Err(LabError::Unsupported(format!(
                    "{address} is a verify server of zone {} and the primary of another zone; the lab runs one server per address",
                    zone.name
                )));
            }
            let secondary = secondaries
                .entry(address)
                .or_insert_with(|| SecondaryBlueprint {
                    address,
                    primary: zone.primary,
                    zones: Vec::new(),
                });
            if secondary.primary != zone.primary {
                return Err(LabError::Unsupported(format!(
                    "{address} verifies zones with different primaries ({} and {}); the lab's secondaries follow one primary",
                    secondary.primary, zone.primary
                )));
            }
            secondary.zones.push(index);
        }
    }
    Ok((
        primaries.into_values().collect(),
        secondaries.into_values().collect(),
    ))
}

/// The scheme and port of an `http.check` URL.
fn url_port(url: &str) -> Result<u16, LabError> {
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("http://") {
        rest
    } else if lower.starts_with("https://") {
        return Err(LabError::Unsupported(format!(
            "http.check {url}: the lab serves plain HTTP only; use an http:// URL"
        )));
    } else {
        return Err(LabError::Unsupported(format!(
            "http.check {url}: not an http:// URL"
        )));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let port = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => &authority[colon + 1..],
        _ => return Ok(80),
    };
    port.parse::<u16>()
        .map_err(|_| LabError::Unsupported(format!("http.check {url}: `{port}` is not a port")))
}

/// A host path under the host's folder; `..` may not climb out of it.
fn local_file(root: &Path, host: &str, path: &str) -> Result<PathBuf, LabError> {
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        || relative.as_os_str().is_empty()
    {
        return Err(LabError::Unsupported(format!(
            "{host}:{path}: the path must name a file inside the host's folder"
        )));
    }
    Ok(root.join(relative))
}

fn hosts(runbook: &Runbook, dir: &Path) -> Result<Vec<HostBlueprint>, LabError> {
    let mut hosts: Vec<HostBlueprint> = runbook
        .hosts
        .iter()
        .map(|host| HostBlueprint {
            name: host.name.clone(),
            site: host.site.clone(),
            addr: host.addr,
            root: match &host.transport {
                Transport::Local { root } => Some(dir.join(root)),
                _ => None,
            },
            listen: BTreeSet::new(),
            closed: BTreeSet::new(),
            images: Vec::new(),
            databases: Vec::new(),
            outputs: Vec::new(),
        })
        .collect();

    for line in all_lines(runbook) {
        match &line.kind {
            ActionKind::PortOpen { targets, .. } => {
                for target in targets {
                    hosts[target.host.0].listen.insert(target.port);
                }
            }
            ActionKind::PortClosed { targets, .. } => {
                for target in targets {
                    hosts[target.host.0].closed.insert(target.port);
                }
            }
            ActionKind::HttpCheck {
                url,
                host: Some(host),
                ..
            } => {
                let port = url_port(url)?;
                hosts[host.0].listen.insert(port);
            }
            _ => {}
        }
    }
    for host in &hosts {
        if let Some(port) = host.listen.intersection(&host.closed).next() {
            return Err(LabError::Unsupported(format!(
                "host {}: port {port} is checked both open and closed; the lab keeps a port one way for the whole run",
                host.name
            )));
        }
    }

    // Files: what copy and sync steps read is generated, unless an earlier step writes it.
    let mut written: BTreeSet<(HostId, String)> = BTreeSet::new();
    let mut sources: Vec<(Endpoint, u64, bool)> = Vec::new();
    for kind in kind_lines(runbook) {
        let (from, to, size, is_database) = match kind {
            ActionKind::ImageCopy { from, to, size, .. } => (from, to, size, false),
            ActionKind::DbSync { from, to, size, .. } => (from, to, size, true),
            _ => continue,
        };
        let size = size.map_or(DEFAULT_FILE_SIZE, |s| s.0);
        if size > MAX_FILE_SIZE {
            return Err(LabError::Unsupported(format!(
                "{}:{} has size {size} bytes; the lab generates files up to {MAX_FILE_SIZE} bytes (write lab sizes in MiB)",
                runbook.host(from.host).name,
                from.path
            )));
        }
        if !written.contains(&(from.host, from.path.clone())) {
            match sources.iter_mut().find(|(e, _, _)| e == from) {
                Some(source) => source.1 = source.1.max(size),
                None => sources.push((from.clone(), size, is_database)),
            }
        }
        written.insert((to.host, to.path.clone()));
        let host = &mut hosts[to.host.0];
        if let Some(root) = &host.root {
            let file = local_file(root, &host.name, &to.path)?;
            if !host.outputs.iter().any(|o| o.file == file) {
                host.outputs.push(FileBlueprint {
                    path: to.path.clone(),
                    file,
                    size,
                });
            }
        }
    }
    for (endpoint, size, is_database) in sources {
        let host = &mut hosts[endpoint.host.0];
        let Some(root) = &host.root else {
            return Err(LabError::Unsupported(format!(
                "host {} is not reached `via local`; the lab can only create {} in a local folder",
                host.name, endpoint.path
            )));
        };
        let file = FileBlueprint {
            file: local_file(root, &host.name, &endpoint.path)?,
            path: endpoint.path,
            size,
        };
        if is_database {
            host.databases.push(file);
        } else {
            host.images.push(file);
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook(text: &str) -> Runbook {
        let loaded = cutover_lang::parse_source("lab.runbook", text.to_string());
        assert!(
            loaded
                .diagnostics
                .iter()
                .all(|d| d.severity != cutover_lang::Severity::Error),
            "{:?}",
            loaded.diagnostics
        );
        loaded.runbook.expect("runbook")
    }

    const BASE: &str = "runbook lab\n\
        key k hmac-sha256 file:keys/k.key\n\
        zone example.org\n  primary 127.0.0.53:5301 key k\n  verify 127.0.0.53:5301, 127.0.0.54:5301\n\
        host old site a addr 127.0.0.10 via local hosts/old\n\
        host new site b addr 127.0.0.20 via local hosts/new\n";

    #[test]
    fn records_take_the_old_value_and_the_stated_ttl() {
        let text = format!(
            "{BASE}\nstep lower\n  dns.ttl example.org www mail A 5 was 40\n\
             step switch after lower\n  dns.switch example.org www A 127.0.0.10 -> 127.0.0.20\n\
             step back after switch\n  dns.switch example.org www A 127.0.0.20 -> 127.0.0.10\n"
        );
        let blueprint = Blueprint::from_runbook(&runbook(&text), Path::new("/lab")).unwrap();
        let zone = &blueprint.zones[0];
        assert_eq!(zone.records.len(), 2);
        assert_eq!(
            (
                zone.records[0].name.as_str(),
                zone.records[0].value.as_str(),
                zone.records[0].ttl
            ),
            ("www", "127.0.0.10", 40)
        );
        assert_eq!(
            (
                zone.records[1].name.as_str(),
                zone.records[1].value.as_str(),
                zone.records[1].ttl
            ),
            ("mail", "192.0.2.1", 40)
        );
        assert_eq!(blueprint.primaries.len(), 1);
        assert_eq!(blueprint.secondaries.len(), 1);
        assert_eq!(
            blueprint.secondaries[0].address,
            "127.0.0.54:5301".parse().unwrap()
        );
        assert_eq!(
            blueprint.keys[0].secret,
            SecretRef::File(PathBuf::from("/lab/keys/k.key"))
        );
    }

    #[test]
    fn a_removal_finds_its_values_unless_an_earlier_add_creates_them() {
        let text = format!(
            "{BASE}\nstep drop\n  dns.remove example.org old A 127.0.0.10, 127.0.0.11\n\
             step add\n  dns.add example.org new A 127.0.0.20\n\
             step undo-add after add\n  dns.remove example.org new A 127.0.0.20\n"
        );
        let blueprint = Blueprint::from_runbook(&runbook(&text), Path::new("/lab")).unwrap();
        let values: Vec<(&str, &str)> = blueprint.zones[0]
            .records
            .iter()
            .map(|r| (r.name.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(values, [("old", "127.0.0.10"), ("old", "127.0.0.11")]);
    }

    #[test]
    fn ports_images_and_databases_come_from_the_steps() {
        let text = format!(
            "{BASE}\nstep copy\n  image.copy old:/srv/a.img -> new:/srv/a.img size 8MiB\n\
             step again after copy\n  image.copy old:/srv/a.img -> new:/srv/a.img size 8MiB\n\
             step db\n  db.sync sqlite old:/srv/db.sqlite -> new:/srv/db.sqlite\n\
             step ports after again\n  port.open new:8080\n  verify http.check http://new:8081/health status 200\n\
             step closed after ports\n  port.closed new:3306\n"
        );
        let blueprint = Blueprint::from_runbook(&runbook(&text), Path::new("/lab")).unwrap();
        let new = &blueprint.hosts[1];
        assert_eq!(
            new.listen.iter().copied().collect::<Vec<_>>(),
            vec![8080, 8081]
        );
        assert_eq!(new.closed.iter().copied().collect::<Vec<_>>(), vec![3306]);
        let old = &blueprint.hosts[0];
        assert_eq!(old.images.len(), 1, "the same image is generated once");
        assert_eq!(
            old.images[0].file,
            PathBuf::from("/lab/hosts/old/srv/a.img")
        );
        assert_eq!(old.images[0].size, 8 << 20);
        assert_eq!(old.databases[0].size, DEFAULT_FILE_SIZE);
        assert_eq!(new.outputs.len(), 2);
    }

    #[test]
    fn public_addresses_are_refused() {
        let text = BASE.replace("127.0.0.54:5301", "192.0.2.53:53");
        let err = Blueprint::from_runbook(&runbook(&text), Path::new("/lab")).unwrap_err();
        assert!(
            err.to_string()
                .contains("192.0.2.53:53 is not a loopback address"),
            "{err}"
        );
        let text = BASE.replace("addr 127.0.0.20", "addr 80.248.164.42");
        let err = Blueprint::from_runbook(&runbook(&text), Path::new("/lab")).unwrap_err();
        assert!(
            err.to_string().contains("host new: address 80.248.164.42"),
            "{err}"
        );
    }

    #[test]
    fn conflicting_ports_and_https_are_refused() {
        let text = format!("{BASE}\nstep a\n  port.open new:80\nstep b\n  port.closed new:80\n");
        let err = Blueprint::from_runbook(&runbook(&text), Path::new("/lab")).unwrap_err();
        assert!(
            err.to_string()
                .contains("port 80 is checked both open and closed"),
            "{err}"
        );
        let text = format!("{BASE}\nstep a\n  http.check https://new/\n");
        let err = Blueprint::from_runbook(&runbook(&text), Path::new("/lab")).unwrap_err();
        assert!(err.to_string().contains("plain HTTP only"), "{err}");
        let text = format!("{BASE}\nstep a\n  port.open old:5301\n")
            .replace("127.0.0.53:5301", "127.0.0.10:5301");
        let err = Blueprint::from_runbook(&runbook(&text), Path::new("/lab")).unwrap_err();
        assert!(
            err.to_string().contains("would be both a DNS server"),
            "{err}"
        );
    }

    #[test]
    fn paths_stay_inside_the_host_folder() {
        let text =
            format!("{BASE}\nstep copy\n  image.copy old:/srv/../../etc/passwd -> new:/x.img\n");
        let err = Blueprint::from_runbook(&runbook(&text), Path::new("/lab")).unwrap_err();
        assert!(
            err.to_string().contains("inside the host's folder"),
            "{err}"
        );
    }

    #[test]
    fn database_servers_come_from_the_db_sync_lines() {
        let text = format!(
            "{BASE}\nstep freeze\n  manual \"stop the writers\"\n\
             step db\n  db.sync mysql old/shop user app password file:pw/old -> new:3307/shop user app password env:NEW_PW freeze freeze size 8MiB\n\
             step ports\n  port.open new:3307\n"
        );
        let blueprint = Blueprint::from_runbook(&runbook(&text), Path::new("/lab")).unwrap();
        assert_eq!(blueprint.servers.len(), 2);
        let (old, new) = (&blueprint.servers[0], &blueprint.servers[1]);
        assert_eq!((old.host.as_str(), old.port), ("old", 3306));
        assert_eq!(
            old.logins,
            vec![(
                "app".to_string(),
                SecretRef::File(PathBuf::from("/lab/pw/old"))
            )]
        );
        assert_eq!(
            old.seeded,
            vec![SeedBlueprint {
                database: "shop".into(),
                size: 8 << 20,
                freeze: vec!["freeze".into()],
            }]
        );
        assert_eq!((new.host.as_str(), new.port), ("new", 3307));
        assert!(new.seeded.is_empty(), "the destination starts empty");
        assert!(
            blueprint.hosts[1].listen.is_empty(),
            "the server answers on its port, no listener"
        );

        let closed = text.replace("port.open new:3307", "port.closed new:3307");
        let err = Blueprint::from_runbook(&runbook(&closed), Path::new("/lab")).unwrap_err();
        assert!(
            err.to_string().contains("port 3307 is checked closed"),
            "{err}"
        );
        let bare = text.replace(" password env:NEW_PW", "");
        let err = Blueprint::from_runbook(&runbook(&bare), Path::new("/lab")).unwrap_err();
        assert!(
            err.to_string().contains("user `app` has no password"),
            "{err}"
        );
    }

    #[test]
    fn url_ports() {
        assert_eq!(url_port("http://wiki/").unwrap(), 80);
        assert_eq!(url_port("http://wiki:8080/x?y").unwrap(), 8080);
        assert_eq!(url_port("HTTP://user@wiki:81").unwrap(), 81);
        assert!(url_port("http://wiki:99999/").is_err());
        assert!(url_port("ftp://wiki/").is_err());
    }
}
