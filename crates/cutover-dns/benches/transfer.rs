//! A 50,000-record zone transferred by AXFR from the embedded server (`serve`): what a real
//! secondary of `cutover dns serve` loads at start. Goal: under 1 s.
//!
//! The client sends the AXFR question over TCP and reads and decodes every message until all
//! records have arrived; the server runs in the bench's own process, on loopback.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use cutover_dns::{NotifyTargets, ServeConfig, ServeOptions, ZoneSource, serve_with};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RECORDS: usize = 50_000;
/// The SOA, NS and the name server's address, plus the closing SOA.
const OVERHEAD: usize = 4;

fn zone_text() -> String {
    let mut text = String::from(
        "$ORIGIN bench.test.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n  IN NS ns1\nns1 IN A 127.0.0.1\n",
    );
    for index in 0..RECORDS {
        writeln!(
            text,
            "host{index:05} IN A 10.{}.{}.{}",
            index / 65_536,
            index / 256 % 256,
            index % 256
        )
        .unwrap();
    }
    text
}

/// One AXFR; returns the number of records and messages received.
async fn transfer(server: SocketAddr) -> (usize, usize) {
    let mut question = Query::new();
    question
        .set_name(Name::from_str("bench.test.").unwrap())
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::AXFR);
    let mut message = Message::new(1, MessageType::Query, OpCode::Query);
    message.add_query(question);
    let bytes = message.to_vec().unwrap();
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let (mut records, mut messages) = (0, 0);
    let mut body = Vec::new();
    while records < RECORDS + OVERHEAD {
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await.unwrap();
        body.resize(u16::from_be_bytes(length) as usize, 0);
        stream.read_exact(&mut body).await.unwrap();
        records += Message::from_vec(&body).unwrap().answers.len();
        messages += 1;
    }
    (records, messages)
}

fn axfr_of_50000_records(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zone_file = dir.path().join("bench.test.zone");
    std::fs::write(&zone_file, zone_text()).unwrap();
    let server = runtime
        .block_on(serve_with(
            ServeConfig {
                zones: vec![ZoneSource {
                    name: "bench.test".into(),
                    file: zone_file,
                }],
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                keys: Vec::new(),
                state_dir: dir.path().join("state"),
                allow_transfer: vec!["127.0.0.1".parse().unwrap()],
            },
            ServeOptions {
                notify: NotifyTargets::Addresses(Vec::new()),
            },
        ))
        .unwrap();
    let address = server.addresses()[0];
    let (records, messages) = runtime.block_on(transfer(address));
    println!("one transfer: {records} records in {messages} messages");

    c.bench_function("axfr 50000 records from serve", |bench| {
        bench.iter(|| {
            let timed = runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), transfer(address)).await
            });
            assert_eq!(timed.unwrap().0, RECORDS + OVERHEAD);
        });
    });
    runtime.block_on(server.shutdown()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(15));
    targets = axfr_of_50000_records
}
criterion_main!(benches);
