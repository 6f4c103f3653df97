//! Interop with real Knot DNS (`knotd` from Debian's knot package): the shared scenarios
//! (`scenarios.rs`) with a Knot primary taking TSIG-signed RFC 2136 updates (an `update` ACL
//! for the scenario key) and a Knot secondary of it without NOTIFY, refreshed when the test
//! says (`knotc zone-refresh`). Each `knotd` runs in the foreground as a child of the test on a
//! free loopback port, with its files in a temporary folder, and is killed when the test ends.
//!
//! Run with: `cargo test -p cutover-dns -- --ignored` (needs `knotd` and `knotc`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cutover_dns::{TsigKey, soa};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::scenarios::{
    KEY_NAME, SCENARIO_ZONE, ServerUnderTest, fresh_secret, scenario_key, scenario_zone_text,
};
use crate::support::free_port;

/// One `knotd` process and the folder it lives in.
struct Knot {
    address: SocketAddr,
    dir: TempDir,
    // Held so the process lives as long as the test needs it; killed on drop.
    _child: Child,
}

impl Knot {
    /// Starts `knotd` with the common configuration, `zone` (the zone's own lines) and `files`
    /// beside it, and waits (bounded, 10 s) until it serves the scenario zone.
    async fn start(secret: &[u8], zone: &str, files: &[(&str, String)]) -> Knot {
        let dir = tempfile::tempdir().unwrap();
        // The journal's database; knotd fails every update when it is missing.
        std::fs::create_dir(dir.path().join("db")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let port = free_port();
        let conf = dir.path().join("knot.conf");
        std::fs::write(&conf, config(dir.path(), port, secret, zone)).unwrap();
        let log = std::fs::File::create(dir.path().join("knot.log")).unwrap();
        let child = Command::new(binary("knotd"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("knotd should start (apt-get install -y knot)");
        let knot = Knot {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            _child: child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match soa(knot.address, SCENARIO_ZONE, Duration::from_millis(300)).await {
                Ok(_) => break,
                Err(err) if Instant::now() >= deadline => panic!(
                    "knotd at {} did not serve {SCENARIO_ZONE}: {err}\n{}",
                    knot.address,
                    knot.log()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        knot
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knot.log")).unwrap_or_default()
    }
}

fn binary(name: &str) -> String {
    let path = format!("/usr/sbin/{name}");
    if Path::new(&path).exists() {
        path
    } else {
        name.to_string()
    }
}

/// The configuration both servers share: loopback, the scenario key, updates only with it,
/// transfers to loopback, a control socket for `knotc`; then the zone's own lines.
fn config(dir: &Path, port: u16, secret: &[u8], zone: &str) -> String {
    let dir = dir.display();
    let secret = data_encoding::BASE64.encode(secret);
    format!(
        "server:
    rundir: \"{dir}\"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: info
database:
    storage: \"{dir}/db\"
control:
    listen: \"{dir}/knot.sock\"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {secret}
acl:
  - id: update
    key: {KEY_NAME}
    action: update
  - id: transfer
    address: 127.0.0.1
    action: transfer
template:
  - id: default
    storage: \"{dir}\"
{zone}"
    )
}

/// A Knot primary and secondary of the scenario zone: the scenarios' server under test.
struct KnotPair {
    primary: Knot,
    secondary: Knot,
    key: TsigKey,
}

async fn knot_pair() -> KnotPair {
    let secret = fresh_secret();
    let primary = Knot::start(
        &secret,
        &format!(
            "zone:
  - domain: {SCENARIO_ZONE}
    file: zone.db
    acl: [update, transfer]
    zonefile-sync: -1
"
        ),
        &[("zone.db", scenario_zone_text())],
    )
    .await;
    let secondary = Knot::start(
        &secret,
        &format!(
            "remote:
  - id: primary
    address: {}
zone:
  - domain: {SCENARIO_ZONE}
    file: zone.bak
    master: primary
    zonefile-sync: -1
",
            knot_address(primary.address)
        ),
        &[],
    )
    .await;
    KnotPair {
        primary,
        secondary,
        key: scenario_key(&secret),
    }
}

/// `127.0.0.1@5353`, as Knot writes an address with its port.
fn knot_address(address: SocketAddr) -> String {
    format!("{}@{}", address.ip(), address.port())
}

impl ServerUnderTest for KnotPair {
    fn primary(&self) -> SocketAddr {
        self.primary.address
    }

    fn secondary(&self) -> SocketAddr {
        self.secondary.address
    }

    fn key(&self) -> TsigKey {
        self.key.clone()
    }

    async fn catch_up(&self) {
        crate::scenarios::control(
            Command::new(binary("knotc"))
                .arg("-c")
                .arg(self.secondary.dir.path().join("knot.conf"))
                .args(["zone-refresh", SCENARIO_ZONE]),
            "knotc zone-refresh (apt-get install -y knot)",
        )
        .await;
    }

    fn logs(&self) -> String {
        crate::scenarios::pair_logs(&self.primary.log(), &self.secondary.log())
    }
}

/// The shared scenarios against Knot DNS.
mod scenarios {
    crate::scenarios!(super::knot_pair, #[ignore = "needs knot (knotd)"]);
}
