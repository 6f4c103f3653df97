//! Loopback servers for the tests. Everything binds to 127.0.0.1 with port 0 and stops when its
//! handle is dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cutover_dns::{
    DnsError, RecordType, SecondaryConfig, ServeConfig, ServerHandle, TsigAlgorithm, TsigKey,
    Updater, ZoneSource, serve, serve_secondary,
};
use tempfile::TempDir;

/// Short enough that a failing test fails fast, long enough for a loaded 2-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(2);

pub const ZONE: &str = "maemo.org";

pub fn lab_zone_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/zones/maemo.org.zone")
}

pub fn update_key() -> TsigKey {
    TsigKey::new(
        "maemo-update",
        TsigAlgorithm::HmacSha256,
        b"a test secret of thirty-two bytes".to_vec(),
    )
    .unwrap()
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A primary serving the lab zone with `update_key`, journal in `state`.
pub async fn start_primary(state: &Path) -> Result<ServerHandle, DnsError> {
    serve(ServeConfig {
        zones: vec![ZoneSource {
            name: ZONE.into(),
            file: lab_zone_file(),
        }],
        listen: vec![loopback()],
        keys: vec![update_key()],
        state_dir: state.to_path_buf(),
        allow_transfer: vec!["127.0.0.1".parse().unwrap()],
    })
    .await
}

/// A secondary of `primary` that applies changes `lag` after it sees them.
pub async fn start_secondary(primary: SocketAddr, lag: Duration) -> Result<ServerHandle, DnsError> {
    serve_secondary(SecondaryConfig {
        zones: vec![ZONE.into()],
        primary,
        key: None,
        listen: vec![loopback()],
        lag,
        check_every: Duration::from_millis(100),
        timeout: TIMEOUT,
    })
    .await
}

/// Switches wiki.maemo.org from the lab zone's 198.51.100.20 to 192.0.2.20, TTL 300.
pub async fn switch_wiki(primary: SocketAddr) {
    Updater::new(primary, Some(update_key()), TIMEOUT)
        .compare_and_swap(
            ZONE,
            "wiki",
            RecordType::A,
            &["198.51.100.20"],
            &["192.0.2.20"],
            300,
        )
        .await
        .unwrap();
}

pub fn temp_dir() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// A loopback UDP port nobody listens on (bound, then released).
pub fn silent_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

/// A loopback port free for both UDP and TCP at the time of asking, for servers that cannot be
/// told to pick one.
pub fn free_port() -> u16 {
    for _ in 0..32 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}
