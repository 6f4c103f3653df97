//! Interop with real BIND 9 (`named` from Debian's bind9 package): the shared scenarios
//! (`scenarios.rs`) with a BIND primary taking TSIG-signed updates and a BIND secondary of it
//! without NOTIFY, and a BIND secondary following `cutover dns serve` (50,000 records, NOTIFY and
//! IXFR). Each `named` runs in the foreground as a child of the test on free loopback ports,
//! with its files in a temporary folder, and is killed when the test ends.
//!
//! Run with: `cargo test -p cutover-dns -- --ignored` (needs `named` and `rndc`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cutover_dns::{Expectation, RecordType, TsigKey, VerifyOptions, soa, verify_all};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::support::{TIMEOUT, ZONE, free_port, lab_zone_file};

/// One `named` process and the folder it lives in.
struct Named {
    address: SocketAddr,
    dir: TempDir,
    // Held so the process lives as long as the test needs it; killed on drop.
    _child: Child,
}

impl Named {
    /// Starts `named` on `port` with the configuration `conf` writes and `files` beside it
    /// (`args`: more command-line arguments, e.g. `-d 3` to log each transfer's kind), and
    /// waits until it serves `zone`.
    async fn start_zone(
        port: u16,
        zone: &str,
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
        named.wait_until_serving(zone).await;
        named
    }

    /// Bounded wait (10 s) until `zone` is served authoritatively.
    async fn wait_until_serving(&self, zone: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match soa(self.address, zone, Duration::from_millis(300)).await {
                Ok(_) => return,
                Err(err) if Instant::now() >= deadline => {
                    panic!(
                        "named at {} did not serve {zone}: {err}\n{}",
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

/// A BIND primary taking updates signed with the scenario key, without NOTIFY, and a BIND
/// secondary of it that refreshes only when told to (`rndc refresh`): the scenarios' server
/// under test.
struct BindPair {
    primary: Named,
    secondary: Named,
    key: TsigKey,
    control_port: u16,
}

/// `key.conf` holding the scenario key, as BIND and rndc read it.
fn scenario_key_conf(secret: &[u8]) -> String {
    format!(
        "key \"{}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
        crate::scenarios::KEY_NAME,
        data_encoding::BASE64.encode(secret)
    )
}

async fn bind_pair() -> BindPair {
    use crate::scenarios::{
        KEY_NAME, SCENARIO_ZONE, fresh_secret, scenario_key, scenario_zone_text,
    };
    let secret = fresh_secret();
    let key_conf = scenario_key_conf(&secret);
    let primary = Named::start_zone(
        free_port(),
        SCENARIO_ZONE,
        |dir, port| {
            format!(
                "{}zone \"{SCENARIO_ZONE}\" {{\n\ttype primary;\n\tfile \"{}/zone.db\";\n\tupdate-policy {{ grant {KEY_NAME} zonesub ANY; }};\n\tallow-transfer {{ 127.0.0.1; }};\n\tnotify no;\n}};\n",
                common_options(dir, port),
                dir.display()
            )
        },
        &[("key.conf", key_conf.clone()), ("zone.db", scenario_zone_text())],
        &[],
    )
    .await;
    let primary_port = primary.address.port();
    let control_port = free_port();
    let secondary = Named::start_zone(
        free_port(),
        SCENARIO_ZONE,
        |dir, port| {
            format!(
                "{}controls {{ inet 127.0.0.1 port {control_port} allow {{ 127.0.0.1; }} keys {{ \"{KEY_NAME}\"; }}; }};\nzone \"{SCENARIO_ZONE}\" {{\n\ttype secondary;\n\tprimaries {{ 127.0.0.1 port {primary_port}; }};\n\tfile \"{}/zone.bak\";\n}};\n",
                common_options(dir, port).replace("controls { };\n", ""),
                dir.display()
            )
        },
        &[
            ("key.conf", key_conf.clone()),
            (
                "rndc.conf",
                format!(
                    "{key_conf}options {{ default-key \"{KEY_NAME}\"; default-server 127.0.0.1; default-port {control_port}; }};\n"
                ),
            ),
        ],
        &[],
    )
    .await;
    BindPair {
        primary,
        secondary,
        key: scenario_key(&secret),
        control_port,
    }
}

impl crate::scenarios::ServerUnderTest for BindPair {
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
        let conf = self.secondary.dir.path().join("rndc.conf");
        crate::scenarios::control(
            Command::new("rndc")
                .arg("-c")
                .arg(&conf)
                .args(["-p", &self.control_port.to_string()])
                .args(["refresh", crate::scenarios::SCENARIO_ZONE]),
            "rndc refresh (apt-get install -y bind9)",
        )
        .await;
    }

    fn logs(&self) -> String {
        crate::scenarios::pair_logs(&self.primary.log(), &self.secondary.log())
    }
}

/// The shared scenarios against BIND 9.
mod scenarios {
    crate::scenarios!(super::bind_pair, #[ignore = "needs bind9 (named)"]);
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

    let key_text = scenario_key_conf(&crate::scenarios::fresh_secret());
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
    let secondary = Named::start_zone(
        secondary_port,
        ZONE,
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
            ..Expectation::default()
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
