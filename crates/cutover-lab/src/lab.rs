//! Building and running the lab in this process: [`Lab::start`] makes the files, starts the DNS
//! servers and the listeners, and writes the manifest; [`LabHandle::shutdown`] stops them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cutover_dns::{SecondaryConfig, ServeConfig, ServerHandle, ZoneSource};
use cutover_lang::Runbook;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::blueprint::Blueprint;
use crate::databases::{self, DbServerInfo, FreezeWatch, Servers};
use crate::error::LabError;
use crate::files;
use crate::keys::{self, KeyInfo};
use crate::listen;
use crate::netns::{self, NsRuntime};
use crate::network::{Network, NetworkMode};
use crate::zonefile;

/// The manifest's file name in the lab folder.
pub const MANIFEST_FILE: &str = "lab.json";
/// The folder, inside the lab folder, of what only the lab uses: zone files, DNS journals, log.
pub const INTERNAL_DIR: &str = ".lab";

/// How to build the lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// How long a change at a zone's primary stays invisible at its secondaries.
    pub lag: Duration,
    /// How often the secondaries ask their primary for its serial.
    pub check_every: Duration,
    /// Build from scratch: forget DNS changes, regenerate every source file and remove what
    /// the run wrote. Without it, a lab brought up again serves the world as it was left.
    pub fresh: bool,
    /// The runbook file the lab was built for, recorded in the manifest.
    pub runbook_file: Option<PathBuf>,
    /// Where the lab's addresses are ([`Network::establish`]); `None`: the runbook's own
    /// addresses, on loopback.
    pub network: Option<Network>,
}

impl Default for LabOptions {
    fn default() -> LabOptions {
        LabOptions {
            lag: Duration::from_secs(5),
            check_every: Duration::from_millis(250),
            fresh: false,
            runbook_file: None,
            network: None,
        }
    }
}

/// Where everything in a running lab is: written to `DIR/lab.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The runbook's name.
    pub runbook: String,
    pub runbook_file: Option<PathBuf>,
    /// The lab folder: the runbook's folder, where host folders and key files resolve.
    pub dir: PathBuf,
    /// The process serving the lab.
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    /// Secondary lag, in milliseconds.
    pub lag_ms: u64,
    pub dns: Vec<DnsServerInfo>,
    pub keys: Vec<KeyInfo>,
    pub hosts: Vec<HostInfo>,
    /// The addresses the lab chose, its namespaces and links.
    #[serde(default)]
    pub network: Option<Network>,
    /// The PostgreSQL and MariaDB servers of the runbook's `db.sync` steps.
    #[serde(default)]
    pub databases: Vec<DbServerInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsServerInfo {
    /// `primary` or `secondary`.
    pub role: String,
    pub address: SocketAddr,
    pub zones: Vec<ServedZoneInfo>,
    /// For a secondary: the primary it copies, `lag_ms` late.
    pub follows: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedZoneInfo {
    pub name: String,
    pub serial: u32,
    /// The generated master file (primaries only).
    pub zone_file: Option<PathBuf>,
    /// `zone-file`, `journal` (the changes of an earlier lab) or `transfer`.
    pub loaded_from: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: String,
    pub site: Option<String>,
    pub addr: IpAddr,
    pub root: Option<PathBuf>,
    /// Ports with a listener (HTTP answers name the host).
    pub listening: Vec<u16>,
    /// Ports the runbook checks closed: nothing listens there.
    pub closed: Vec<u16>,
    pub files: Vec<FileInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// `image` or `database`.
    pub kind: String,
    /// The path on the host, as the runbook names it.
    pub path: String,
    /// The file on this machine.
    pub file: PathBuf,
    pub size: u64,
    /// Whether this lab wrote it (false: kept from an earlier lab).
    pub generated: bool,
}

impl Manifest {
    /// Reads the manifest of the lab in `dir`.
    pub fn read(dir: &Path) -> Result<Manifest, LabError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|err| LabError::io("cannot read lab manifest", &path, err))?;
        serde_json::from_str(&text).map_err(|err| {
            LabError::Process(format!("{} is not a lab manifest: {err}", path.display()))
        })
    }

    /// Writes the manifest to `DIR/lab.json` (whole, through a temporary file).
    pub fn write(&self) -> Result<PathBuf, LabError> {
        let path = self.dir.join(MANIFEST_FILE);
        let temporary = self.dir.join(format!(".{MANIFEST_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)
            .map_err(|err| LabError::Process(format!("cannot encode the lab manifest: {err}")))?;
        std::fs::write(&temporary, text + "\n")
            .map_err(|err| LabError::io("cannot write", &temporary, err))?;
        std::fs::rename(&temporary, &path)
            .map_err(|err| LabError::io("cannot write", &path, err))?;
        Ok(path)
    }

    /// The manifest as a person reads it.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "lab for runbook {} in {}",
            self.runbook,
            self.dir.display()
        );
        if let Some(file) = &self.runbook_file {
            let _ = writeln!(out, "  runbook   {}", file.display());
        }
        if let Some(network) = &self.network {
            out.push_str(&network.describe());
        }
        for server in &self.dns {
            let zones: Vec<String> = server
                .zones
                .iter()
                .map(|z| format!("{} (serial {}, from {})", z.name, z.serial, z.loaded_from))
                .collect();
            let follows = server
                .follows
                .map(|p| format!(", follows {p} {}ms late", self.lag_ms))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  dns       {} {} {}{follows}",
                server.role,
                server.address,
                zones.join(", ")
            );
        }
        for key in &self.keys {
            let place = match (&key.env, &key.file) {
                (Some(var), Some(file)) => format!("env {var}: set it from {}", file.display()),
                (Some(var), None) => format!("env {var} (set in the lab's environment)"),
                (None, Some(file)) => format!("file {}", file.display()),
                (None, None) => String::new(),
            };
            let created = if key.created { ", created" } else { "" };
            let _ = writeln!(
                out,
                "  key       {} {} {place}{created}",
                key.name, key.algorithm
            );
        }
        for server in &self.databases {
            let mut line = format!(
                "  database  {:<14} {} {}:{} {}",
                server.host,
                server.engine,
                server.addr,
                server.port,
                server.databases.join(", ")
            );
            if !server.seeded.is_empty() {
                line.push_str(&format!("; filled: {}", server.seeded.join(", ")));
            }
            if !server.writers_until.is_empty() {
                line.push_str(&format!(
                    "; written to until {} is done",
                    server.writers_until.join(" or ")
                ));
            }
            let _ = writeln!(out, "{line}");
        }
        for host in &self.hosts {
            let ports = |ports: &[u16]| {
                ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut line = format!(
                "  host      {:<14} {:<15}",
                host.name,
                host.addr.to_string()
            );
            if !host.listening.is_empty() {
                line.push_str(&format!(" listening {}", ports(&host.listening)));
            }
            if !host.closed.is_empty() {
                line.push_str(&format!(" closed {}", ports(&host.closed)));
            }
            if let Some(root) = &host.root {
                line.push_str(&format!(" folder {}", root.display()));
            }
            let _ = writeln!(out, "{}", line.trim_end());
            for file in &host.files {
                let how = if file.generated { "generated" } else { "kept" };
                let _ = writeln!(
                    out,
                    "              {} {} ({} bytes, {how})",
                    file.kind, file.path, file.size
                );
            }
        }
        out
    }
}

/// The lab: see [`Lab::start`].
#[derive(Debug)]
pub struct Lab;

/// A running lab. Dropping it stops everything; [`LabHandle::shutdown`] also waits for it.
pub struct LabHandle {
    manifest: Manifest,
    /// Secondaries first, so they stop before the primaries they follow.
    servers: Vec<ServerHandle>,
    listeners: Vec<JoinHandle<()>>,
    /// The threads serving inside namespaces: stopped last.
    runtimes: Vec<NsRuntime>,
    /// The database servers and their writers.
    databases: Option<Servers>,
}

impl std::fmt::Debug for LabHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabHandle")
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}

impl Lab {
    /// Builds the world `runbook` needs and starts serving it. `dir` is the runbook's folder:
    /// host folders (`via local`) and key files resolve there, and the manifest is written
    /// there as `lab.json`. Must be called inside a tokio runtime.
    pub async fn start(
        runbook: &Runbook,
        dir: &Path,
        options: LabOptions,
    ) -> Result<LabHandle, LabError> {
        let mut blueprint = Blueprint::from_runbook(runbook, dir)?;
        if let Some(network) = &options.network {
            blueprint.relocate(network);
        }
        let internal = dir.join(INTERNAL_DIR);
        let dns_state = internal.join("dns");
        if options.fresh {
            match std::fs::remove_dir_all(&dns_state) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(LabError::io("cannot clear", &dns_state, err)),
            }
        }

        let mut keys = Vec::new();
        let mut key_infos = Vec::new();
        for key in &blueprint.keys {
            let (tsig, info) = keys::load_or_create(key, &internal.join("keys"))?;
            keys.push(tsig);
            key_infos.push(info);
        }

        let hosts = build_hosts(&blueprint, options.fresh)?;

        let mut handle = LabHandle {
            manifest: Manifest {
                runbook: runbook.name.clone(),
                runbook_file: options.runbook_file.clone(),
                dir: dir.to_path_buf(),
                pid: std::process::id(),
                started_at: Utc::now(),
                lag_ms: u64::try_from(options.lag.as_millis()).unwrap_or(u64::MAX),
                dns: Vec::new(),
                keys: key_infos,
                hosts,
                network: options.network.clone(),
                databases: Vec::new(),
            },
            servers: Vec::new(),
            listeners: Vec::new(),
            runtimes: Vec::new(),
            databases: None,
        };
        if let Some(network) = options.network.as_ref()
            && network.mode == NetworkMode::Namespaces
        {
            for namespace in network
                .hub
                .iter()
                .chain(network.sites.iter().map(|s| &s.namespace))
            {
                handle.runtimes.push(NsRuntime::start(namespace)?);
            }
        }
        let network = options.network.as_ref();
        // The runtime that serves an address: its namespace's, or this one.
        let runtime_for = |runtimes: &[NsRuntime], ip: IpAddr| -> Option<usize> {
            let namespace = network?.namespace_of(ip)?;
            runtimes.iter().position(|r| r.namespace == namespace)
        };

        let zones_dir = internal.join("zones");
        std::fs::create_dir_all(&zones_dir)
            .map_err(|err| LabError::io("cannot create", &zones_dir, err))?;
        let serial = initial_serial();
        let mut primaries = Vec::new();
        for primary in &blueprint.primaries {
            let mut sources = Vec::new();
            for &zone in &primary.zones {
                let zone = &blueprint.zones[zone];
                let file = zones_dir.join(format!("{}.zone", zone.name));
                let text = zonefile::render(zone, serial, &runbook.name);
                std::fs::write(&file, text)
                    .map_err(|err| LabError::io("cannot write zone file", &file, err))?;
                sources.push(ZoneSource {
                    name: zone.name.clone(),
                    file,
                });
            }
            let mut allow_transfer: Vec<IpAddr> = vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ];
            allow_transfer.extend(blueprint.secondaries.iter().map(|s| s.address.ip()));
            // A secondary's transfer leaves from whichever lab address its namespace picks.
            allow_transfer.extend(
                network
                    .iter()
                    .flat_map(|n| n.addresses.iter().map(|a| a.lab)),
            );
            let config = ServeConfig {
                zones: sources.clone(),
                listen: vec![primary.address],
                keys: primary.keys.iter().map(|&k| keys[k].clone()).collect(),
                state_dir: dns_state.join(address_folder(primary.address)),
                allow_transfer,
            };
            let server = match runtime_for(&handle.runtimes, primary.address.ip()) {
                Some(index) => {
                    handle.runtimes[index]
                        .run(cutover_dns::serve(config))
                        .await??
                }
                None => cutover_dns::serve(config).await?,
            };
            let zones = server
                .zones()
                .iter()
                .zip(&sources)
                .map(|(served, source)| ServedZoneInfo {
                    name: served.name.trim_end_matches('.').to_string(),
                    serial: served.serial,
                    zone_file: Some(source.file.clone()),
                    loaded_from: loaded_from(served.loaded_from),
                })
                .collect();
            handle.manifest.dns.push(DnsServerInfo {
                role: "primary".into(),
                address: primary.address,
                zones,
                follows: None,
            });
            primaries.push(server);
        }
        for secondary in &blueprint.secondaries {
            let config = SecondaryConfig {
                zones: secondary
                    .zones
                    .iter()
                    .map(|&z| blueprint.zones[z].name.clone())
                    .collect(),
                primary: secondary.primary,
                key: None,
                listen: vec![secondary.address],
                lag: options.lag,
                check_every: options.check_every,
                timeout: Duration::from_secs(3),
            };
            let server = match runtime_for(&handle.runtimes, secondary.address.ip()) {
                Some(index) => {
                    handle.runtimes[index]
                        .run(cutover_dns::serve_secondary(config))
                        .await??
                }
                None => cutover_dns::serve_secondary(config).await?,
            };
            handle.manifest.dns.push(DnsServerInfo {
                role: "secondary".into(),
                address: secondary.address,
                zones: server
                    .zones()
                    .iter()
                    .map(|served| ServedZoneInfo {
                        name: served.name.trim_end_matches('.').to_string(),
                        serial: served.serial,
                        zone_file: None,
                        loaded_from: loaded_from(served.loaded_from),
                    })
                    .collect(),
                follows: Some(secondary.primary),
            });
            handle.servers.push(server);
        }
        handle.servers.extend(primaries);

        for host in &blueprint.hosts {
            for &port in &host.listen {
                let address = SocketAddr::new(host.addr, port);
                let body = listen::body_for(&host.name, host.site.as_deref(), address);
                let listener = match runtime_for(&handle.runtimes, host.addr) {
                    Some(index) => {
                        let name = host.name.clone();
                        handle.runtimes[index]
                            .run(async move { listen::start(&name, address, body).await })
                            .await??
                    }
                    None => listen::start(&host.name, address, body).await?,
                };
                handle.listeners.push(listener);
            }
        }
        if !blueprint.servers.is_empty() {
            let namespaces: BTreeMap<IpAddr, String> = blueprint
                .servers
                .iter()
                .filter_map(|server| {
                    let network = network.filter(|n| n.mode == NetworkMode::Namespaces)?;
                    Some((server.addr, network.namespace_of(server.addr)?.to_string()))
                })
                .collect();
            let watch = FreezeWatch {
                state: dir.join(".cutover").join(format!("{}.db", runbook.name)),
                since: handle.manifest.started_at,
            };
            let servers = blueprint.servers.clone();
            let internal = internal.clone();
            let (running, infos) = tokio::task::spawn_blocking(move || {
                databases::start(&servers, &internal, &watch, &namespaces)
            })
            .await
            .map_err(|err| {
                LabError::Process(format!("starting the database servers failed: {err}"))
            })??;
            handle.databases = Some(running);
            handle.manifest.databases = infos;
        }
        for agent in network.iter().flat_map(|n| n.agents.iter()) {
            let Some(index) = handle
                .runtimes
                .iter()
                .position(|r| r.namespace == agent.namespace)
            else {
                return Err(LabError::Process(format!(
                    "host {}'s agent has no namespace {}",
                    agent.host, agent.namespace
                )));
            };
            std::fs::create_dir_all(&agent.root)
                .map_err(|err| LabError::io("cannot create host folder", &agent.root, err))?;
            let (host, address, root) = (agent.host.clone(), agent.address, agent.root.clone());
            let task = handle.runtimes[index]
                .run(async move { netns::start_agent(&host, address, root).await })
                .await??;
            handle.listeners.push(task);
        }
        Ok(handle)
    }
}

impl LabHandle {
    /// Where everything is.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Writes the manifest to `DIR/lab.json`.
    pub fn write_manifest(&self) -> Result<PathBuf, LabError> {
        self.manifest.write()
    }

    /// Stops every listener and server and waits until they are closed.
    pub async fn shutdown(mut self) -> Result<(), LabError> {
        for listener in self.listeners.drain(..) {
            listener.abort();
            let _ = listener.await;
        }
        let mut first_error = None;
        for server in self.servers.drain(..) {
            if let Err(err) = server.shutdown().await {
                first_error.get_or_insert(err);
            }
        }
        // The database servers stop and their data goes (a few seconds).
        let databases = self.databases.take();
        let _ = tokio::task::spawn_blocking(move || drop(databases)).await;
        // The namespaces' threads stop once nothing of theirs runs.
        let runtimes = std::mem::take(&mut self.runtimes);
        let _ = tokio::task::spawn_blocking(move || drop(runtimes)).await;
        first_error.map_or(Ok(()), |err| Err(err.into()))
    }
}

impl Drop for LabHandle {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// Makes each host's folder and files; returns what the manifest says of them.
fn build_hosts(blueprint: &Blueprint, fresh: bool) -> Result<Vec<HostInfo>, LabError> {
    let mut hosts = Vec::new();
    for host in &blueprint.hosts {
        if let Some(root) = &host.root {
            std::fs::create_dir_all(root)
                .map_err(|err| LabError::io("cannot create host folder", root, err))?;
        }
        for output in &host.outputs {
            if fresh {
                files::remove_output(output)?;
            }
            // The destination host has its folders, as a prepared server would.
            if let Some(parent) = output.file.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|err| LabError::io("cannot create", parent, err))?;
            }
        }
        let mut infos = Vec::new();
        for (kind, list) in [("image", &host.images), ("database", &host.databases)] {
            for file in list {
                let generated = fresh || !file.file.exists();
                if generated {
                    if kind == "image" {
                        files::write_image(&host.name, file)?;
                    } else {
                        files::write_database(&host.name, file)?;
                    }
                }
                infos.push(FileInfo {
                    kind: kind.into(),
                    path: file.path.clone(),
                    file: file.file.clone(),
                    size: file.size,
                    generated,
                });
            }
        }
        hosts.push(HostInfo {
            name: host.name.clone(),
            site: host.site.clone(),
            addr: host.addr,
            root: host.root.clone(),
            listening: host.listen.iter().copied().collect(),
            closed: host.closed.iter().copied().collect(),
            files: infos,
        });
    }
    Ok(hosts)
}

/// Today's first serial, in the usual YYYYMMDDnn form.
fn initial_serial() -> u32 {
    Utc::now()
        .format("%Y%m%d01")
        .to_string()
        .parse()
        .unwrap_or(1)
}

fn address_folder(address: SocketAddr) -> String {
    address
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn loaded_from(from: cutover_dns::LoadedFrom) -> String {
    match from {
        cutover_dns::LoadedFrom::ZoneFile => "zone-file",
        cutover_dns::LoadedFrom::Journal => "journal",
        cutover_dns::LoadedFrom::Transfer => "transfer",
    }
    .to_string()
}
