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
        Self::start_with_args(port, conf, files, &[]).await
    }

    /// [`Named::start`] with more command-line arguments (e.g. `-d 3` to log each transfer's
    /// kind).
    async fn start_with_args(
        port: u16,
        conf: impl Fn(&Path, u16) -> String,
        files: &[(&str, String)],
        args: &[&str],
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
            .args(args)
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

/// The lab zone with `extra` more A records, its refresh an hour: a secondary that follows a
/// change within seconds did so because it was notified.
fn big_zone_text(extra: usize) -> String {
    let mut text = std::fs::read_to_string(lab_zone_file()).unwrap();
    for index in 0..extra {
        text.push_str(&format!(
            "host{index:05} IN A 10.{}.{}.{}\n",
            index / 65_536,
            index / 256 % 256,
            index % 256
        ));
    }
    text
}

#[tokio::test]
#[ignore = "needs bind9 (named)"]
async fn bind_secondary_of_dns_serve_loads_50000_records_and_follows_a_switch_by_notify_and_ixfr() {
    use cutover_dns::{NotifyTargets, ServeConfig, ServeOptions, ZoneSource, serve_with};

    let (key_text, _) = generate_key();
    let files = tempfile::tempdir().unwrap();
    let zone_file = files.path().join("maemo.org.zone");
    std::fs::write(&zone_file, big_zone_text(50_000)).unwrap();
    let secondary_port = free_port();
    let server = serve_with(
        ServeConfig {
            zones: vec![ZoneSource {
                name: ZONE.into(),
                file: zone_file,
            }],
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            keys: vec![crate::support::update_key()],
            state_dir: files.path().join("state"),
            allow_transfer: vec!["127.0.0.1".parse().unwrap()],
        },
        ServeOptions {
            notify: NotifyTargets::Addresses(vec![SocketAddr::from((
                [127, 0, 0, 1],
                secondary_port,
            ))]),
        },
    )
    .await
    .unwrap();
    let primary = server.addresses()[0];
    let mut notified = server.notify_events();
    let primary_port = primary.port();
    // Debug level 3 logs whether each transfer was incremental.
    let secondary = Named::start_with_args(
        secondary_port,
        |dir, port| {
            format!(
                "{}zone \"{ZONE}\" {{\n\ttype secondary;\n\tprimaries {{ 127.0.0.1 port {primary_port}; }};\n\tfile \"{}/zone.bak\";\n}};\n",
                common_options(dir, port),
                dir.display()
            )
        },
        &[("key.conf", key_text)],
        &["-d", "3"],
    )
    .await;

    // The whole zone arrived: its last record is served.
    let last = cutover_dns::query(secondary.address, ZONE, "host49999", RecordType::A, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(last.values, vec!["10.0.195.79"], "{}", secondary.log());

    crate::support::switch_wiki(primary).await;
    let switched = Instant::now();
    let serial = soa(primary, ZONE, TIMEOUT).await.unwrap().serial;
    let report = verify_all(
        &[secondary.address],
        ZONE,
        "wiki",
        RecordType::A,
        Expectation {
            values: Some(vec!["192.0.2.20".into()]),
            ttl: Some(300),
            min_serial: Some(serial),
        },
        VerifyOptions {
            timeout: Duration::from_secs(2),
            query_timeout: Duration::from_millis(500),
            first_pause: Duration::from_millis(20),
            max_pause: Duration::from_millis(100),
            concurrency: 4,
        },
    )
    .await
    .unwrap();
    assert!(report.verified, "{report}\n{}", secondary.log());
    assert!(switched.elapsed() < Duration::from_secs(2));

    let event = tokio::time::timeout(Duration::from_secs(5), notified.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.error, None, "{event}");
    assert_eq!(event.serial, serial);
    // The first transfer is the whole zone (AXFR), the second only the change (IXFR), asked
    // for because of the NOTIFY: the zone's refresh is an hour.
    let log = secondary.log();
    let transfers: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("Transfer completed"))
        .collect();
    assert_eq!(transfers.len(), 2, "{log}");
    assert!(transfers[0].contains("50011 records"), "{log}");
    assert!(transfers[1].contains(" 6 records"), "{log}");
    assert!(
        log.contains("notify from 127.0.0.1#") && log.contains(&format!(": serial {serial}")),
        "{log}"
    );
    let (_, after_request) = log
        .split_once("requesting IXFR for serial 2013031401")
        .unwrap_or_else(|| panic!("no IXFR request in\n{log}"));
    assert!(after_request.contains("got incremental response"), "{log}");
    assert!(
        !after_request.contains("got nonincremental response"),
        "{log}"
    );
}
