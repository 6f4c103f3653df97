//! The typed, name-resolved runbook: what every other part of `cutover`
//! consumes. Names are resolved into ids (indices into the runbook's
//! vectors), and every element keeps the [`Span`] it was written at. A
//! group a step names is held once, its members shared with the group
//! ([`HostRef`]), and expanded into its hosts when the step's targets are
//! walked ([`PortTargets::iter`], [`HostList::iter`]): memory grows with the
//! runbook's text, not with steps times group size.

use crate::source::Span;
use crate::units::{Bandwidth, Size, TimeSpec};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

macro_rules! id_type {
    ($($name:ident),*) => {$(
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub usize);
    )*};
}
id_type!(StepId, HostId, GroupId, ZoneId, KeyId);

/// A whole runbook, resolved and checked.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// `runbook NAME`
    pub name: String,
    pub title: Option<String>,
    pub window: Option<Window>,
    pub links: Vec<Link>,
    pub keys: Vec<Key>,
    pub zones: Vec<Zone>,
    pub hosts: Vec<Host>,
    pub groups: Vec<Group>,
    /// In source order; `StepId(i)` is `steps[i]`.
    pub steps: Vec<Step>,
    pub span: Span,
}

impl Runbook {
    pub fn step(&self, id: StepId) -> &Step {
        &self.steps[id.0]
    }
    pub fn host(&self, id: HostId) -> &Host {
        &self.hosts[id.0]
    }
    pub fn zone(&self, id: ZoneId) -> &Zone {
        &self.zones[id.0]
    }
    pub fn key(&self, id: KeyId) -> &Key {
        &self.keys[id.0]
    }
    pub fn group(&self, id: GroupId) -> &Group {
        &self.groups[id.0]
    }
    pub fn step_by_name(&self, name: &str) -> Option<StepId> {
        self.steps.iter().position(|s| s.name == name).map(StepId)
    }
    /// Every step by name, for looking up many names at once (one
    /// [`Self::step_by_name`] per name scans all steps each time). The
    /// first step of a name wins, as there.
    pub fn steps_by_name(&self) -> std::collections::HashMap<&str, StepId> {
        let mut index = std::collections::HashMap::with_capacity(self.steps.len());
        for (i, step) in self.steps.iter().enumerate() {
            index.entry(step.name.as_str()).or_insert(StepId(i));
        }
        index
    }
    /// The declared bandwidth between two sites, in either direction.
    pub fn link_between(&self, a: &str, b: &str) -> Option<&Link> {
        self.links
            .iter()
            .find(|l| (l.from == a && l.to == b) || (l.from == b && l.to == a))
    }
}

/// `window 2013-03-14 17:00 UTC for 6h` — T0 is `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub length: Duration,
    pub span: Span,
}

/// `link old-dc -> new-dc 1Gbit` — sites are free-form names used by hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub from: String,
    pub to: String,
    pub bandwidth: Bandwidth,
    pub span: Span,
}

/// `key NAME ALGORITHM SECRET-REF` — the secret itself is never in the runbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: SecretRef,
    pub span: Span,
}

/// The TSIG algorithms and record types are the DNS crates' one list (`cutover-dns-types`).
pub use cutover_dns_types::{RecordType, TsigAlgorithm};

/// Where a secret is read from at run time: `env:VAR` or `file:PATH`
/// (a file holding the base64 secret, or a BIND key file).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// The reference as written: `env:VAR` or `file:PATH` (never the secret).
    pub fn reference(&self) -> String {
        match self {
            SecretRef::Env(var) => format!("env:{var}"),
            SecretRef::File(path) => format!("file:{}", path.display()),
        }
    }
}

/// `zone NAME` with its `primary`, `verify` and optional `resolvers` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Absolute domain name without the trailing dot, e.g. `maemo.org`.
    pub name: String,
    /// The server that takes RFC 2136 updates.
    pub primary: SocketAddr,
    pub key: Option<KeyId>,
    /// Every authoritative server that must agree before a DNS step is verified.
    pub verify: Vec<SocketAddr>,
    /// Recursive resolvers queried for information only (cache expiry report).
    pub resolvers: Vec<SocketAddr>,
    pub span: Span,
}

/// `host NAME site SITE addr IP via TRANSPORT`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub site: Option<String>,
    pub addr: IpAddr,
    pub transport: Transport,
    pub span: Span,
}

/// How cutover reaches a host's files and commands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `via local PATH` — the host's file system is the folder PATH on this
    /// machine (host paths are joined under it); commands run locally in it.
    Local { root: PathBuf },
    /// `via ssh USER@HOST[:PORT]`
    Ssh {
        user: String,
        host: String,
        port: Option<u16>,
    },
    /// `via agent "COMMAND"` — a command whose stdin/stdout speak the agent
    /// protocol (e.g. `cutover agent --stdio --root /srv`).
    Agent { command: String },
}

/// `group NAME HOST, HOST, ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    /// Each host once, in the order written; shared with every step that
    /// names the group.
    pub members: Arc<[HostId]>,
    pub span: Span,
}

/// One step of the runbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    /// `at TIME` — not before this time.
    pub at: Option<TimeSpec>,
    /// `after STEP, STEP` — not before these are done.
    pub after: Vec<StepId>,
    /// The kind line.
    pub action: Action,
    /// `undo KIND ...` — how to roll this step back.
    pub undo: Option<Action>,
    /// `verify KIND ...` — extra checks that must pass after the built-in
    /// verification (only checking kinds: port.open, port.closed, http.check, exec).
    pub verify: Vec<Action>,
    /// `timeout 10m` — the verify phase gives up after this long.
    pub timeout: Option<Duration>,
    /// `retry 3` — act+verify are re-run up to this many extra times.
    pub retry: u32,
    /// `expect 20m` — the declared duration, used by the planner.
    pub expect: Option<Duration>,
    pub span: Span,
}

/// A step kind with its typed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    /// The kind line.
    pub span: Span,
}

/// `host:/path` (or a group, expanded: one endpoint per member).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: HostId,
    /// Absolute path on that host.
    pub path: String,
}

/// `host:port`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortTarget {
    pub host: HostId,
    pub port: u16,
}

/// A host or a group as a step names it. A group holds its members shared
/// with [`Group::members`] (one allocation however many steps name it);
/// [`HostRef::hosts`] gives the hosts it stands for.
#[derive(Clone, PartialEq, Eq)]
pub enum HostRef {
    Host(HostId),
    Group(GroupId, Arc<[HostId]>),
}

impl HostRef {
    /// The hosts this name stands for, in the group's order.
    pub fn hosts(&self) -> &[HostId] {
        match self {
            HostRef::Host(id) => std::slice::from_ref(id),
            HostRef::Group(_, members) => members,
        }
    }
}

impl fmt::Debug for HostRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostRef::Host(id) => id.fmt(f),
            HostRef::Group(id, members) => write!(f, "{id:?} ({} hosts)", members.len()),
        }
    }
}

/// The targets of `port.open` / `port.closed` as written: hosts and groups,
/// each with a port. Iterating gives one [`PortTarget`] per host, groups
/// expanded in their members' order, in the order written.
#[derive(Clone, Default)]
pub struct PortTargets {
    written: Vec<(HostRef, u16)>,
}

impl PortTargets {
    pub fn new(written: Vec<(HostRef, u16)>) -> Self {
        PortTargets { written }
    }
    /// Every `host:port`, groups expanded.
    pub fn iter(&self) -> PortTargetIter<'_> {
        PortTargetIter {
            written: self.written.iter(),
            hosts: [].iter(),
            port: 0,
        }
    }
    /// The targets as written (a group once, with its port).
    pub fn written(&self) -> &[(HostRef, u16)] {
        &self.written
    }
    /// How many `host:port`s there are, groups expanded.
    pub fn len(&self) -> usize {
        self.written.iter().map(|(r, _)| r.hosts().len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.written.iter().all(|(r, _)| r.hosts().is_empty())
    }
}

impl From<Vec<PortTarget>> for PortTargets {
    fn from(targets: Vec<PortTarget>) -> Self {
        targets.into_iter().collect()
    }
}

impl FromIterator<PortTarget> for PortTargets {
    fn from_iter<I: IntoIterator<Item = PortTarget>>(targets: I) -> Self {
        PortTargets::new(
            targets
                .into_iter()
                .map(|t| (HostRef::Host(t.host), t.port))
                .collect(),
        )
    }
}

impl<'a> IntoIterator for &'a PortTargets {
    type Item = PortTarget;
    type IntoIter = PortTargetIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Equal when they expand to the same targets in the same order.
impl PartialEq for PortTargets {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for PortTargets {}

impl fmt::Debug for PortTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The iterator of [`PortTargets::iter`].
#[derive(Clone)]
pub struct PortTargetIter<'a> {
    written: std::slice::Iter<'a, (HostRef, u16)>,
    hosts: std::slice::Iter<'a, HostId>,
    port: u16,
}

impl Iterator for PortTargetIter<'_> {
    type Item = PortTarget;
    fn next(&mut self) -> Option<PortTarget> {
        loop {
            if let Some(&host) = self.hosts.next() {
                return Some(PortTarget {
                    host,
                    port: self.port,
                });
            }
            let (target, port) = self.written.next()?;
            self.hosts = target.hosts().iter();
            self.port = *port;
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let rest: usize = self
            .written
            .as_slice()
            .iter()
            .map(|(r, _)| r.hosts().len())
            .sum();
        let n = self.hosts.len() + rest;
        (n, Some(n))
    }
}

impl ExactSizeIterator for PortTargetIter<'_> {}

/// The hosts of `exec on HOST|GROUP, ...` as written: hosts and groups.
/// Iterating gives each host once, groups expanded in their members' order,
/// in the order written (a host named again, alone or in a group, is left
/// out where it repeats).
#[derive(Clone, Default)]
pub struct HostList {
    written: Vec<HostRef>,
}

impl HostList {
    /// The hosts and groups as written. A host that is already named
    /// (alone or as a group's member) is left out where it repeats; a group
    /// that shares a member with what comes before is kept as its remaining
    /// hosts. A group's members are taken to be distinct, as
    /// [`Group::members`] are.
    pub fn new(written: Vec<HostRef>) -> Self {
        if written.len() < 2 {
            return HostList { written };
        }
        let mut seen: HashSet<HostId> = HashSet::new();
        let mut kept = Vec::with_capacity(written.len());
        for part in written {
            match part {
                HostRef::Host(host) => {
                    if seen.insert(host) {
                        kept.push(part);
                    }
                }
                HostRef::Group(_, ref members) => {
                    if members.iter().all(|h| !seen.contains(h)) {
                        seen.extend(members.iter().copied());
                        kept.push(part);
                    } else {
                        for &host in members.iter() {
                            if seen.insert(host) {
                                kept.push(HostRef::Host(host));
                            }
                        }
                    }
                }
            }
        }
        HostList { written: kept }
    }
    /// Every host, groups expanded.
    pub fn iter(&self) -> HostIter<'_> {
        HostIter {
            written: self.written.iter(),
            hosts: [].iter(),
        }
    }
    /// The hosts and groups as written.
    pub fn written(&self) -> &[HostRef] {
        &self.written
    }
    /// How many hosts there are, groups expanded.
    pub fn len(&self) -> usize {
        self.written.iter().map(|r| r.hosts().len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.written.iter().all(|r| r.hosts().is_empty())
    }
}

impl From<Vec<HostId>> for HostList {
    fn from(hosts: Vec<HostId>) -> Self {
        hosts.into_iter().collect()
    }
}

/// Hosts in order; a host already taken is left out.
impl FromIterator<HostId> for HostList {
    fn from_iter<I: IntoIterator<Item = HostId>>(hosts: I) -> Self {
        HostList::new(hosts.into_iter().map(HostRef::Host).collect())
    }
}

impl<'a> IntoIterator for &'a HostList {
    type Item = HostId;
    type IntoIter = HostIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Equal when they expand to the same hosts in the same order.
impl PartialEq for HostList {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for HostList {}

impl fmt::Debug for HostList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The iterator of [`HostList::iter`].
#[derive(Clone)]
pub struct HostIter<'a> {
    written: std::slice::Iter<'a, HostRef>,
    hosts: std::slice::Iter<'a, HostId>,
}

impl Iterator for HostIter<'_> {
    type Item = HostId;
    fn next(&mut self) -> Option<HostId> {
        loop {
            if let Some(&host) = self.hosts.next() {
                return Some(host);
            }
            self.hosts = self.written.next()?.hosts().iter();
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let rest: usize = self
            .written
            .as_slice()
            .iter()
            .map(|r| r.hosts().len())
            .sum();
        let n = self.hosts.len() + rest;
        (n, Some(n))
    }
}

impl ExactSizeIterator for HostIter<'_> {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbEngine {
    Sqlite,
}

/// A database server `db.sync` replicates between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerEngine {
    /// `postgres`: PostgreSQL, by logical replication.
    Postgres,
    /// `mysql`: MariaDB or MySQL, by GTID replication.
    Mysql,
}

impl ServerEngine {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerEngine::Postgres => "postgres",
            ServerEngine::Mysql => "mysql",
        }
    }
    /// The port when the runbook gives none.
    pub fn default_port(self) -> u16 {
        match self {
            ServerEngine::Postgres => 5432,
            ServerEngine::Mysql => 3306,
        }
    }
}

/// `HOST[:PORT]/DATABASE user USER [password SECRET-REF]` — a database on
/// a runbook host's address. The password is given only by reference, like
/// a key's secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DbServer {
    pub host: HostId,
    /// As written, or the engine's default port.
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<SecretRef>,
}

/// The values of one RRset as the runbook writes them (`192.0.2.1, 192.0.2.2`), in the
/// order written, each in zone-file syntax; never empty, no value twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordValues(pub Vec<String>);

impl RecordValues {
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    /// Whether both hold the same values, in any order.
    pub fn same_set(&self, other: &RecordValues) -> bool {
        fn sorted(values: &RecordValues) -> Vec<&str> {
            let mut v: Vec<&str> = values.iter().map(String::as_str).collect();
            v.sort_unstable();
            v
        }
        sorted(self) == sorted(other)
    }
}

/// As the runbook writes them: `192.0.2.1, 192.0.2.2`, values that need it quoted.
impl std::fmt::Display for RecordValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, value) in self.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&crate::format::word(value))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// `dns.ttl ZONE NAME... TYPE TTL [was TTL]`
    /// Names are relative to the zone (`@` is the apex). `previous_ttl`
    /// (`was 1d`) is the TTL before the change, when the author knows it.
    DnsTtl {
        zone: ZoneId,
        names: Vec<String>,
        rtype: RecordType,
        ttl: Duration,
        previous_ttl: Option<Duration>,
    },
    /// `dns.switch ZONE NAME TYPE OLD[, OLD...] -> NEW[, NEW...]`: the whole
    /// RRset, from exactly the old values to the new ones (values in
    /// zone-file syntax).
    DnsSwitch {
        zone: ZoneId,
        name: String,
        rtype: RecordType,
        old: RecordValues,
        new: RecordValues,
    },
    /// `dns.add ZONE NAME TYPE VALUE[, VALUE...] [ttl TTL]`: these values
    /// join the RRset (created when absent); its other values stay.
    /// `ttl`: the TTL of a set it creates (without it, 300 seconds).
    DnsAdd {
        zone: ZoneId,
        name: String,
        rtype: RecordType,
        values: RecordValues,
        ttl: Option<Duration>,
    },
    /// `dns.remove ZONE NAME TYPE VALUE[, VALUE...]`: these values leave
    /// the RRset; its other values stay.
    DnsRemove {
        zone: ZoneId,
        name: String,
        rtype: RecordType,
        values: RecordValues,
    },
    /// `image.copy HOST:/PATH -> HOST:/PATH [size SIZE] [limit RATE]`
    ImageCopy {
        from: Endpoint,
        to: Endpoint,
        size: Option<Size>,
        /// The most bandwidth the copy may take (`limit RATE`).
        limit: Option<Bandwidth>,
    },
    /// `db.sync sqlite HOST:/PATH -> HOST:/PATH [size SIZE]`
    DbSync {
        engine: DbEngine,
        from: Endpoint,
        to: Endpoint,
        size: Option<Size>,
    },
    /// `port.open HOST:PORT, GROUP:PORT, ... [from HOST]` (iterating
    /// expands groups). `from`: the connects are made on that host, through
    /// its transport, instead of on this machine.
    PortOpen {
        targets: PortTargets,
        from: Option<HostId>,
    },
    /// `port.closed HOST:PORT, GROUP:PORT, ... [from HOST]`
    PortClosed {
        targets: PortTargets,
        from: Option<HostId>,
    },
    /// `http.check URL [at HOST] [from HOST] [status N] [body "TEXT"] [ca FILE] [cert-days N]`
    /// — requests go to `host`'s address when it is set: the `at` host, or
    /// else the URL's host when that is a runbook host name. The URL's host
    /// name is still sent for SNI and in the `Host` header. `from`: the
    /// connection is made on that host, through its transport.
    HttpCheck {
        url: String,
        host: Option<HostId>,
        /// `at HOST` was written (`host` is that host).
        at: bool,
        status: u16,
        body: Option<String>,
        /// `ca FILE` — a CA trusted in addition to the system roots, as
        /// written (relative to the runbook's folder).
        ca: Option<PathBuf>,
        /// `cert-days N` — fail when the certificate expires within N days
        /// (without it, within 14 days only warns).
        cert_days: Option<u32>,
        /// `from HOST` — the host the connection is made from.
        from: Option<HostId>,
    },
    /// `exec [on HOST|GROUP] "COMMAND" [env NAME, ...]` — `on` empty: runs
    /// locally. The command starts with a scrubbed environment: `PATH`,
    /// `HOME`, `LANG` (and the locale and terminal variables when set) plus
    /// the variables named in `env`, in the order written. A variable that
    /// holds a key's secret (`env:VAR`) is refused by the language.
    Exec {
        on: HostList,
        command: String,
        env: Vec<String>,
    },
    /// `manual "INSTRUCTIONS"`
    Manual { instructions: String },
    /// `wait 5m` or `wait until TIME`
    Wait(WaitFor),
    /// `db.sync postgres|mysql SERVER -> SERVER [freeze STEP] [size SIZE]`
    /// — replication from a live source; `freeze` names the step that
    /// stops the source's writers: the final verification (zero lag,
    /// checksums) waits until it is done.
    DbReplicate {
        engine: ServerEngine,
        from: DbServer,
        to: DbServer,
        freeze: Option<StepId>,
        size: Option<Size>,
    },
    /// `db.unfollow STEP` — ends the fallback window of `STEP`, a
    /// `db.sync postgres|mysql` whose `undo` replicates back: the old
    /// server stops following the new one. The language makes it come
    /// after `STEP`.
    DbUnfollow { step: StepId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    Duration(Duration),
    Until(TimeSpec),
}

impl ActionKind {
    /// The keyword that starts the kind line, e.g. `dns.switch`.
    pub fn keyword(&self) -> &'static str {
        match self {
            ActionKind::DnsTtl { .. } => "dns.ttl",
            ActionKind::DnsSwitch { .. } => "dns.switch",
            ActionKind::DnsAdd { .. } => "dns.add",
            ActionKind::DnsRemove { .. } => "dns.remove",
            ActionKind::ImageCopy { .. } => "image.copy",
            ActionKind::DbSync { .. } => "db.sync",
            ActionKind::PortOpen { .. } => "port.open",
            ActionKind::PortClosed { .. } => "port.closed",
            ActionKind::HttpCheck { .. } => "http.check",
            ActionKind::Exec { .. } => "exec",
            ActionKind::Manual { .. } => "manual",
            ActionKind::Wait(_) => "wait",
            ActionKind::DbReplicate { .. } => "db.sync",
            ActionKind::DbUnfollow { .. } => "db.unfollow",
        }
    }

    /// The record whose served values this action takes away: a
    /// `dns.switch` replaces them, a `dns.remove` drops some. Caches may
    /// hand those out for the TTL they were served with, so such an action
    /// waits for the old TTL to expire, as the planner plans it and the
    /// engine runs it.
    pub fn retired_record(&self) -> Option<(ZoneId, &str, RecordType)> {
        match self {
            ActionKind::DnsSwitch {
                zone, name, rtype, ..
            }
            | ActionKind::DnsRemove {
                zone, name, rtype, ..
            } => Some((*zone, name.as_str(), *rtype)),
            _ => None,
        }
    }
}
