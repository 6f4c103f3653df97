//! Interop with real BIND 9 (`named` from Debian's bind9 package): a primary and a secondary on
//! loopback ports with TSIG, zone transfer with NOTIFY, and without NOTIFY on a short refresh.
//! Each `named` runs in the foreground as a child of the test, with its files in a temporary
//! folder, and is killed when the test ends.
//!
//! Run with: `cargo test -p cutover-dns -- --ignored` (needs `named` and `tsig-keygen`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cutover_dns::{
    DnsError, Expectation, RecordType, TsigAlgorithm, TsigKey, Updater, VerifyOptions, soa,
    verify_all,
};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::support::{TIMEOUT, ZONE, lab_zone_file};

const KEY_NAME: &str = "cutover-test";

/// One `named` process and the folder it lives in.
struct Named {
    address: SocketAddr,
    dir: TempDir,
    // Held so the process lives as long as the test needs it; killed on drop.
    _child: Child,
}

impl Named {
    async fn start(
        port: u16,
        conf: impl Fn(&Path, u16) -> String,
        files: &[(&str, String)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let conf_path = dir.path().join("named.conf");
        std::fs::write(&conf_path, conf(dir.path(), port)).unwrap();
        let log = std::fs::File::create(dir.path().join("named.log")).unwrap();
        let child = Command::new(named_binary())
            .arg("-g")
            .arg("-4")
            .args(["-n", "1"])
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("named should start (apt-get install -y bind9 bind9-dnsutils)");
        let named = Self {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            _child: child,
        };
        named.wait_until_serving().await;
        named
    }

    /// Bounded wait (10 s) until the zone is served authoritatively.
    async fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match soa(self.address, ZONE, Duration::from_millis(300)).await {
                Ok(_) => return,
                Err(err) if Instant::now() >= deadline => {
                    panic!(
                        "named at {} did not serve {ZONE}: {err}\n{}",
                        self.address,
                        self.log()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

fn named_binary() -> &'static str {
    if Path::new("/usr/sbin/named").exists() {
        "/usr/sbin/named"
    } else {
        "named"
    }
}

/// A loopback port free for both UDP and TCP at the time of asking.
fn free_port() -> u16 {
    for _ in 0..32 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}

/// A fresh key from BIND's own `tsig-keygen`, read back through cutover's key-file parser.
fn generate_key() -> (String, TsigKey) {
    let output = std::process::Command::new("tsig-keygen")
        .args(["-a", "hmac-sha256", KEY_NAME])
        .output()
        .expect("tsig-keygen should run (apt-get install -y bind9)");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let key = TsigKey::parse(&text, "tsig-keygen", None, None).unwrap();
    assert_eq!(key.algorithm(), TsigAlgorithm::HmacSha256);
    (text, key)
}

fn common_options(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    format!(
        "include \"{dir}/key.conf\";\n\
         controls {{ }};\n\
         options {{\n\
         \tdirectory \"{dir}\";\n\
         \tpid-file \"{dir}/named.pid\";\n\
         \tsession-keyfile \"{dir}/session.key\";\n\
         \tmanaged-keys-directory \"{dir}\";\n\
         \tlisten-on port {port} {{ 127.0.0.1; }};\n\
         \tlisten-on-v6 {{ none; }};\n\
         \trecursion no;\n\
         \tdnssec-validation no;\n\
         \tmin-refresh-time 1;\n\
         \tmin-retry-time 1;\n\
         }};\n"
    )
}

/// A BIND primary and secondary of the lab zone.
struct BindPair {
    primary: Named,
    secondary: Named,
    key: TsigKey,
}

impl BindPair {
    /// `notify`: the primary notifies the secondary of changes; otherwise the secondary finds
    /// them by polling every `refresh` seconds (the zone's SOA refresh).
    async fn start(notify: bool, refresh: u32) -> Self {
        let (key_text, key) = generate_key();
        let zone_text = std::fs::read_to_string(lab_zone_file())
            .unwrap()
            .replace("3600       ; refresh", &format!("{refresh} ; refresh"))
            .replace("600        ; retry", "1 ; retry");
        let secondary_port = free_port();
        let primary = Named::start(
            free_port(),
            |dir, port| {
                let notify_clause = if notify {
                    format!("\tnotify explicit;\n\talso-notify {{ 127.0.0.1 port {secondary_port}; }};\n")
                } else {
                    "\tnotify no;\n".to_string()
                };
                format!(
                    "{}zone \"{ZONE}\" {{\n\ttype primary;\n\tfile \"{}/zone.db\";\n\tupdate-policy {{ grant {KEY_NAME} zonesub ANY; }};\n\tallow-transfer {{ 127.0.0.1; }};\n{notify_clause}}};\n",
                    common_options(dir, port),
                    dir.display()
                )
            },
            &[("key.conf", key_text.clone()), ("zone.db", zone_text)],
        )
        .await;
        let primary_port = primary.address.port();
        let secondary = Named::start(
            secondary_port,
            |dir, port| {
                format!(
                    "{}zone \"{ZONE}\" {{\n\ttype secondary;\n\tprimaries {{ 127.0.0.1 port {primary_port}; }};\n\tfile \"{}/zone.bak\";\n}};\n",
                    common_options(dir, port),
                    dir.display()
                )
            },
            &[("key.conf", key_text.clone())],
        )
        .await;
        Self {
            primary,
            secondary,
            key,
        }
    }

    fn updater(&self) -> Updater {
        Updater::new(self.primary.address, Some(self.key.clone()), TIMEOUT)
    }

    /// Switches wiki through the primary and verifies at both servers with the new serial.
    async fn switch_and_verify(&self) {
        let before = soa(self.primary.address, ZONE, TIMEOUT)
            .await
            .unwrap()
            .serial;
        self.updater()
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
        let new_serial = soa(self.primary.address, ZONE, TIMEOUT)
            .await
            .unwrap()
            .serial;
        assert!(new_serial > before);
        let expect = Expectation {
            values: Some(vec!["192.0.2.20".into()]),
            ttl: Some(300),
            min_serial: Some(new_serial),
        };
        let report = verify_all(
            &[self.primary.address, self.secondary.address],
            ZONE,
            "wiki",
            RecordType::A,
            expect,
            VerifyOptions {
                timeout: Duration::from_secs(30),
                query_timeout: TIMEOUT,
                first_pause: Duration::from_millis(100),
                max_pause: Duration::from_millis(500),
                concurrency: 16,
            },
        )
        .await
        .unwrap();
        assert!(
            report.verified,
            "{report}\nprimary log:\n{}\nsecondary log:\n{}",
            self.primary.log(),
            self.secondary.log()
        );
        let secondary = &report.servers[1];
        assert_eq!(secondary.serial, Some(new_serial));
        assert_eq!(
            secondary.observation.as_ref().unwrap().values,
            vec!["192.0.2.20"]
        );
    }
}

#[tokio::test]
#[ignore = "needs bind9 (named)"]
async fn bind_switch_is_verified_once_the_notified_secondary_serves_the_new_serial() {
    let pair = BindPair::start(true, 3600).await;
    pair.switch_and_verify().await;
}

#[tokio::test]
#[ignore = "needs bind9 (named)"]
async fn bind_switch_is_verified_once_the_polling_secondary_refreshes() {
    let pair = BindPair::start(false, 2).await;
    pair.switch_and_verify().await;
}

#[tokio::test]
#[ignore = "needs bind9 (named)"]
async fn bind_lowers_a_ttl_and_refuses_wrong_keys_and_unexpected_records() {
    let pair = BindPair::start(true, 3600).await;
    let primary = pair.primary.address;

    let change = pair
        .updater()
        .set_ttl(ZONE, "www", RecordType::A, 300)
        .await
        .unwrap();
    assert_eq!(change.previous_ttl, 3600);
    let report = verify_all(
        &[primary, pair.secondary.address],
        ZONE,
        "www",
        RecordType::A,
        Expectation {
            ttl: Some(300),
            ..Expectation::default()
        },
        VerifyOptions {
            timeout: Duration::from_secs(30),
            query_timeout: TIMEOUT,
            first_pause: Duration::from_millis(100),
            max_pause: Duration::from_millis(500),
            concurrency: 16,
        },
    )
    .await
    .unwrap();
    assert!(report.verified, "{report}");

    let refused = pair
        .updater()
        .compare_and_swap(
            ZONE,
            "wiki",
            RecordType::A,
            &["203.0.113.9"],
            &["192.0.2.20"],
            300,
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "wiki.maemo.org. A at {primary}: record is not what the runbook expects: observed 198.51.100.20 (TTL 3600), expected 203.0.113.9; nothing was changed"
        )
    );

    // Same name, another secret: BIND answers BADSIG with an empty MAC.
    let (_, other) = generate_key();
    let wrong = Updater::new(primary, Some(other), TIMEOUT)
        .compare_and_swap(
            ZONE,
            "wiki",
            RecordType::A,
            &["198.51.100.20"],
            &["192.0.2.20"],
            300,
        )
        .await
        .unwrap_err();
    assert!(matches!(wrong, DnsError::TsigFailed { .. }), "{wrong}");
    assert!(
        wrong.to_string().starts_with(&format!(
            "TSIG authentication failed at {primary} (wrong key or algorithm?)"
        )),
        "{wrong}"
    );

    let unsigned = Updater::new(primary, None, TIMEOUT)
        .compare_and_swap(
            ZONE,
            "wiki",
            RecordType::A,
            &["198.51.100.20"],
            &["192.0.2.20"],
            300,
        )
        .await
        .unwrap_err();
    assert!(matches!(unsigned, DnsError::Refused { .. }), "{unsigned}");

    let seen = cutover_dns::query(primary, ZONE, "wiki", RecordType::A, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(seen.values, vec!["198.51.100.20"]);
}
