//! Verifying 1,000 records at 3 servers on loopback, queries in flight concurrently: the
//! batch a `dns.switch` wave or `plan --probe` makes. Goal: ≤ 50 ms median.
//!
//! The servers: three instances of the embedded authoritative server (`serve`) with a
//! generated zone of 1,000 A records, each on its own loopback port; and, when BIND's `named`
//! is installed, three `named` processes serving the same zone (killed when the bench ends).

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
                ..Expectation::default()
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

    let Some(named) = ["/usr/sbin/named", "/usr/bin/named"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
    else {
        return;
    };
    let children: Vec<_> = (0..SERVERS)
        .map(|index| {
            start_named(
                named,
                &dir.path().join(format!("named-{index}")),
                &zone_file,
            )
        })
        .collect();
    let servers: Vec<_> = children.iter().map(|(_, address)| *address).collect();
    for &server in &servers {
        wait_for(&runtime, server);
    }
    c.bench_function("verify 1000 records x 3 BIND servers", |bench| {
        bench.iter(|| {
            let reports = runtime
                .block_on(verify_many(&servers, &checks, options))
                .unwrap();
            assert!(reports.iter().all(|report| report.verified));
        });
    });
    for (mut child, _) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn start_named(
    named: &str,
    dir: &std::path::Path,
    zone_file: &std::path::Path,
) -> (std::process::Child, std::net::SocketAddr) {
    std::fs::create_dir_all(dir).unwrap();
    let port = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    };
    let d = dir.display();
    let conf = format!(
        "controls {{ }};\noptions {{ directory \"{d}\"; pid-file \"{d}/named.pid\"; session-keyfile \"{d}/session.key\"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion no; dnssec-validation no; }};\nzone \"bench.test\" {{ type primary; file \"{}\"; }};\n",
        zone_file.display()
    );
    std::fs::write(dir.join("named.conf"), conf).unwrap();
    let child = std::process::Command::new(named)
        .args(["-g", "-4", "-c"])
        .arg(dir.join("named.conf"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Bounded wait (10 s) until `named` answers.
fn wait_for(runtime: &tokio::runtime::Runtime, server: std::net::SocketAddr) {
    for _ in 0..100 {
        if runtime
            .block_on(cutover_dns::soa(
                server,
                "bench.test",
                Duration::from_millis(100),
            ))
            .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("named at {server} did not start");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(8));
    targets = verify_1000_records_at_3_servers
}
criterion_main!(benches);
