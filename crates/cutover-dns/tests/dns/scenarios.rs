//! The DNS scenarios, written once against a "server under test": a primary that takes
//! TSIG-signed RFC 2136 updates and a secondary that follows it without NOTIFY. Each server
//! implementation (the embedded one, BIND 9, Knot DNS) provides a [`ServerUnderTest`] and runs
//! every scenario through [`scenarios!`]: TTL lowering, switch with compare-and-swap, drift
//! refusal, wrong key, lagging secondary, busy zone, multi-value RRset switch (with CAA and
//! PTR changes and single values added and removed), HTTPS and SVCB switch.
//!
//! The secondaries' SOA refresh is an hour, so a secondary lags until the test lets it catch up
//! ([`ServerUnderTest::catch_up`]): what a secondary serves right after an update is known, not
//! raced.

use std::net::SocketAddr;
use std::time::Duration;

use cutover_dns::{
    DnsError, Expectation, RecordType, TsigAlgorithm, TsigKey, Updater, VerifyOptions,
    VerifyReport, canonical_input, query, soa, verify_all,
};

use crate::support::TIMEOUT;

/// The zone every scenario works on.
pub const SCENARIO_ZONE: &str = "scenario.test";

/// The name of the update key.
pub const KEY_NAME: &str = "cutover-scenario";

/// The zone's starting serial.
pub const FIRST_SERIAL: u32 = 2026120101;

/// The zone as every implementation loads it: refresh an hour, names each scenario owns.
pub fn scenario_zone_text() -> String {
    format!(
        "$ORIGIN {SCENARIO_ZONE}.
$TTL 3600
@     IN SOA ns1.{SCENARIO_ZONE}. hostmaster.{SCENARIO_ZONE}. {FIRST_SERIAL} 3600 600 1209600 300
@     IN NS  ns1.{SCENARIO_ZONE}.
ns1   IN A   127.0.0.1
@     3600 IN CAA 0 issue \"letsencrypt.org\"
www   3600 IN A 198.51.100.10
wiki  300 IN A 198.51.100.20
drift 300 IN A 198.51.100.25
late  300 IN A 198.51.100.30
api   300 IN A 198.51.100.40
busy  60 IN A 192.0.2.100
pool  300 IN A 192.0.2.1
pool  300 IN A 192.0.2.2
10    300 IN PTR www.{SCENARIO_ZONE}.
"
    )
}

/// The update key's secret: 32 random bytes, fresh for each server started.
pub fn fresh_secret() -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    let mut urandom = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut urandom, &mut bytes).unwrap();
    bytes
}

/// A key of `KEY_NAME` with `secret`.
pub fn scenario_key(secret: &[u8]) -> TsigKey {
    TsigKey::new(KEY_NAME, TsigAlgorithm::HmacSha256, secret.to_vec()).unwrap()
}

/// One implementation's primary and secondary, started for one scenario.
pub trait ServerUnderTest {
    /// The primary, which takes updates signed with [`ServerUnderTest::key`].
    fn primary(&self) -> SocketAddr;
    /// The secondary, following the primary without NOTIFY.
    fn secondary(&self) -> SocketAddr;
    /// The key the primary accepts.
    fn key(&self) -> TsigKey;
    /// Lets the secondary find the primary's changes now (its refresh timer fires): BIND's
    /// `rndc refresh`, Knot's `knotc zone-refresh`; the embedded secondary catches up by itself
    /// a fixed lag after it notices a change.
    async fn catch_up(&self);
    /// The servers' logs, for failure messages.
    fn logs(&self) -> String;
}

/// Generates one test per scenario for an implementation: `$start` is an async fn returning a
/// [`ServerUnderTest`]; `$(#[$attr])*` (e.g. `#[ignore = "needs knot"]`) applies to each.
#[macro_export]
macro_rules! scenarios {
    ($start:path $(, #[$attr:meta])*) => {
        $crate::scenarios!(@one $start, ttl_lowering $(, #[$attr])*);
        $crate::scenarios!(@one $start, switch_with_cas $(, #[$attr])*);
        $crate::scenarios!(@one $start, drift_refusal $(, #[$attr])*);
        $crate::scenarios!(@one $start, wrong_key $(, #[$attr])*);
        $crate::scenarios!(@one $start, lagging_secondary_without_notify $(, #[$attr])*);
        $crate::scenarios!(@one $start, busy_zone $(, #[$attr])*);
        $crate::scenarios!(@one $start, multi_value_rrset_switch $(, #[$attr])*);
        $crate::scenarios!(@one $start, service_binding_switch $(, #[$attr])*);
    };
    (@one $start:path, $scenario:ident $(, #[$attr:meta])*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $scenario() {
            let server = $start().await;
            $crate::scenarios::$scenario(&server).await;
        }
    };
}

/// Runs a server's control command (`rndc refresh`, `knotc zone-refresh`) to its end; it must
/// succeed.
pub async fn control(command: &mut tokio::process::Command, what: &str) {
    let output = command
        .output()
        .await
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A pair's two logs, for failure messages.
pub fn pair_logs(primary: &str, secondary: &str) -> String {
    format!("primary log:\n{primary}\nsecondary log:\n{secondary}")
}

fn patient() -> VerifyOptions {
    VerifyOptions {
        timeout: Duration::from_secs(30),
        query_timeout: TIMEOUT,
        first_pause: Duration::from_millis(100),
        max_pause: Duration::from_millis(500),
        concurrency: 16,
    }
}

/// One round of queries, no waiting.
fn one_round() -> VerifyOptions {
    VerifyOptions {
        timeout: Duration::ZERO,
        ..patient()
    }
}

fn updater(server: &impl ServerUnderTest) -> Updater {
    Updater::new(server.primary(), Some(server.key()), TIMEOUT)
}

async fn serial(server: SocketAddr) -> u32 {
    soa(server, SCENARIO_ZONE, TIMEOUT).await.unwrap().serial
}

async fn values(server: SocketAddr, name: &str, rtype: RecordType) -> Vec<String> {
    query(server, SCENARIO_ZONE, name, rtype, TIMEOUT)
        .await
        .unwrap()
        .values
}

/// One round at both servers right after an update, before the secondary may catch up.
async fn before_catching_up(
    server: &impl ServerUnderTest,
    name: &str,
    expect: Expectation,
) -> VerifyReport {
    verify_all(
        &[server.primary(), server.secondary()],
        SCENARIO_ZONE,
        name,
        RecordType::A,
        expect,
        one_round(),
    )
    .await
    .unwrap()
}

/// Lets the secondary catch up, then verifies `name`/`rtype` at both servers.
async fn verified_at_both(
    server: &impl ServerUnderTest,
    name: &str,
    rtype: RecordType,
    expect: Expectation,
) -> VerifyReport {
    server.catch_up().await;
    let report = verify_all(
        &[server.primary(), server.secondary()],
        SCENARIO_ZONE,
        name,
        rtype,
        expect,
        patient(),
    )
    .await
    .unwrap();
    assert!(report.verified, "{report}\n{}", server.logs());
    report
}

fn expect_values(values: &[&str], min_serial: Option<u32>) -> Expectation {
    Expectation {
        values: Some(values.iter().map(|v| v.to_string()).collect()),
        min_serial,
        ..Expectation::default()
    }
}

/// `dns.ttl`: the TTL is lowered, the values kept, at the primary and the secondary.
pub async fn ttl_lowering(server: &impl ServerUnderTest) {
    let change = updater(server)
        .set_ttl(SCENARIO_ZONE, "www", RecordType::A, 300)
        .await
        .unwrap();
    assert_eq!(change.previous_ttl, 3600);
    assert_eq!(change.values, vec!["198.51.100.10"]);
    let expect = Expectation {
        values: Some(vec!["198.51.100.10".into()]),
        ttl: Some(300),
        min_serial: Some(serial(server.primary()).await),
        ..Expectation::default()
    };
    verified_at_both(server, "www", RecordType::A, expect).await;
}

/// `dns.switch`: the swap lands, bumps the serial, and is verified at that serial.
pub async fn switch_with_cas(server: &impl ServerUnderTest) {
    let before = serial(server.primary()).await;
    updater(server)
        .compare_and_swap(
            SCENARIO_ZONE,
            "wiki",
            RecordType::A,
            &["198.51.100.20"],
            &["192.0.2.20"],
            300,
        )
        .await
        .unwrap();
    let after = serial(server.primary()).await;
    assert!(after > before, "serial {before} -> {after}");
    let report = verified_at_both(
        server,
        "wiki",
        RecordType::A,
        Expectation {
            ttl: Some(300),
            ..expect_values(&["192.0.2.20"], Some(after))
        },
    )
    .await;
    assert!(report.servers[1].serial >= Some(after), "{report}");
}

/// A record that is not what the runbook expects is left alone, with what it holds said.
pub async fn drift_refusal(server: &impl ServerUnderTest) {
    let primary = server.primary();
    let before = serial(primary).await;
    let refused = updater(server)
        .compare_and_swap(
            SCENARIO_ZONE,
            "drift",
            RecordType::A,
            &["203.0.113.9"],
            &["192.0.2.25"],
            300,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, DnsError::PrerequisiteFailed { .. }),
        "{refused}"
    );
    assert_eq!(
        refused.to_string(),
        format!(
            "drift.{SCENARIO_ZONE}. A at {primary}: record is not what the runbook expects: observed 198.51.100.25 (TTL 300), expected 203.0.113.9; nothing was changed"
        )
    );
    assert_eq!(serial(primary).await, before);
    assert_eq!(
        values(primary, "drift", RecordType::A).await,
        vec!["198.51.100.25"]
    );
}

/// Another secret under the key's name, and no key at all: refused, nothing changed; the
/// signed check preflight makes tells the two keys apart.
pub async fn wrong_key(server: &impl ServerUnderTest) {
    let primary = server.primary();
    let wrong = scenario_key(b"not the secret the server knows!");
    let swap = |key: Option<TsigKey>| async move {
        Updater::new(primary, key, TIMEOUT)
            .compare_and_swap(
                SCENARIO_ZONE,
                "wiki",
                RecordType::A,
                &["198.51.100.20"],
                &["192.0.2.20"],
                300,
            )
            .await
            .unwrap_err()
    };
    let err = swap(Some(wrong.clone())).await;
    assert!(matches!(err, DnsError::TsigFailed { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "TSIG authentication failed at {primary} (wrong key or algorithm?)"
        )),
        "{err}"
    );
    assert!(!err.to_string().contains("file an issue"), "{err}");
    let unsigned = swap(None).await;
    assert!(
        matches!(unsigned, DnsError::Refused { .. }),
        "{unsigned}\n{}",
        server.logs()
    );
    let check = Updater::new(primary, Some(wrong), TIMEOUT)
        .verify_key(SCENARIO_ZONE)
        .await
        .unwrap_err();
    assert!(matches!(check, DnsError::TsigFailed { .. }), "{check}");
    updater(server).verify_key(SCENARIO_ZONE).await.unwrap();
    assert_eq!(
        values(primary, "wiki", RecordType::A).await,
        vec!["198.51.100.20"]
    );
    assert_eq!(serial(primary).await, FIRST_SERIAL);
}

/// A secondary without NOTIFY still serves the old value after the update: the verification
/// names it as lagging (its serial, the primary's), and is verified once it has caught up.
pub async fn lagging_secondary_without_notify(server: &impl ServerUnderTest) {
    let (primary, secondary) = (server.primary(), server.secondary());
    updater(server)
        .compare_and_swap(
            SCENARIO_ZONE,
            "late",
            RecordType::A,
            &["198.51.100.30"],
            &["192.0.2.30"],
            300,
        )
        .await
        .unwrap();
    let wanted = serial(primary).await;
    let expect = expect_values(&["192.0.2.30"], Some(wanted));
    let early = before_catching_up(server, "late", expect.clone()).await;
    assert!(!early.verified, "{early}");
    assert!(early.servers[0].agrees, "{early}");
    assert_eq!(early.servers[1].serial, Some(FIRST_SERIAL), "{early}");
    let stale = early.stale.as_ref().expect("a stale diagnosis");
    assert_eq!(stale.lagging, vec![(secondary, Some(FIRST_SERIAL))]);
    assert_eq!(stale.newest_serial, wanted);
    assert!(
        stale.to_string().starts_with(&format!(
            "{secondary} lags: it serves serial {FIRST_SERIAL}, {primary} serves {wanted}. Without NOTIFY a secondary checks its primary every 3600s (refresh)"
        )),
        "{stale}"
    );
    let report = verified_at_both(server, "late", RecordType::A, expect).await;
    assert!(report.servers[1].serial >= Some(wanted), "{report}");
}

/// Another writer changes the zone about three times a second: the switch is verified at the
/// serial its update produced (read once right after it), although the primary's serial moves
/// on, once the secondary serves the new value — and not while it does not.
pub async fn busy_zone(server: &impl ServerUnderTest) {
    let primary = server.primary();
    let writer = updater(server);
    let busy = tokio::spawn(async move {
        // Bounded: at most 200 changes (about a minute); aborted at the end.
        for n in 0..200u32 {
            let old = format!("192.0.2.{}", 100 + n % 100);
            let new = format!("192.0.2.{}", 100 + (n + 1) % 100);
            writer
                .compare_and_swap(SCENARIO_ZONE, "busy", RecordType::A, &[old], &[new], 60)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(330)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    updater(server)
        .compare_and_swap(
            SCENARIO_ZONE,
            "api",
            RecordType::A,
            &["198.51.100.40"],
            &["192.0.2.40"],
            300,
        )
        .await
        .unwrap();
    let produced = serial(primary).await;
    let expect = expect_values(&["192.0.2.40"], Some(produced));
    // Not before: the secondary has not caught up, so one round is not verified.
    let early = before_catching_up(server, "api", expect.clone()).await;
    assert!(!early.verified && !early.servers[1].agrees, "{early}");
    // The other writer moves the primary's serial past the update's (bounded wait: 10 s).
    let mut moved_on = serial(primary).await;
    for _ in 0..100 {
        if moved_on > produced {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        moved_on = serial(primary).await;
    }
    assert!(moved_on > produced, "serial {produced} -> {moved_on}");
    let report = verified_at_both(server, "api", RecordType::A, expect).await;
    busy.abort();
    let at_secondary = &report.servers[1];
    assert!(at_secondary.serial >= Some(produced), "{report}");
    assert_eq!(
        at_secondary.observation.as_ref().unwrap().values,
        vec!["192.0.2.40"]
    );
}

/// Whole RRsets: a TTL change keeps both values of a set; a switch of
/// `pool A 192.0.2.1, 192.0.2.2 -> 198.51.100.1` needs the whole old set (a part of it is refused); single values are added and removed leaving the rest; CAA
/// and PTR sets change the same way. Each verified at the primary and the secondary.
pub async fn multi_value_rrset_switch(server: &impl ServerUnderTest) {
    let primary = server.primary();
    let updater = updater(server);
    // dns.ttl on a set of two: both values kept, the set's TTL changed.
    let change = updater
        .set_ttl(SCENARIO_ZONE, "pool", RecordType::A, 120)
        .await
        .unwrap();
    assert_eq!(change.values, vec!["192.0.2.1", "192.0.2.2"]);
    assert_eq!(change.previous_ttl, 300);
    let wanted = serial(primary).await;
    verified_at_both(
        server,
        "pool",
        RecordType::A,
        Expectation {
            ttl: Some(120),
            ..expect_values(&["192.0.2.1", "192.0.2.2"], Some(wanted))
        },
    )
    .await;
    let partial = updater
        .compare_and_swap(
            SCENARIO_ZONE,
            "pool",
            RecordType::A,
            &["192.0.2.1"],
            &["198.51.100.1"],
            300,
        )
        .await
        .unwrap_err();
    assert_eq!(
        partial.to_string(),
        format!(
            "pool.{SCENARIO_ZONE}. A at {primary}: record is not what the runbook expects: observed 192.0.2.1, 192.0.2.2 (TTL 120), expected 192.0.2.1; nothing was changed"
        )
    );
    updater
        .compare_and_swap(
            SCENARIO_ZONE,
            "pool",
            RecordType::A,
            &["192.0.2.2", "192.0.2.1"],
            &["198.51.100.1"],
            300,
        )
        .await
        .unwrap();
    let wanted = serial(primary).await;
    verified_at_both(
        server,
        "pool",
        RecordType::A,
        expect_values(&["198.51.100.1"], Some(wanted)),
    )
    .await;

    updater
        .add_values(SCENARIO_ZONE, "pool", RecordType::A, &["198.51.100.2"], 300)
        .await
        .unwrap();
    updater
        .remove_values(SCENARIO_ZONE, "pool", RecordType::A, &["198.51.100.1"])
        .await
        .unwrap();
    let wanted = serial(primary).await;
    verified_at_both(
        server,
        "pool",
        RecordType::A,
        expect_values(&["198.51.100.2"], Some(wanted)),
    )
    .await;

    let new_caa = [
        "0 issue \"pki.goog\"",
        &format!("0 iodef \"mailto:security@{SCENARIO_ZONE}\""),
    ]
    .map(|v| v.to_string());
    updater
        .compare_and_swap(
            SCENARIO_ZONE,
            "@",
            RecordType::Caa,
            &["0 issue \"letsencrypt.org\""],
            &new_caa,
            3600,
        )
        .await
        .unwrap();
    updater
        .compare_and_swap(
            SCENARIO_ZONE,
            "10",
            RecordType::Ptr,
            &[format!("www.{SCENARIO_ZONE}.")],
            &[format!("wiki.{SCENARIO_ZONE}.")],
            300,
        )
        .await
        .unwrap();
    let wanted = serial(primary).await;
    let caa = Expectation {
        values: Some(new_caa.to_vec()),
        min_serial: Some(wanted),
        ..Expectation::default()
    };
    let report = verified_at_both(server, "@", RecordType::Caa, caa).await;
    assert_eq!(
        report.servers[1].observation.as_ref().unwrap().values.len(),
        2,
        "{report}"
    );
    let ptr = format!("wiki.{SCENARIO_ZONE}.");
    verified_at_both(
        server,
        "10",
        RecordType::Ptr,
        expect_values(&[&ptr], Some(wanted)),
    )
    .await;
}

/// HTTPS and SVCB (RFC 9460) sets: added, then switched with the compare-and-swap
/// prerequisite on the old value, each verified at the primary and the secondary with its
/// parameters compared as the servers serve them.
pub async fn service_binding_switch(server: &impl ServerUnderTest) {
    let primary = server.primary();
    let updater = updater(server);
    let cases = [
        (
            "svc",
            RecordType::Https,
            "1 . alpn=h2".to_string(),
            format!("1 cdn.{SCENARIO_ZONE}. alpn=h2,h3 port=8443 ipv4hint=198.51.100.7"),
        ),
        (
            "_dns",
            RecordType::Svcb,
            format!("1 dns.{SCENARIO_ZONE}. alpn=dot"),
            format!("2 dns2.{SCENARIO_ZONE}. alpn=dot port=853"),
        ),
    ];
    for (name, rtype, old, new) in cases {
        updater
            .add_values(SCENARIO_ZONE, name, rtype, &[&old], 300)
            .await
            .unwrap();
        let wanted = serial(primary).await;
        verified_at_both(server, name, rtype, expect_values(&[&old], Some(wanted))).await;
        updater
            .compare_and_swap(SCENARIO_ZONE, name, rtype, &[&old], &[&new], 300)
            .await
            .unwrap();
        let wanted = serial(primary).await;
        let report =
            verified_at_both(server, name, rtype, expect_values(&[&new], Some(wanted))).await;
        let served = &report.servers[1].observation.as_ref().unwrap().values;
        assert_eq!(
            served,
            &canonical_input(rtype, &[&new]).unwrap(),
            "{report}"
        );
        // The old value is no longer a valid prerequisite: the switch does not repeat.
        let again = updater
            .compare_and_swap(SCENARIO_ZONE, name, rtype, &[&old], &[&new], 300)
            .await
            .unwrap_err();
        assert!(again.to_string().contains("nothing was changed"), "{again}");
    }
}
