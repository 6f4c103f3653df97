//! The lab built for real from a runbook: its DNS servers answer what the DNS steps expect,
//! take signed updates, and the secondary shows them only after the lag; its listeners and
//! files are there; shutdown closes everything. Ports are picked free at test time, and every
//! wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use cutover_dns::{RecordType, TsigKey, Updater};
use cutover_lab::{Lab, LabOptions, Manifest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(2);

/// A port free on 127.0.0.1 for both UDP and TCP right now.
fn free_port() -> u16 {
    for _ in 0..32 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

fn runbook_text(dns_port: u16, http_port: u16, closed_port: u16) -> String {
    format!(
        "runbook lab-test\n\
         key lab-update hmac-sha256 file:keys/lab.key\n\
         zone example.test\n  primary 127.0.0.1:{dns_port} key lab-update\n  verify 127.0.0.1:{dns_port}, 127.0.0.2:{dns_port}\n\
         host old site a addr 127.0.0.3 via local hosts/old\n\
         host new site b addr 127.0.0.4 via local hosts/new\n\
         step lower\n  dns.ttl example.test www A 2 was 7\n\
         step copy\n  image.copy old:/srv/a.img -> new:/srv/a.img size 6MiB\n\
         step db\n  db.sync sqlite old:/srv/a.sqlite -> new:/srv/a.sqlite size 1MiB\n\
         step switch after lower, copy, db\n  dns.switch example.test www A 127.0.0.3 -> 127.0.0.4\n\
         \x20 verify http.check http://new:{http_port}/ body \"served by new.\"\n\
         step closed after switch\n  port.closed new:{closed_port}\n"
    )
}

fn load(dir: &Path, text: &str) -> cutover_lang::Runbook {
    let file = dir.join("lab-test.runbook");
    std::fs::write(&file, text).unwrap();
    let loaded = cutover_lang::load_file(&file);
    assert_eq!(loaded.error_count(), 0, "{:?}", loaded.diagnostics);
    loaded.runbook.unwrap()
}

async fn http_get(address: SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(address)).await??;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: new\r\n\r\n")
        .await?;
    let mut answer = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut answer)).await??;
    Ok(answer)
}

async fn values(server: SocketAddr) -> (Vec<String>, Option<u32>) {
    let observation = cutover_dns::query(server, "example.test", "www", RecordType::A, TIMEOUT)
        .await
        .unwrap();
    (observation.values, observation.ttl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_serves_what_the_runbook_expects_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (dns_port, http_port, closed_port) = (free_port(), free_port(), free_port());
    let runbook = load(dir.path(), &runbook_text(dns_port, http_port, closed_port));
    let options = LabOptions {
        lag: Duration::from_secs(1),
        check_every: Duration::from_millis(100),
        fresh: true,
        runbook_file: None,
        network: None,
    };
    let lab = Lab::start(&runbook, dir.path(), options).await.unwrap();
    let primary: SocketAddr = format!("127.0.0.1:{dns_port}").parse().unwrap();
    let secondary: SocketAddr = format!("127.0.0.2:{dns_port}").parse().unwrap();

    // The records as the steps expect them: old value, `was` TTL, at both servers.
    assert_eq!(
        values(primary).await,
        (vec!["127.0.0.3".to_string()], Some(7))
    );
    assert_eq!(
        values(secondary).await,
        (vec!["127.0.0.3".to_string()], Some(7))
    );
    let ns = cutover_dns::live_ns(primary, "example.test", TIMEOUT)
        .await
        .unwrap();
    let ns_addresses: Vec<String> = ns
        .iter()
        .flat_map(|n| n.addresses.iter().map(|a| a.to_string()))
        .collect();
    assert_eq!(ns_addresses, vec!["127.0.0.1", "127.0.0.2"]);

    // A signed compare-and-swap with the key the lab wrote: the primary has it at once, the
    // secondary only after the lag.
    let key =
        TsigKey::from_file(&dir.path().join("keys/lab.key"), Some("lab-update"), None).unwrap();
    let updater = Updater::new(primary, Some(key), TIMEOUT);
    let switched = Instant::now();
    updater
        .compare_and_swap(
            "example.test",
            "www",
            RecordType::A,
            &["127.0.0.3"],
            &["127.0.0.4"],
            2,
        )
        .await
        .unwrap();
    assert_eq!(values(primary).await.0, vec!["127.0.0.4"]);
    assert_eq!(
        values(secondary).await.0,
        vec!["127.0.0.3"],
        "the secondary lags"
    );
    let mut caught_up = None;
    for _ in 0..100 {
        if values(secondary).await.0 == ["127.0.0.4"] {
            caught_up = Some(switched.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = caught_up.expect("the secondary catches up within 10s");
    assert!(
        caught_up >= Duration::from_millis(900),
        "caught up after {caught_up:?}, before the lag"
    );

    // Listeners: the checked port answers HTTP naming its host; the closed port is closed.
    let answer = http_get(SocketAddr::new("127.0.0.4".parse().unwrap(), http_port))
        .await
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200 OK") && answer.contains("served by new."),
        "{answer}"
    );
    let closed = SocketAddr::new("127.0.0.4".parse().unwrap(), closed_port);
    assert!(
        TcpStream::connect(closed).await.is_err(),
        "{closed} is closed"
    );

    // Files: the sources exist, the destinations do not yet.
    let image = dir.path().join("hosts/old/srv/a.img");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 6 << 20);
    assert!(dir.path().join("hosts/old/srv/a.sqlite").exists());
    assert!(!dir.path().join("hosts/new/srv/a.img").exists());

    // The manifest says where everything is.
    let written = lab.write_manifest().unwrap();
    let manifest = Manifest::read(dir.path()).unwrap();
    assert_eq!(&manifest, lab.manifest());
    assert_eq!(written, dir.path().join("lab.json"));
    assert_eq!(manifest.dns.len(), 2);
    assert_eq!(manifest.dns[0].role, "primary");
    assert_eq!(manifest.dns[1].follows, Some(primary));
    let new_host = manifest.hosts.iter().find(|h| h.name == "new").unwrap();
    assert_eq!(new_host.listening, vec![http_port]);
    let manifest_text = std::fs::read_to_string(&written).unwrap();
    let key_text = std::fs::read_to_string(dir.path().join("keys/lab.key")).unwrap();
    let secret = key_text.split('"').nth(3).unwrap();
    assert!(
        !manifest_text.contains(secret),
        "the manifest holds no secret"
    );
    assert!(!manifest.describe().contains(secret));

    lab.shutdown().await.unwrap();
    assert!(
        TcpStream::connect(SocketAddr::new("127.0.0.4".parse().unwrap(), http_port))
            .await
            .is_err()
    );
    assert!(
        cutover_dns::query(
            primary,
            "example.test",
            "www",
            RecordType::A,
            Duration::from_millis(300)
        )
        .await
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_brought_up_again_serves_the_world_as_it_was_left_unless_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let (dns_port, http_port, closed_port) = (free_port(), free_port(), free_port());
    let runbook = load(dir.path(), &runbook_text(dns_port, http_port, closed_port));
    let primary: SocketAddr = format!("127.0.0.1:{dns_port}").parse().unwrap();
    let options = |fresh| LabOptions {
        lag: Duration::from_secs(0),
        check_every: Duration::from_millis(100),
        fresh,
        runbook_file: None,
        network: None,
    };

    let lab = Lab::start(&runbook, dir.path(), options(true))
        .await
        .unwrap();
    let key =
        TsigKey::from_file(&dir.path().join("keys/lab.key"), Some("lab-update"), None).unwrap();
    Updater::new(primary, Some(key), TIMEOUT)
        .compare_and_swap(
            "example.test",
            "www",
            RecordType::A,
            &["127.0.0.3"],
            &["127.0.0.4"],
            2,
        )
        .await
        .unwrap();
    let copy = dir.path().join("hosts/new/srv/a.img");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::write(&copy, b"written by the run").unwrap();
    lab.shutdown().await.unwrap();

    let lab = Lab::start(&runbook, dir.path(), options(false))
        .await
        .unwrap();
    assert_eq!(
        values(primary).await.0,
        vec!["127.0.0.4"],
        "the journal keeps the change"
    );
    assert_eq!(lab.manifest().dns[0].zones[0].loaded_from, "journal");
    assert!(copy.exists(), "what the run wrote is kept");
    assert!(lab.manifest().hosts[0].files.iter().all(|f| !f.generated));
    lab.shutdown().await.unwrap();

    let lab = Lab::start(&runbook, dir.path(), options(true))
        .await
        .unwrap();
    assert_eq!(
        values(primary).await.0,
        vec!["127.0.0.3"],
        "fresh forgets the change"
    );
    assert!(!copy.exists(), "fresh removes what the run wrote");
    lab.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_runbook_with_a_public_address_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let text = runbook_text(5300, 8080, 8081).replace("127.0.0.2:5300", "192.0.2.53:53");
    let runbook = load(dir.path(), &text);
    let err = Lab::start(&runbook, dir.path(), LabOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("192.0.2.53:53 is not a loopback address"),
        "{err}"
    );
    assert!(!dir.path().join("hosts").exists(), "nothing was built");
}
