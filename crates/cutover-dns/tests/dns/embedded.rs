//! Against the embedded server: lower a TTL, switch a record, refuse what must be refused,
//! keep changes across a restart, and wait for a secondary that is updated late.

use std::time::Duration;

use cutover_dns::{
    DnsError, Expectation, LoadedFrom, RecordCheck, RecordType, Updater, VerifyOptions,
    cache_expiry, live_ns, query, soa, verify_all, verify_many,
};

use crate::support::{TIMEOUT, ZONE, start_primary, start_secondary, temp_dir, update_key};

fn quick_verify(timeout: Duration) -> VerifyOptions {
    VerifyOptions {
        timeout,
        query_timeout: TIMEOUT,
        first_pause: Duration::from_millis(50),
        max_pause: Duration::from_millis(200),
        concurrency: 64,
    }
}

#[tokio::test]
async fn lowering_a_ttl_keeps_the_values_and_is_verified() {
    let state = temp_dir();
    let server = start_primary(state.path()).await.unwrap();
    let primary = server.addresses()[0];
    let updater = Updater::new(primary, Some(update_key()), TIMEOUT);

    let change = updater
        .set_ttl(ZONE, "www", RecordType::A, 300)
        .await
        .unwrap();
    assert_eq!(change.previous_ttl, 3600);
    assert_eq!(change.new_ttl, 300);
    assert_eq!(change.values, vec!["198.51.100.10"]);

    let seen = query(primary, ZONE, "www", RecordType::A, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(seen.ttl, Some(300));
    assert_eq!(seen.values, vec!["198.51.100.10"]);
    assert!(seen.authoritative);

    let expect = Expectation {
        ttl: Some(300),
        ..Expectation::default()
    };
    let report = verify_all(
        &[primary],
        ZONE,
        "www",
        RecordType::A,
        expect,
        quick_verify(TIMEOUT),
    )
    .await
    .unwrap();
    assert!(report.verified, "{report}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_switch_replaces_the_value_and_bumps_the_serial() {
    let state = temp_dir();
    let server = start_primary(state.path()).await.unwrap();
    let primary = server.addresses()[0];
    let before = soa(primary, ZONE, TIMEOUT).await.unwrap();
    assert_eq!(before.serial, 2013031401);

    crate::support::switch_wiki(primary).await;

    let after = soa(primary, ZONE, TIMEOUT).await.unwrap();
    assert!(after.serial > before.serial);
    let expect = Expectation {
        values: Some(vec!["192.0.2.20".into()]),
        ttl: Some(300),
        min_serial: Some(after.serial),
        ..Expectation::default()
    };
    let report = verify_all(
        &[primary],
        ZONE,
        "wiki",
        RecordType::A,
        expect,
        quick_verify(TIMEOUT),
    )
    .await
    .unwrap();
    assert!(report.verified, "{report}");
    assert_eq!(report.servers[0].serial, Some(after.serial));
}

#[tokio::test]
async fn a_record_that_is_not_as_expected_is_left_untouched() {
    let state = temp_dir();
    let server = start_primary(state.path()).await.unwrap();
    let primary = server.addresses()[0];
    let serial = soa(primary, ZONE, TIMEOUT).await.unwrap().serial;

    let err = Updater::new(primary, Some(update_key()), TIMEOUT)
        .compare_and_swap(
            ZONE,
            "wiki",
            RecordType::A,
            &["203.0.113.99"],
            &["192.0.2.20"],
            300,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "wiki.maemo.org. A at {primary}: record is not what the runbook expects: observed 198.51.100.20 (TTL 3600), expected 203.0.113.99; nothing was changed"
        )
    );
    let seen = query(primary, ZONE, "wiki", RecordType::A, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(seen.values, vec!["198.51.100.20"]);
    assert_eq!(soa(primary, ZONE, TIMEOUT).await.unwrap().serial, serial);
}

#[tokio::test]
async fn unsigned_and_wrongly_signed_updates_are_refused_and_change_nothing() {
    let state = temp_dir();
    let server = start_primary(state.path()).await.unwrap();
    let primary = server.addresses()[0];
    let swap = |updater: Updater| async move {
        updater
            .compare_and_swap(
                ZONE,
                "wiki",
                RecordType::A,
                &["198.51.100.20"],
                &["192.0.2.20"],
                300,
            )
            .await
            .unwrap_err()
    };

    let unsigned = swap(Updater::new(primary, None, TIMEOUT)).await;
    assert_eq!(
        unsigned.to_string(),
        format!(
            "{primary} refused the update for zone maemo.org.; no TSIG key was given, and the server accepts only signed updates"
        )
    );

    let wrong_secret = cutover_dns::TsigKey::new(
        "maemo-update",
        cutover_dns::TsigAlgorithm::HmacSha256,
        b"not the secret the server knows!".to_vec(),
    )
    .unwrap();
    let unknown_name = cutover_dns::TsigKey::new(
        "someone-else",
        cutover_dns::TsigAlgorithm::HmacSha256,
        b"a test secret of thirty-two bytes".to_vec(),
    )
    .unwrap();
    let wrong_algorithm = cutover_dns::TsigKey::new(
        "maemo-update",
        cutover_dns::TsigAlgorithm::HmacSha512,
        b"a test secret of thirty-two bytes".to_vec(),
    )
    .unwrap();
    for key in [wrong_secret, unknown_name, wrong_algorithm] {
        let err = swap(Updater::new(primary, Some(key.clone()), TIMEOUT)).await;
        assert!(matches!(err, DnsError::TsigFailed { .. }), "{key:?}: {err}");
        assert!(
            err.to_string().starts_with(&format!(
                "TSIG authentication failed at {primary} (wrong key or algorithm?)"
            )),
            "{err}"
        );
    }
    let seen = query(primary, ZONE, "wiki", RecordType::A, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(seen.values, vec!["198.51.100.20"]);
}

#[tokio::test]
async fn a_restart_serves_the_changed_zone_from_the_journal() {
    let state = temp_dir();
    let server = start_primary(state.path()).await.unwrap();
    assert_eq!(server.zones()[0].loaded_from, LoadedFrom::ZoneFile);
    let primary = server.addresses()[0];
    crate::support::switch_wiki(primary).await;
    let serial = soa(primary, ZONE, TIMEOUT).await.unwrap().serial;
    server.shutdown().await.unwrap();

    let restarted = start_primary(state.path()).await.unwrap();
    assert_eq!(restarted.zones()[0].loaded_from, LoadedFrom::Journal);
    assert_eq!(restarted.zones()[0].serial, serial);
    let address = restarted.addresses()[0];
    let seen = query(address, ZONE, "wiki", RecordType::A, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(seen.values, vec!["192.0.2.20"]);
    assert_eq!(seen.ttl, Some(300));
    // The restarted zone still takes updates.
    Updater::new(address, Some(update_key()), TIMEOUT)
        .set_ttl(ZONE, "wiki", RecordType::A, 60)
        .await
        .unwrap();
}

#[tokio::test]
async fn verification_waits_for_a_secondary_that_is_updated_late() {
    let state = temp_dir();
    let lag = Duration::from_millis(1500);
    let server = start_primary(state.path()).await.unwrap();
    let primary = server.addresses()[0];
    let secondary_server = start_secondary(primary, lag).await.unwrap();
    let secondary = secondary_server.addresses()[0];

    crate::support::switch_wiki(primary).await;
    let new_serial = soa(primary, ZONE, TIMEOUT).await.unwrap().serial;
    let expect = Expectation {
        values: Some(vec!["192.0.2.20".into()]),
        ttl: None,
        min_serial: Some(new_serial),
        ..Expectation::default()
    };

    // Too short a wait: the secondary is diagnosed as lagging, with its serial and the timers.
    let early = verify_all(
        &[primary, secondary],
        ZONE,
        "wiki",
        RecordType::A,
        expect.clone(),
        quick_verify(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert!(!early.verified, "{early}");
    assert!(early.servers[0].agrees);
    assert!(!early.servers[1].agrees);
    let stale = early.stale.as_ref().expect("a stale diagnosis");
    assert_eq!(stale.lagging, vec![(secondary, Some(2013031401))]);
    assert_eq!(stale.newest_serial, new_serial);
    assert!(
        stale.to_string().starts_with(&format!(
            "{secondary} lags: it serves serial 2013031401, {primary} serves {new_serial}. Without NOTIFY a secondary checks its primary every 3600s (refresh), every 600s after a failed check (retry)"
        )),
        "{stale}"
    );

    // Long enough: verified only once the secondary serves the new serial.
    let report = verify_all(
        &[primary, secondary],
        ZONE,
        "wiki",
        RecordType::A,
        expect,
        quick_verify(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    assert!(report.verified, "{report}");
    assert!(report.rounds > 1, "{report}");
    assert_eq!(report.servers[1].serial, Some(new_serial));
    assert_eq!(
        report.servers[1].observation.as_ref().unwrap().values,
        vec!["192.0.2.20"]
    );
    assert!(report.stale.is_none());
}

/// How long after `since` the secondary first serves www.maemo.org. A with `ttl` (polled every
/// 50 ms, for at most 10 s).
async fn first_served_with_ttl(
    secondary: std::net::SocketAddr,
    ttl: u32,
    since: std::time::Instant,
) -> Duration {
    for _ in 0..200 {
        let seen = query(secondary, ZONE, "www", RecordType::A, TIMEOUT).await;
        if seen.is_ok_and(|seen| seen.ttl == Some(ttl)) {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the secondary never served www with TTL {ttl}");
}

#[tokio::test]
async fn each_change_reaches_the_lagging_secondary_a_full_lag_late() {
    let state = temp_dir();
    let lag = Duration::from_millis(2000);
    let server = start_primary(state.path()).await.unwrap();
    let primary = server.addresses()[0];
    let secondary_server = start_secondary(primary, lag).await.unwrap();
    let secondary = secondary_server.addresses()[0];
    let updater = Updater::new(primary, Some(update_key()), TIMEOUT);

    // A first change, then a second one while the first is still held back: the second is not
    // carried along with the first, it waits out a lag of its own.
    updater
        .set_ttl(ZONE, "www", RecordType::A, 300)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    updater
        .set_ttl(ZONE, "www", RecordType::A, 60)
        .await
        .unwrap();
    let second = std::time::Instant::now();

    let second_after = first_served_with_ttl(secondary, 60, second).await;
    let margin = Duration::from_millis(200);
    assert!(
        second_after + margin >= lag,
        "the second change was served after {second_after:?}"
    );
}

#[tokio::test]
async fn many_records_are_verified_in_one_batch() {
    let state = temp_dir();
    let server = start_primary(state.path()).await.unwrap();
    let primary = server.addresses()[0];
    let checks: Vec<RecordCheck> = [
        ("www", "198.51.100.10"),
        ("wiki", "198.51.100.20"),
        ("repository", "198.51.100.30"),
        ("talk", "198.51.100.99"),
    ]
    .into_iter()
    .map(|(name, value)| RecordCheck {
        zone: ZONE.into(),
        name: name.into(),
        rtype: RecordType::A,
        expect: Expectation {
            values: Some(vec![value.into()]),
            ttl: Some(3600),
            min_serial: None,
            ..Expectation::default()
        },
    })
    .collect();
    let reports = verify_many(
        &[primary],
        &checks,
        quick_verify(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let verified: Vec<bool> = reports.iter().map(|report| report.verified).collect();
    assert_eq!(verified, vec![true, true, true, false]);
    assert_eq!(
        reports[3].servers[0].observation.as_ref().unwrap().values,
        vec!["198.51.100.40"]
    );
}

/// A zone of `count` A records `hostNNN`, served by a fresh embedded server.
async fn served_hosts(count: usize, dir: &std::path::Path) -> cutover_dns::ServerHandle {
    let mut text = String::from(
        "$ORIGIN hosts.test.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n  IN NS ns1\nns1 IN A 127.0.0.1\n",
    );
    for index in 0..count {
        text.push_str(&format!("host{index:03} IN A {}\n", host_address(index)));
    }
    let zone_file = dir.join("hosts.test.zone");
    std::fs::write(&zone_file, text).unwrap();
    cutover_dns::serve(cutover_dns::ServeConfig {
        zones: vec![cutover_dns::ZoneSource {
            name: "hosts.test".into(),
            file: zone_file,
        }],
        listen: vec![crate::support::loopback()],
        keys: Vec::new(),
        state_dir: dir.join("state"),
        allow_transfer: Vec::new(),
    })
    .await
    .unwrap()
}

fn host_address(index: usize) -> String {
    format!("198.51.100.{}", index + 1)
}

/// Every host as served, but `host007` expected at an address it does not have.
fn host_checks(count: usize) -> Vec<RecordCheck> {
    (0..count)
        .map(|index| RecordCheck {
            zone: "hosts.test".into(),
            name: format!("host{index:03}"),
            rtype: RecordType::A,
            expect: Expectation {
                values: Some(vec![if index == 7 {
                    "192.0.2.7".into()
                } else {
                    host_address(index)
                }]),
                ttl: Some(3600),
                min_serial: Some(1),
                ..Expectation::default()
            },
        })
        .collect()
}

fn assert_only_host007_disagrees(reports: &[cutover_dns::VerifyReport]) {
    let unverified: Vec<&str> = reports
        .iter()
        .filter(|report| !report.verified)
        .map(|report| report.name.as_str())
        .collect();
    assert_eq!(unverified, vec!["host007.hosts.test."]);
    assert_eq!(
        reports[7].servers[0].observation.as_ref().unwrap().values,
        vec![host_address(7)]
    );
    assert_eq!(reports[8].servers[0].serial, Some(1));
}

#[tokio::test]
async fn a_large_batch_is_pipelined_over_tcp_and_every_answer_checked() {
    let dir = temp_dir();
    let server = served_hosts(200, dir.path()).await;
    let address = server.addresses()[0];
    let reports = verify_many(
        &[address],
        &host_checks(200),
        quick_verify(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert_only_host007_disagrees(&reports);
}

#[tokio::test]
async fn a_server_without_tcp_gets_the_large_batch_over_udp() {
    let dir = temp_dir();
    let server = served_hosts(200, dir.path()).await;
    let target = server.addresses()[0];
    // A relay of datagrams only: TCP to its port is refused, so the batch falls back to UDP.
    let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_address = relay.local_addr().unwrap();
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relaying = tokio::spawn(async move {
        let mut clients = std::collections::HashMap::new();
        let mut buffer = vec![0u8; 65_535];
        let mut answer = vec![0u8; 65_535];
        loop {
            tokio::select! {
                received = relay.recv_from(&mut buffer) => {
                    let (length, client) = received.unwrap();
                    let id = u16::from_be_bytes([buffer[0], buffer[1]]);
                    clients.insert(id, client);
                    upstream.send_to(&buffer[..length], target).await.unwrap();
                }
                received = upstream.recv_from(&mut answer) => {
                    let (length, _) = received.unwrap();
                    let id = u16::from_be_bytes([answer[0], answer[1]]);
                    if let Some(client) = clients.get(&id) {
                        relay.send_to(&answer[..length], client).await.unwrap();
                    }
                }
            }
        }
    });
    let reports = verify_many(
        &[relay_address],
        &host_checks(200),
        quick_verify(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    relaying.abort();
    assert_only_host007_disagrees(&reports);
}

#[tokio::test]
async fn the_live_ns_set_and_cache_expiry_are_read_from_the_server() {
    let state = temp_dir();
    let server = start_primary(state.path()).await.unwrap();
    let primary = server.addresses()[0];
    let servers = live_ns(primary, ZONE, TIMEOUT).await.unwrap();
    let shown: Vec<(String, Vec<String>)> = servers
        .iter()
        .map(|ns| {
            (
                ns.name.clone(),
                ns.addresses.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            ("ns1.maemo.org.".to_string(), vec!["127.0.0.1".to_string()]),
            ("ns2.maemo.org.".to_string(), vec!["127.0.0.2".to_string()]),
        ]
    );

    let expiry = cache_expiry(&[primary], "www.maemo.org", RecordType::A, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(expiry.resolvers[0].remaining, Some(3600));
    assert_eq!(expiry.worst_case, Some(Duration::from_secs(3600)));
}

/// The embedded primary (`serve`, no NOTIFY) and a lagging secondary of it that applies a
/// change 1.5 s after it notices it, as the scenarios' server under test.
struct EmbeddedPair {
    primary: cutover_dns::ServerHandle,
    secondary: cutover_dns::ServerHandle,
    key: cutover_dns::TsigKey,
    _dir: tempfile::TempDir,
}

async fn embedded_pair() -> EmbeddedPair {
    use crate::scenarios::{SCENARIO_ZONE, fresh_secret, scenario_key, scenario_zone_text};
    let dir = temp_dir();
    let zone_file = dir.path().join("scenario.zone");
    std::fs::write(&zone_file, scenario_zone_text()).unwrap();
    let key = scenario_key(&fresh_secret());
    let primary = cutover_dns::serve_with(
        cutover_dns::ServeConfig {
            zones: vec![cutover_dns::ZoneSource {
                name: SCENARIO_ZONE.into(),
                file: zone_file,
            }],
            listen: vec![crate::support::loopback()],
            keys: vec![key.clone()],
            state_dir: dir.path().join("state"),
            allow_transfer: vec!["127.0.0.1".parse().unwrap()],
        },
        cutover_dns::ServeOptions {
            notify: cutover_dns::NotifyTargets::Addresses(Vec::new()),
        },
    )
    .await
    .unwrap();
    let secondary = cutover_dns::serve_secondary(cutover_dns::SecondaryConfig {
        zones: vec![SCENARIO_ZONE.into()],
        primary: primary.addresses()[0],
        key: None,
        listen: vec![crate::support::loopback()],
        lag: Duration::from_millis(1500),
        check_every: Duration::from_millis(100),
        timeout: TIMEOUT,
    })
    .await
    .unwrap();
    EmbeddedPair {
        primary,
        secondary,
        key,
        _dir: dir,
    }
}

impl crate::scenarios::ServerUnderTest for EmbeddedPair {
    fn primary(&self) -> std::net::SocketAddr {
        self.primary.addresses()[0]
    }

    fn secondary(&self) -> std::net::SocketAddr {
        self.secondary.addresses()[0]
    }

    fn key(&self) -> cutover_dns::TsigKey {
        self.key.clone()
    }

    async fn catch_up(&self) {
        // The secondary applies each change its lag after noticing it.
    }

    fn logs(&self) -> String {
        "(the embedded servers log nothing)".into()
    }
}

/// The shared scenarios against the embedded server.
mod scenarios {
    crate::scenarios!(super::embedded_pair);
}
