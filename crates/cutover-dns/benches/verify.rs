//! Verifying 1,000 records at 3 servers on loopback, queries in flight concurrently: the
//! batch a `dns.switch` wave or `plan --probe` makes. Goal: ≤ 50 ms median.
//!
//! The servers are the embedded authoritative server (`serve`), three instances of a
//! generated zone of 1,000 A records, each on its own loopback port.

use std::fmt::Write as _;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use cutover_dns::{
    Expectation, RecordCheck, RecordType, ServeConfig, TsigAlgorithm, TsigKey, VerifyOptions,
    ZoneSource, serve, verify_many,
};

const RECORDS: usize = 1_000;
const SERVERS: usize = 3;

fn zone_text() -> String {
    let mut text = String::from(
        "$ORIGIN bench.test.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n  IN NS ns1\nns1 IN A 127.0.0.1\n",
    );
    for index in 0..RECORDS {
        writeln!(text, "host{index:04} IN A {}", address(index)).unwrap();
    }
    text
}

fn address(index: usize) -> String {
    format!("198.51.{}.{}", 100 + index / 250, index % 250 + 1)
}

fn verify_1000_records_at_3_servers(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zone_file = dir.path().join("bench.test.zone");
    std::fs::write(&zone_file, zone_text()).unwrap();
    let key = TsigKey::new("bench", TsigAlgorithm::HmacSha256, b"bench secret".to_vec()).unwrap();

    let handles: Vec<_> = (0..SERVERS)
        .map(|index| {
            runtime
                .block_on(serve(ServeConfig {
                    zones: vec![ZoneSource {
                        name: "bench.test".into(),
                        file: zone_file.clone(),
                    }],
                    listen: vec!["127.0.0.1:0".parse().unwrap()],
                    keys: vec![key.clone()],
                    state_dir: dir.path().join(format!("state-{index}")),
                    allow_transfer: Vec::new(),
                }))
                .unwrap()
        })
        .collect();
    let servers: Vec<_> = handles.iter().map(|handle| handle.addresses()[0]).collect();
    let checks: Vec<RecordCheck> = (0..RECORDS)
        .map(|index| RecordCheck {
            zone: "bench.test".into(),
            name: format!("host{index:04}"),
            rtype: RecordType::A,
            expect: Expectation {
                values: Some(vec![address(index)]),
                ttl: Some(3600),
                min_serial: Some(1),
            },
        })
        .collect();
    let options = VerifyOptions {
        timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(2),
        first_pause: Duration::from_millis(50),
        max_pause: Duration::from_millis(200),
        concurrency: 256,
    };

    c.bench_function("verify 1000 records x 3 servers", |bench| {
        bench.iter(|| {
            let reports = runtime
                .block_on(verify_many(&servers, &checks, options))
                .unwrap();
            assert!(reports.iter().all(|report| report.verified));
        });
    });

    for handle in handles {
        runtime.block_on(handle.shutdown()).unwrap();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(8));
    targets = verify_1000_records_at_3_servers
}
criterion_main!(benches);
