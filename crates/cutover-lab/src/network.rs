//! Where a lab lives on the machine: the addresses and ports it chose when it started, and,
//! where the machine allows it, the network namespaces it made for them.
//!
//! A runbook names its own addresses (`127.0.0.53:5301`); were they used as written, two labs
//! of the same runbook, or a lab beside the test suite, would collide. So each lab takes a
//! block of addresses of its own and maps every address of the runbook into it, in the copy
//! of the runbook it runs (see [`crate::rewrite`]):
//! - **namespaces** (the default, where `ip netns add` works): a private `10.X.Y.0/24` no
//!   route of the machine and no other lab uses. A hub namespace holds a bridge and the DNS
//!   servers; each site gets a namespace of its own, joined to the hub by a veth pair: what
//!   leaves the site is shaped with `tc tbf` to the bandwidth of the runbook's links at that
//!   site (times the link scale), and `tc netem` adds the chosen latency both ways where the
//!   kernel has it; the coordinator reaches the bridge from this namespace through one more
//!   veth pair. Hosts whose files are copied get an agent in their site's namespace, so a
//!   copy's bytes leave their site over its shaped link, once.
//! - **loopback** (where namespaces cannot be made): a free `127.X.Y.0/24`, unshaped.
//!
//! Choices are claimed in a machine-wide folder of claims, under a lock, so labs starting at
//! the same time do not take the same block; a block asked for by `--subnet` that another lab
//! holds is refused with that lab's folder. What was chosen is written to `DIR/network.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cutover_lang::{ActionKind, Runbook, Transport};
use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// The file, in the lab folder, that records the lab's network.
pub const NETWORK_FILE: &str = "network.json";
/// The first port tried for a host's agent.
const AGENT_PORT: u16 = 7700;
/// The lab's links carry jumbo frames, as a data centre's do: a shaped link's bandwidth then
/// goes to data rather than headers (0.7 % of a 9000-byte frame, 4.6 % of a 1500-byte one).
const MTU: &str = "9000";
/// The `ip` and `tc` programs.
const IP: &str = "ip";

/// The metric of the guard route that keeps a lab's block from leaving the
/// machine (the lowest priority there is; see [`Network::build`]).
const GUARD_METRIC: &str = "4294967295";
const TC: &str = "tc";

/// What `lab up` asks of the network.
#[derive(Debug, Clone)]
pub struct NetworkRequest {
    /// Try namespaces (false: loopback only).
    pub namespaces: bool,
    /// The shaped links run at the runbook's bandwidth times this.
    pub link_scale: f64,
    /// Delay added each way on every site's link.
    pub latency: Duration,
    /// A block asked for by the user (`10.X.Y.0/24` or `127.X.Y.0/24`) instead of a free one.
    pub subnet: Option<String>,
    /// The program hosts' agents are reached through (`PROGRAM lab relay ADDRESS`).
    pub relay_program: Option<PathBuf>,
}

impl Default for NetworkRequest {
    fn default() -> NetworkRequest {
        NetworkRequest {
            namespaces: true,
            link_scale: 1.0,
            latency: Duration::from_millis(1),
            subnet: None,
            relay_program: None,
        }
    }
}

/// How the lab's addresses are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Namespaces,
    Loopback,
}

/// The lab's network: recorded in `DIR/network.json` and the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Short, derived from the lab folder; names the namespaces and interfaces.
    pub id: String,
    pub dir: PathBuf,
    pub mode: NetworkMode,
    /// Why namespaces were not used, when they were wanted.
    pub fallback: Option<String>,
    /// The lab's block, `A.B.C.0/24`.
    pub subnet: String,
    /// This namespace's address on the lab network (namespaces only).
    pub coordinator: Option<IpAddr>,
    /// The hub namespace: the bridge and the DNS servers (namespaces only).
    pub hub: Option<String>,
    pub sites: Vec<SiteNet>,
    /// Every address of the runbook and the one the lab gave it.
    pub addresses: Vec<AddressChoice>,
    /// Every DNS server address of the runbook and the lab's.
    pub dns: Vec<DnsChoice>,
    /// Hosts reached through an agent in their namespace.
    pub agents: Vec<AgentChoice>,
    pub link_scale: f64,
    /// The delay added each way on every site's link, in milliseconds (0: none).
    pub latency_ms: f64,
    /// Why the latency asked for is not applied (the kernel cannot delay packets).
    #[serde(default)]
    pub latency_note: Option<String>,
}

/// A site's namespace and its link to the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteNet {
    /// The runbook's site name; `None` for hosts without a site.
    pub site: Option<String>,
    pub namespace: String,
    /// The site's interface (in its namespace) and its peer on the hub.
    pub interface: String,
    pub hub_interface: String,
    /// The rate of what leaves the site, in bits per second; `None`: no link names the site.
    pub rate_bits: Option<u64>,
    /// The runbook links the rate comes from.
    pub links: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressChoice {
    pub runbook: IpAddr,
    pub lab: IpAddr,
    /// The namespace the address lives in (namespaces only).
    pub namespace: Option<String>,
    /// What has the address: `host NAME` or `dns`.
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsChoice {
    pub runbook: SocketAddr,
    pub lab: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentChoice {
    pub host: String,
    pub address: SocketAddr,
    pub namespace: String,
    /// The host's folder, the agent's `/`.
    pub root: PathBuf,
}

/// A claim in the machine-wide folder of claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claim {
    id: String,
    dir: PathBuf,
    subnet: String,
    mode: NetworkMode,
    /// The process that serves the lab (a loopback claim lives as long as it does).
    pid: u32,
}

/// The short id of the lab in `dir` (an absolute path).
pub fn lab_id(dir: &Path) -> String {
    let hash = blake3::hash(dir.as_os_str().as_encoded_bytes());
    hash.to_hex()[..6].to_string()
}

impl Network {
    /// Reads `DIR/network.json`.
    pub fn read(dir: &Path) -> Result<Network, LabError> {
        let path = dir.join(NETWORK_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|err| LabError::io("cannot read the lab network", &path, err))?;
        serde_json::from_str(&text).map_err(|err| {
            LabError::Process(format!("{} is not a lab network: {err}", path.display()))
        })
    }

    /// Writes `DIR/network.json`, whole.
    pub fn write(&self) -> Result<PathBuf, LabError> {
        let path = self.dir.join(NETWORK_FILE);
        let temporary = self.dir.join(format!(".{NETWORK_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)
            .map_err(|err| LabError::Process(format!("cannot encode the lab network: {err}")))?;
        std::fs::write(&temporary, text + "\n")
            .map_err(|err| LabError::io("cannot write", &temporary, err))?;
        std::fs::rename(&temporary, &path)
            .map_err(|err| LabError::io("cannot write", &path, err))?;
        Ok(path)
    }

    /// Chooses the lab's addresses for `runbook` in `dir` (absolute), claims them and, in
    /// namespace mode, builds the namespaces and links. On failure nothing is left claimed or
    /// built.
    pub fn establish(
        runbook: &Runbook,
        dir: &Path,
        request: &NetworkRequest,
    ) -> Result<Network, LabError> {
        let id = lab_id(dir);
        let registry = Registry::open()?;
        let _lock = registry.lock()?;
        let claims = registry.live_claims(&id)?;
        let wanted = request.subnet.as_deref().map(parse_subnet).transpose()?;
        if let Some(block) = wanted
            && let Some(holder) = claims.iter().find(|c| c.subnet == block_text(block))
        {
            return Err(LabError::Unsupported(format!(
                "{} is taken by the lab in {} (lab {}); stop it with `cutover lab down --dir {}` or choose another --subnet",
                block_text(block),
                holder.dir.display(),
                holder.id,
                holder.dir.display()
            )));
        }
        let previous = Network::read(dir).ok().filter(|n| n.id == id);
        let namespace_block = wanted.is_none_or(|b| b[0] != 127);
        let mut fallback = None;
        if request.namespaces && namespace_block {
            match namespaces_available(&id) {
                Ok(()) => {
                    let block = match wanted {
                        Some(block) => {
                            if let Some(route) = machine_overlap(block)? {
                                return Err(LabError::Unsupported(format!(
                                    "{} overlaps {route} on this machine; choose another --subnet",
                                    block_text(block)
                                )));
                            }
                            block
                        }
                        None => free_block(
                            &id,
                            &claims,
                            previous.as_ref(),
                            NetworkMode::Namespaces,
                            |block| Ok(machine_overlap(block)?.is_none()),
                        )?,
                    };
                    let network = plan(runbook, dir, &id, block, NetworkMode::Namespaces, request)?;
                    registry.claim(&network)?;
                    if let Err(err) = network.build() {
                        let _ = network.remove_namespaces();
                        registry.release(&id);
                        return Err(err);
                    }
                    return Ok(network);
                }
                Err(reason) => fallback = Some(reason),
            }
        } else if request.namespaces {
            fallback = Some(format!(
                "--subnet {} is a loopback block",
                request.subnet.as_deref().unwrap_or_default()
            ));
        }
        let block = match wanted {
            Some(block) if block[0] == 127 => {
                if let Some(taken) = first_taken(runbook, block) {
                    return Err(LabError::Unsupported(format!(
                        "{taken} in {} is in use on this machine; choose another --subnet",
                        block_text(block)
                    )));
                }
                block
            }
            Some(block) => {
                return Err(LabError::Unsupported(format!(
                    "{} is not a loopback block and namespaces cannot be made here ({}); give a 127.X.Y.0/24",
                    block_text(block),
                    fallback.unwrap_or_default()
                )));
            }
            None => free_block(
                &id,
                &claims,
                previous.as_ref(),
                NetworkMode::Loopback,
                |block| Ok(first_taken(runbook, block).is_none()),
            )?,
        };
        let mut network = plan(runbook, dir, &id, block, NetworkMode::Loopback, request)?;
        network.fallback = fallback;
        registry.claim(&network)?;
        Ok(network)
    }

    /// Records `pid` as the process serving the lab (a loopback claim lives as long as it).
    pub fn adopt(&self, pid: u32) -> Result<(), LabError> {
        let registry = Registry::open()?;
        let _lock = registry.lock()?;
        registry.write_claim(&Claim {
            id: self.id.clone(),
            dir: self.dir.clone(),
            subnet: self.subnet.clone(),
            mode: self.mode,
            pid,
        })
    }

    /// Removes the namespaces (and with them every link and address of the lab) and gives up
    /// the claim. Safe to call twice.
    pub fn teardown(&self) -> Result<(), LabError> {
        let removed = self.remove_namespaces();
        if let Ok(registry) = Registry::open()
            && let Ok(_lock) = registry.lock()
        {
            registry.release(&self.id);
        }
        removed
    }

    fn remove_namespaces(&self) -> Result<(), LabError> {
        let mut first_error = None;
        if self.mode == NetworkMode::Namespaces {
            let namespaces = self
                .sites
                .iter()
                .map(|s| s.namespace.clone())
                .chain(self.hub.clone());
            for namespace in namespaces {
                if Path::new("/run/netns").join(&namespace).exists()
                    && let Err(err) = run(IP, &["netns", "del", &namespace])
                {
                    first_error.get_or_insert(err);
                }
            }
            // The coordinator's end goes with its peer; remove it should the hub be gone.
            let root_end = root_interface(&self.id);
            if Path::new("/sys/class/net").join(&root_end).exists() {
                let _ = run(IP, &["link", "del", &root_end]);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The lab's address for a runbook address.
    pub fn map_ip(&self, ip: IpAddr) -> Option<IpAddr> {
        self.addresses
            .iter()
            .find(|a| a.runbook == ip)
            .map(|a| a.lab)
    }

    /// The lab's address for a runbook DNS server address.
    pub fn map_dns(&self, address: SocketAddr) -> Option<SocketAddr> {
        self.dns
            .iter()
            .find(|d| d.runbook == address)
            .map(|d| d.lab)
    }

    /// The namespace a lab address lives in (namespaces only).
    pub fn namespace_of(&self, lab: IpAddr) -> Option<&str> {
        self.addresses
            .iter()
            .find(|a| a.lab == lab)
            .and_then(|a| a.namespace.as_deref())
    }

    /// The network as a person reads it, for `lab up`.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        match self.mode {
            NetworkMode::Namespaces => {
                let _ = writeln!(
                    out,
                    "  network   namespaces, {} (lab {}), coordinator {}, latency {}ms each way, link scale {}",
                    self.subnet,
                    self.id,
                    self.coordinator.map(|a| a.to_string()).unwrap_or_default(),
                    self.latency_ms,
                    self.link_scale
                );
                if let Some(note) = &self.latency_note {
                    let _ = writeln!(out, "  note      {note}");
                }
                for site in &self.sites {
                    let rate = site.rate_bits.map_or_else(
                        || "unshaped (no link names it)".to_string(),
                        |bits| {
                            format!(
                                "shaped to {} ({})",
                                cutover_lang::units::Bandwidth(bits),
                                site.links.join(", ")
                            )
                        },
                    );
                    let _ = writeln!(
                        out,
                        "  site      {:<14} namespace {} {rate}",
                        site.site.as_deref().unwrap_or("(none)"),
                        site.namespace
                    );
                }
                for agent in &self.agents {
                    let _ = writeln!(
                        out,
                        "  agent     {:<14} {} (in {})",
                        agent.host, agent.address, agent.namespace
                    );
                }
            }
            NetworkMode::Loopback => {
                let _ = writeln!(
                    out,
                    "  network   loopback, {} (lab {}); links are not shaped{}",
                    self.subnet,
                    self.id,
                    self.fallback
                        .as_ref()
                        .map(|why| format!(": namespaces cannot be made here ({why})"))
                        .unwrap_or_default()
                );
            }
        }
        out
    }

    /// Creates the namespaces, the bridge, the veth pairs, the addresses and the shaping.
    fn build(&self) -> Result<(), LabError> {
        let Some(hub) = &self.hub else {
            return Ok(());
        };
        let coordinator = self.coordinator.ok_or_else(|| {
            LabError::Process("a namespace lab has no coordinator address".into())
        })?;
        // The hub namespace was made by `namespaces_available`.
        let in_hub = |args: &[&str]| -> Result<(), LabError> {
            let mut all = vec!["-n", hub.as_str()];
            all.extend_from_slice(args);
            run(IP, &all)
        };
        in_hub(&["link", "set", "lo", "up"])?;
        in_hub(&["link", "add", "name", "br0", "type", "bridge"])?;
        in_hub(&["link", "set", "br0", "up"])?;
        let root_end = root_interface(&self.id);
        run(
            IP,
            &[
                "link", "add", "name", &root_end, "type", "veth", "peer", "name", "up0", "netns",
                hub,
            ],
        )?;
        in_hub(&["link", "set", "up0", "master", "br0"])?;
        in_hub(&["link", "set", "up0", "mtu", MTU, "up"])?;
        run(
            IP,
            &[
                "addr",
                "add",
                &format!("{coordinator}/24"),
                "dev",
                &root_end,
            ],
        )?;
        run(IP, &["link", "set", &root_end, "mtu", MTU, "up"])?;
        // Once the lab is down, its addresses must not follow the default
        // route off this machine: a guard route, below the lab's own, makes
        // them unreachable here. It stays after `down` (and is replaced,
        // not added twice, when the block is used again).
        run(
            IP,
            &[
                "route",
                "replace",
                "unreachable",
                &self.subnet,
                "metric",
                GUARD_METRIC,
            ],
        )?;
        for address in self
            .addresses
            .iter()
            .filter(|a| a.namespace.as_ref() == Some(hub))
        {
            in_hub(&["addr", "add", &format!("{}/24", address.lab), "dev", "br0"])?;
        }
        for site in &self.sites {
            run(IP, &["netns", "add", &site.namespace])?;
            let ns = site.namespace.as_str();
            run(IP, &["-n", ns, "link", "set", "lo", "up"])?;
            run(
                IP,
                &[
                    "-n",
                    ns,
                    "link",
                    "add",
                    "name",
                    &site.interface,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &site.hub_interface,
                    "netns",
                    hub,
                ],
            )?;
            in_hub(&["link", "set", &site.hub_interface, "master", "br0"])?;
            in_hub(&["link", "set", &site.hub_interface, "mtu", MTU, "up"])?;
            for address in self
                .addresses
                .iter()
                .filter(|a| a.namespace.as_deref() == Some(ns))
            {
                run(
                    IP,
                    &[
                        "-n",
                        ns,
                        "addr",
                        "add",
                        &format!("{}/24", address.lab),
                        "dev",
                        &site.interface,
                    ],
                )?;
            }
            run(
                IP,
                &["-n", ns, "link", "set", &site.interface, "mtu", MTU, "up"],
            )?;
            for (namespace, interface) in
                [(ns, &site.interface), (hub.as_str(), &site.hub_interface)]
            {
                let tc = |args: &[String]| {
                    let mut all = vec!["-n", namespace, "qdisc", "add", "dev", interface.as_str()];
                    all.extend(args.iter().map(String::as_str));
                    run(TC, &all)
                };
                // What leaves a site is shaped (every copy's bytes leave their source's site
                // once, though the coordinator relays them); the delay is added both ways.
                let leaving = namespace == ns;
                let parent = match site.rate_bits.filter(|_| leaving) {
                    Some(bits) => {
                        tc(&tbf_args(bits))?;
                        vec![
                            "parent".to_string(),
                            "1:1".to_string(),
                            "handle".to_string(),
                            "10:".to_string(),
                        ]
                    }
                    None => vec!["root".to_string()],
                };
                if self.latency_ms > 0.0 {
                    let mut args = parent;
                    args.extend(netem_args(self.latency_ms));
                    tc(&args)?;
                }
            }
        }
        Ok(())
    }
}

/// Whether the kernel can delay packets (`netem`); the reason when not.
pub fn delay_available() -> Result<(), String> {
    static AVAILABLE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    AVAILABLE
        .get_or_init(|| {
            let probe = format!("cutover-probe-{}", std::process::id());
            run(IP, &["netns", "add", &probe]).map_err(|e| e.to_string())?;
            let result = run(IP, &["-n", &probe, "link", "set", "lo", "up"])
                .and_then(|()| {
                    run(
                        TC,
                        &[
                            "-n", &probe, "qdisc", "add", "dev", "lo", "root", "netem", "delay",
                            "1ms",
                        ],
                    )
                })
                .map_err(|_| "the kernel has no netem queueing discipline".to_string());
            let _ = run(IP, &["netns", "del", &probe]);
            result
        })
        .clone()
}

/// A token bucket at `bits` per second: 10 ms of traffic per burst (at least two full-size
/// segments, which veth hands over whole), 200 ms of queue.
fn tbf_args(bits: u64) -> Vec<String> {
    let burst = (bits / 8 / 100).max(256 << 10);
    [
        "root",
        "handle",
        "1:",
        "tbf",
        "rate",
        &format!("{bits}bit"),
        "burst",
        &burst.to_string(),
        "latency",
        "200ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The `netem` parameters of a link's delay.
fn netem_args(latency_ms: f64) -> Vec<String> {
    vec![
        "netem".to_string(),
        "delay".to_string(),
        format!("{}us", (latency_ms * 1000.0).round() as u64),
        "limit".to_string(),
        "100000".to_string(),
    ]
}

/// The coordinator's end of the lab network, in this namespace.
fn root_interface(id: &str) -> String {
    format!("cvl{id}")
}

/// Runs `program args`, failing with its standard error.
fn run(program: &str, args: &[&str]) -> Result<(), LabError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|err| LabError::Process(format!("cannot run `{program}`: {err}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(LabError::Process(format!(
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// Makes the lab's hub namespace, which tells whether namespaces can be made here at all;
/// the reason when not.
fn namespaces_available(id: &str) -> Result<(), String> {
    let hub = hub_namespace(id);
    if Path::new("/run/netns").join(&hub).exists() {
        // Left by a lab of this folder that was not brought down: start clean.
        let _ = run(IP, &["netns", "del", &hub]);
    }
    run(IP, &["netns", "add", &hub]).map_err(|err| err.to_string())
}

fn hub_namespace(id: &str) -> String {
    format!("cutover-{id}-hub")
}

type Block = [u8; 3];

fn block_text(block: Block) -> String {
    format!("{}.{}.{}.0/24", block[0], block[1], block[2])
}

fn block_ip(block: Block, last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(block[0], block[1], block[2], last))
}

/// `A.B.C.0/24`, the only size the lab takes.
fn parse_subnet(text: &str) -> Result<Block, LabError> {
    let bad = || {
        LabError::Unsupported(format!(
            "--subnet {text}: write a /24 block like 10.77.3.0/24 or 127.77.3.0/24"
        ))
    };
    let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
    let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
    let octets = address.octets();
    if prefix != "24" || octets[3] != 0 {
        return Err(bad());
    }
    let block = [octets[0], octets[1], octets[2]];
    let private = octets[0] == 10
        || (octets[0] == 172 && (16..32).contains(&octets[1]))
        || (octets[0] == 192 && octets[1] == 168);
    if !(private || octets[0] == 127) {
        return Err(LabError::Unsupported(format!(
            "--subnet {text}: the lab takes a private (10/8, 172.16/12, 192.168/16) or loopback block"
        )));
    }
    Ok(block)
}

/// Candidates, starting at one derived from the lab's id so labs rarely try the same first.
fn candidates(id: &str, first: u8, seconds: std::ops::RangeInclusive<u8>) -> Vec<Block> {
    let start = u32::from_str_radix(id, 16).unwrap_or(0) as usize;
    let all: Vec<Block> = seconds
        .flat_map(|b| (0..=255u8).map(move |c| [first, b, c]))
        .collect();
    let n = all.len();
    (0..n).map(|i| all[(start + i) % n]).collect()
}

/// Whether `block` overlaps an address or route of this machine: the overlapping one.
fn machine_overlap(block: Block) -> Result<Option<String>, LabError> {
    let mut taken = String::new();
    for args in [
        &["-o", "-4", "addr", "show"][..],
        &["-4", "route", "show", "table", "all"][..],
    ] {
        let output = Command::new(IP)
            .args(args)
            .output()
            .map_err(|err| LabError::Process(format!("cannot run `ip`: {err}")))?;
        taken.push_str(&String::from_utf8_lossy(&output.stdout));
        taken.push('\n');
    }
    let lab = (
        u32::from(Ipv4Addr::new(block[0], block[1], block[2], 0)),
        24u32,
    );
    // A lab's guard route (`unreachable BLOCK ... metric GUARD_METRIC`)
    // holds no address: it only keeps a block that is down from leaving.
    let taken: String = taken
        .lines()
        .filter(|l| {
            !(l.trim_start().starts_with("unreachable")
                && l.split_whitespace().any(|w| w == GUARD_METRIC))
        })
        .collect::<Vec<_>>()
        .join("\n");
    for word in taken.split_whitespace() {
        let (address, prefix) = match word.split_once('/') {
            Some((a, p)) => (a, p.parse::<u32>().ok()),
            None => (word, Some(32)),
        };
        let (Ok(address), Some(prefix)) = (address.parse::<Ipv4Addr>(), prefix) else {
            continue;
        };
        if prefix > 32 || address.is_loopback() || address.is_unspecified() {
            continue;
        }
        let shorter = prefix.min(lab.1);
        let mask = if shorter == 0 {
            0
        } else {
            u32::MAX << (32 - shorter)
        };
        if u32::from(address) & mask == lab.0 & mask {
            return Ok(Some(word.to_string()));
        }
    }
    Ok(None)
}

/// The first free block among the candidates of `mode` (the lab's earlier block first): not
/// claimed by another lab and `free` by the mode's own test.
fn free_block(
    id: &str,
    claims: &[Claim],
    previous: Option<&Network>,
    mode: NetworkMode,
    mut free: impl FnMut(Block) -> Result<bool, LabError>,
) -> Result<Block, LabError> {
    let claimed: BTreeSet<&str> = claims.iter().map(|c| c.subnet.as_str()).collect();
    let preferred = previous
        .filter(|p| p.mode == mode)
        .and_then(|p| parse_subnet(&p.subnet).ok());
    let (first, seconds, shape) = match mode {
        NetworkMode::Namespaces => (10, 200..=254, "10.X.Y.0/24"),
        NetworkMode::Loopback => (127, 100..=254, "127.X.Y.0/24"),
    };
    for block in preferred
        .into_iter()
        .chain(candidates(id, first, seconds).into_iter().take(64))
    {
        if !claimed.contains(block_text(block).as_str()) && free(block)? {
            return Ok(block);
        }
    }
    Err(LabError::Unsupported(format!(
        "no free {shape} block found for the lab; give one with --subnet"
    )))
}

/// The first address and port the runbook needs that cannot be bound in `block`.
fn first_taken(runbook: &Runbook, block: Block) -> Option<SocketAddr> {
    for (index, (_, ports)) in needed(runbook).iter().enumerate() {
        let ip = block_ip(block, lab_host_octet(index)?);
        for &(port, udp) in ports {
            let address = SocketAddr::new(ip, port);
            if std::net::TcpListener::bind(address).is_err()
                || (udp && std::net::UdpSocket::bind(address).is_err())
            {
                return Some(address);
            }
        }
    }
    None
}

/// The last octet of the `index`th lab address (from .10 on).
fn lab_host_octet(index: usize) -> Option<u8> {
    u8::try_from(index + 10).ok().filter(|&o| o < 255)
}

/// Every distinct address of the runbook, in order (DNS servers, then hosts), with the ports
/// the lab binds there (`true`: UDP too).
fn needed(runbook: &Runbook) -> Vec<(IpAddr, Vec<(u16, bool)>)> {
    let mut out: Vec<(IpAddr, Vec<(u16, bool)>)> = Vec::new();
    let mut add = |ip: IpAddr, port: Option<(u16, bool)>| {
        let index = match out.iter().position(|(a, _)| *a == ip) {
            Some(index) => index,
            None => {
                out.push((ip, Vec::new()));
                out.len() - 1
            }
        };
        if let Some(port) = port
            && !out[index].1.contains(&port)
        {
            out[index].1.push(port);
        }
    };
    for zone in &runbook.zones {
        for address in std::iter::once(zone.primary).chain(zone.verify.iter().copied()) {
            add(address.ip(), Some((address.port(), true)));
        }
    }
    for host in &runbook.hosts {
        add(host.addr, None);
    }
    out
}

/// Hosts whose files a copy or sync step reads or writes, and hosts that run commands.
fn copy_and_exec_hosts(runbook: &Runbook) -> (BTreeSet<usize>, BTreeSet<usize>) {
    let mut copies = BTreeSet::new();
    let mut execs = BTreeSet::new();
    for step in &runbook.steps {
        let lines = std::iter::once(&step.action)
            .chain(step.undo.iter())
            .chain(step.verify.iter());
        for line in lines {
            match &line.kind {
                ActionKind::ImageCopy { from, to, .. } | ActionKind::DbSync { from, to, .. } => {
                    copies.insert(from.host.0);
                    copies.insert(to.host.0);
                }
                ActionKind::Exec { on, .. } => execs.extend(on.iter().map(|h| h.0)),
                _ => {}
            }
        }
    }
    (copies, execs)
}

/// Lays the runbook's addresses out in `block`.
fn plan(
    runbook: &Runbook,
    dir: &Path,
    id: &str,
    block: Block,
    mode: NetworkMode,
    request: &NetworkRequest,
) -> Result<Network, LabError> {
    let namespaces = mode == NetworkMode::Namespaces;
    let hub = namespaces.then(|| hub_namespace(id));
    let wanted_ms = request.latency.as_secs_f64() * 1000.0;
    let (latency_ms, latency_note) = match (namespaces && wanted_ms > 0.0).then(delay_available) {
        Some(Ok(())) => (wanted_ms, None),
        Some(Err(why)) => (
            0.0,
            Some(format!("latency {wanted_ms}ms not applied: {why}")),
        ),
        None => (0.0, None),
    };
    // Sites, in the order their first host is written.
    let mut site_names: Vec<Option<String>> = Vec::new();
    for host in &runbook.hosts {
        if !site_names.contains(&host.site) {
            site_names.push(host.site.clone());
        }
    }
    let mut sites = Vec::new();
    if namespaces {
        for (index, site) in site_names.iter().enumerate() {
            let links: Vec<&cutover_lang::Link> = runbook
                .links
                .iter()
                .filter(|l| site.as_deref().is_some_and(|s| l.from == s || l.to == s))
                .collect();
            let rate_bits = links
                .iter()
                .map(|l| l.bandwidth.0)
                .max()
                .map(|bits| ((bits as f64 * request.link_scale).round() as u64).max(8_000));
            sites.push(SiteNet {
                site: site.clone(),
                namespace: format!("cutover-{id}-s{index}"),
                interface: format!("cvs{id}{index}"),
                hub_interface: format!("cvh{id}{index}"),
                rate_bits,
                links: links
                    .iter()
                    .map(|l| format!("link {} -> {} {}", l.from, l.to, l.bandwidth))
                    .collect(),
            });
        }
    }
    let site_namespace = |site: &Option<String>| {
        sites
            .iter()
            .find(|s| &s.site == site)
            .map(|s| s.namespace.clone())
    };

    let mut addresses = Vec::new();
    for (index, (ip, _)) in needed(runbook).iter().enumerate() {
        let octet = lab_host_octet(index).ok_or_else(|| {
            LabError::Unsupported(format!(
                "the runbook names more than 245 addresses; a lab takes one /24 ({})",
                block_text(block)
            ))
        })?;
        let host = runbook.hosts.iter().find(|h| h.addr == *ip);
        if !ip.is_ipv4() {
            return Err(LabError::Unsupported(format!(
                "address {ip}: the lab maps runbook addresses into an IPv4 block; write 127.X.Y.Z addresses"
            )));
        }
        addresses.push(AddressChoice {
            runbook: *ip,
            lab: block_ip(block, octet),
            namespace: match host {
                Some(host) => site_namespace(&host.site),
                None => hub.clone(),
            },
            what: host.map_or_else(|| "dns".to_string(), |h| format!("host {}", h.name)),
        });
    }
    let map = |ip: IpAddr| {
        addresses
            .iter()
            .find(|a| a.runbook == ip)
            .map(|a| a.lab)
            .unwrap_or(ip)
    };
    let mut dns = Vec::new();
    for zone in &runbook.zones {
        for address in std::iter::once(zone.primary).chain(zone.verify.iter().copied()) {
            if !dns.iter().any(|d: &DnsChoice| d.runbook == address) {
                dns.push(DnsChoice {
                    runbook: address,
                    lab: SocketAddr::new(map(address.ip()), address.port()),
                });
            }
        }
    }

    let mut agents = Vec::new();
    if namespaces && let Some(program) = &request.relay_program {
        let (copies, execs) = copy_and_exec_hosts(runbook);
        for index in copies.difference(&execs) {
            let host = &runbook.hosts[*index];
            let Transport::Local { root } = &host.transport else {
                continue;
            };
            let used: BTreeSet<u16> = runbook
                .zones
                .iter()
                .flat_map(|z| std::iter::once(z.primary).chain(z.verify.iter().copied()))
                .filter(|a| a.ip() == host.addr)
                .map(|a| a.port())
                .chain(host_ports(runbook, *index))
                .collect();
            let port = (AGENT_PORT..u16::MAX)
                .find(|p| !used.contains(p))
                .unwrap_or(AGENT_PORT);
            agents.push(AgentChoice {
                host: host.name.clone(),
                address: SocketAddr::new(map(host.addr), port),
                namespace: site_namespace(&host.site).unwrap_or_default(),
                root: dir.join(root),
            });
        }
        if !agents.is_empty()
            && program
                .to_str()
                .is_none_or(|p| p.contains(['"', ' ', '\\', '\'']))
        {
            return Err(LabError::Unsupported(format!(
                "the cutover program's path {} has quotes, spaces or backslashes; the lab cannot name it in a `via agent` command",
                program.display()
            )));
        }
    }

    Ok(Network {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        mode,
        fallback: None,
        subnet: block_text(block),
        coordinator: namespaces.then(|| block_ip(block, 1)),
        hub,
        sites,
        addresses,
        dns,
        agents,
        link_scale: request.link_scale,
        latency_ms,
        latency_note,
    })
}

/// Ports the runbook's port and HTTP checks name at host `index`.
fn host_ports(runbook: &Runbook, index: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    for step in &runbook.steps {
        for line in std::iter::once(&step.action).chain(step.verify.iter()) {
            if let ActionKind::PortOpen { targets, .. } | ActionKind::PortClosed { targets, .. } =
                &line.kind
            {
                ports.extend(targets.iter().filter(|t| t.host.0 == index).map(|t| t.port));
            }
        }
    }
    ports
}

/// The machine-wide folder of claims.
struct Registry {
    dir: PathBuf,
}

/// Held while claims are read and written.
struct RegistryLock(std::fs::File);

impl Drop for RegistryLock {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock);
    }
}

impl Registry {
    fn open() -> Result<Registry, LabError> {
        let candidates = [
            PathBuf::from("/run/cutover-lab"),
            std::env::temp_dir().join(format!(
                "cutover-lab-{}",
                rustix::process::getuid().as_raw()
            )),
        ];
        let mut last = None;
        for dir in candidates {
            match std::fs::create_dir_all(&dir) {
                Ok(()) if writable(&dir) => return Ok(Registry { dir }),
                Ok(()) => {}
                Err(err) => last = Some((dir, err)),
            }
        }
        let (dir, err) = last.unwrap_or_else(|| {
            (
                PathBuf::from("/run/cutover-lab"),
                std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            )
        });
        Err(LabError::io(
            "cannot create the folder of lab claims",
            dir,
            err,
        ))
    }

    fn lock(&self) -> Result<RegistryLock, LabError> {
        let path = self.dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|err| LabError::io("cannot open", &path, err))?;
        if let Err(err) = rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            return Err(LabError::io("cannot lock", &path, err.into()));
        }
        Ok(RegistryLock(file))
    }

    /// The claims of other labs that still hold their block (stale ones are removed).
    fn live_claims(&self, own: &str) -> Result<Vec<Claim>, LabError> {
        let mut claims = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|err| LabError::io("cannot read", &self.dir, err))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Some(claim) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<Claim>(&t).ok())
            else {
                continue;
            };
            if claim.id == own {
                continue;
            }
            let live = match claim.mode {
                NetworkMode::Namespaces => Path::new("/run/netns")
                    .join(hub_namespace(&claim.id))
                    .exists(),
                NetworkMode::Loopback => crate::process::process_alive(claim.pid),
            };
            if live {
                claims.push(claim);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(claims)
    }

    fn claim(&self, network: &Network) -> Result<(), LabError> {
        self.write_claim(&Claim {
            id: network.id.clone(),
            dir: network.dir.clone(),
            subnet: network.subnet.clone(),
            mode: network.mode,
            pid: std::process::id(),
        })
    }

    fn write_claim(&self, claim: &Claim) -> Result<(), LabError> {
        let path = self.dir.join(format!("{}.json", claim.id));
        let text = serde_json::to_string(claim)
            .map_err(|err| LabError::Process(format!("cannot encode a lab claim: {err}")))?;
        std::fs::write(&path, text).map_err(|err| LabError::io("cannot write", &path, err))
    }

    fn release(&self, id: &str) {
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.json")));
    }
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Every runbook address and what the lab maps it to, for [`crate::rewrite`].
pub(crate) fn address_map(network: &Network) -> BTreeMap<IpAddr, IpAddr> {
    network
        .addresses
        .iter()
        .map(|a| (a.runbook, a.lab))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_as_private_or_loopback_24s() {
        assert_eq!(parse_subnet("10.77.3.0/24").unwrap(), [10, 77, 3]);
        assert_eq!(parse_subnet("127.8.9.0/24").unwrap(), [127, 8, 9]);
        assert!(parse_subnet("10.77.3.0/16").is_err());
        assert!(parse_subnet("10.77.3.5/24").is_err());
        let err = parse_subnet("8.8.8.0/24").unwrap_err();
        assert!(err.to_string().contains("private"), "{err}");
    }

    #[test]
    fn candidates_start_from_the_id_and_cover_the_range() {
        let a = candidates("00000a", 10, 200..=201);
        assert_eq!(a.len(), 512);
        assert_eq!(a[0], [10, 200, 10]);
        assert_eq!(a.iter().collect::<BTreeSet<_>>().len(), 512);
    }

    #[test]
    fn links_get_a_token_bucket_and_a_delay() {
        assert_eq!(
            tbf_args(100_000_000).join(" "),
            "root handle 1: tbf rate 100000000bit burst 262144 latency 200ms"
        );
        assert_eq!(
            tbf_args(10_000_000_000).join(" "),
            "root handle 1: tbf rate 10000000000bit burst 12500000 latency 200ms"
        );
        assert_eq!(netem_args(2.5).join(" "), "netem delay 2500us limit 100000");
    }
}
