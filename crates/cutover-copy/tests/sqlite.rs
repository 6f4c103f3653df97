//! db.sync: a consistent snapshot of a database that is being written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cutover_copy::agent::{AgentClient, serve};
use cutover_copy::{
    CopyOptions, Endpoint, ErrorKind, Location, sync_sqlite, sync_sqlite_with, table_checksums,
};
use rusqlite::Connection;

fn create_source(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total REAL, note BLOB);
         CREATE TABLE ledger (customer TEXT, seq INTEGER, amount INTEGER, PRIMARY KEY (customer, seq)) WITHOUT ROWID;",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..20_000i64 {
        insert_pair(&tx, i);
    }
    tx.commit().unwrap();
}

/// One order and its ledger line, in one transaction: a consistent snapshot
/// has as many of each.
fn insert_pair(conn: &Connection, i: i64) {
    conn.execute(
        "INSERT INTO orders (id, customer, total, note) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![
            i,
            format!("c{}", i % 97),
            i as f64 * 1.5,
            vec![(i % 251) as u8; (i % 50) as usize]
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO ledger VALUES (?1, ?2, ?3)",
        rusqlite::params![format!("c{}", i % 97), i, i * 3],
    )
    .unwrap();
}

#[test]
fn sync_of_a_database_under_writes_is_a_consistent_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("live.sqlite");
    let dest = dir.path().join("copy.sqlite");
    create_source(&source);

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, source) = (Arc::clone(&stop), Arc::clone(&written), source.clone());
        std::thread::spawn(move || {
            let conn = Connection::open(&source).unwrap();
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut i = 20_000i64;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let tx = conn.unchecked_transaction().unwrap();
                insert_pair(&tx, i);
                tx.commit().unwrap();
                i += 1;
                written.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while written.load(Ordering::SeqCst) < 50 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = sync_sqlite(
        &Location::Local(source.clone()),
        &Location::Local(dest.clone()),
        &CopyOptions::default(),
    )
    .unwrap();
    let during = written.load(Ordering::SeqCst);
    // The writer keeps going after the sync too.
    while written.load(Ordering::SeqCst) < during + 50 {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    let conn = Connection::open(&dest).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let orders: i64 = conn
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    let ledger: i64 = conn
        .query_row("SELECT count(*) FROM ledger", [], |r| r.get(0))
        .unwrap();
    assert_eq!(orders, ledger, "a snapshot holds whole transactions");
    assert!(
        orders >= 20_050,
        "the snapshot includes writes made before it ({orders})"
    );
    drop(conn);

    let names: Vec<&str> = report.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ledger", "orders"]);
    assert_eq!(report.tables[1].rows, orders as u64);
    assert_eq!(
        table_checksums(&Location::Local(dest.clone())).unwrap(),
        report.tables
    );
    // The live source has moved on: its checksums differ from the snapshot's.
    assert_ne!(
        table_checksums(&Location::Local(source.clone())).unwrap(),
        report.tables
    );
    assert!(!dir.path().join(".live.sqlite.cutover-snapshot").exists());

    // A second sync with the writer stopped reuses the old copy's blocks.
    let again = sync_sqlite(
        &Location::Local(source.clone()),
        &Location::Local(dest.clone()),
        &CopyOptions::default(),
    )
    .unwrap();
    assert!(
        !again.copy.in_place && again.copy.bytes_sent < again.copy.size,
        "sent {} of {}",
        again.copy.bytes_sent,
        again.copy.size
    );
    assert_eq!(
        table_checksums(&Location::Local(source)).unwrap(),
        again.tables
    );
}

#[test]
fn sync_of_a_missing_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = sync_sqlite(
        &Location::Local(dir.path().join("absent.sqlite")),
        &Location::Local(dir.path().join("copy.sqlite")),
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("absent.sqlite"), "{err}");
    assert!(!dir.path().join("copy.sqlite").exists());
}

/// The snapshot is taken on the source's side of an agent (as on a remote
/// host) and swapped in over an older copy at the destination.
#[test]
fn sync_from_an_agent_replaces_an_older_copy() {
    let dir = tempfile::tempdir().unwrap();
    let far = dir.path().join("far");
    std::fs::create_dir(&far).unwrap();
    create_source(&far.join("live.sqlite"));
    let dest = dir.path().join("copy.sqlite");
    std::fs::copy(far.join("live.sqlite"), &dest).unwrap();
    {
        let conn = Connection::open(far.join("live.sqlite")).unwrap();
        conn.execute("DELETE FROM orders WHERE id % 10 = 0", [])
            .unwrap();
        insert_pair(&conn, 1_000_000);
    }
    let (request_reader, request_writer) = std::io::pipe().unwrap();
    let (response_reader, response_writer) = std::io::pipe().unwrap();
    let root = far.clone();
    std::thread::spawn(move || serve(&root, request_reader, response_writer));
    let mut src = Endpoint::Agent(
        AgentClient::over(
            "in-process agent",
            Box::new(response_reader),
            Box::new(request_writer),
        )
        .unwrap(),
    );
    let (mut dst, dst_path) = Endpoint::connect(&Location::Local(dest.clone())).unwrap();
    let report = sync_sqlite_with(
        &mut src,
        "live.sqlite",
        &mut dst,
        &dst_path,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(report.method, "backup");
    assert_eq!(
        report
            .tables
            .iter()
            .find(|t| t.name == "orders")
            .unwrap()
            .rows,
        18_001
    );
    assert_eq!(
        table_checksums(&Location::Local(dest.clone())).unwrap(),
        report.tables
    );
    assert_eq!(
        table_checksums(&Location::Local(far.join("live.sqlite"))).unwrap(),
        report.tables
    );
    assert!(!far.join(".live.sqlite.cutover-snapshot").exists());
}
