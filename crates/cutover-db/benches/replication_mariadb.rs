//! MariaDB replication figures on this machine, printed (not asserted):
//!
//! - the bulk copy: `db.sync mysql`'s initial copy (snapshot at a GTID,
//!   rows written in key order, the replica started) with a writer at 200
//!   statements a second on the source, against `mariadb-dump
//!   --single-transaction | mariadb` of the same data into a fresh
//!   database (no writer: the dump's best case);
//! - freeze to verified: from the writer's stop to the verification done
//!   the way `db.sync`'s verify does it (lag polled with the engine's
//!   backoff until no transaction is behind, auto-increments copied,
//!   chunked checksums compared, the replica removed).
//!
//! `CUTOVER_DB_BENCH_MB` sets the size of the data (default 1024),
//! `CUTOVER_DB_BENCH_WRITES` the writer's statements a second (default
//! 200). Needs Debian's `mariadb-server`; run with `cargo bench -p
//! cutover-db --bench replication_mariadb`.

use cutover_db::local::{LocalMariadb, MARIADB_SUPERUSER, free_port};
use cutover_db::mysql;
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PASSWORD: &str = "bench-password-2718";
const CHUNK_ROWS: u64 = 10_000;
/// Bytes of table and index per row of `accounts`, about.
const ROW_BYTES: u64 = 330;

fn main() {
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mb = number("CUTOVER_DB_BENCH_MB", 1024);
    let writes = number("CUTOVER_DB_BENCH_WRITES", 200);
    if !std::path::Path::new("/usr/sbin/mariadbd").exists() {
        eprintln!("MariaDB is not installed: nothing to measure");
        return;
    }
    let base = std::env::var("CUTOVER_DB_BENCH_DIR").unwrap_or_else(|_| "/tmp".into());
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let settings = [
        ("innodb-buffer-pool-size", "512M"),
        ("innodb-log-file-size", "512M"),
        ("innodb-flush-log-at-trx-commit", "2"),
        ("max-allowed-packet", "64M"),
    ];
    let start = |name: &str, id: u32| {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        LocalMariadb::start(&folder, free_port().unwrap(), id, PASSWORD, &settings).unwrap()
    };
    let source = start("a", 1);
    let destination = start("b", 2);
    source.sql("CREATE DATABASE app").unwrap();
    destination
        .sql("CREATE DATABASE app; CREATE DATABASE dumped")
        .unwrap();
    let rows = mb * 1024 * 1024 / ROW_BYTES;
    let seeded = Instant::now();
    source
        .sql(&format!(
            "USE app;
             CREATE TABLE accounts (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(60) NOT NULL, balance DECIMAL(12,2), note TEXT, updated TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP, KEY accounts_name (name));
             INSERT INTO accounts (name, balance, note, updated) SELECT CONCAT('account ', seq), seq % 1000, REPEAT(MD5(seq), 6), '2026-01-01 00:00:00' FROM seq_1_to_{rows};
             CREATE TABLE events (id BIGINT AUTO_INCREMENT PRIMARY KEY, account BIGINT, kind VARCHAR(10));
             INSERT INTO events (account, kind) SELECT seq, 'seed' FROM seq_1_to_{};
             ANALYZE TABLE accounts, events;",
            rows / 10
        ))
        .unwrap();
    let size: u64 = source
        .sql("SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app'")
        .unwrap()
        .parse()
        .unwrap();
    let mib = size as f64 / 1048576.0;
    println!(
        "data: {rows} + {} rows, {mib:.0} MiB on the source (seeded in {:.0} s)",
        rows / 10,
        seeded.elapsed().as_secs_f64()
    );

    // mariadb-dump | mariadb of the same data, before the writer starts.
    let dumped = Instant::now();
    let mut dump = source
        .tool("mariadb-dump")
        .args(["--single-transaction", "app"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let restore = destination
        .client()
        .args(["-u", "root", "dumped"])
        .stdin(dump.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(
        dump.wait().unwrap().success() && restore.status.success(),
        "mariadb-dump | mariadb failed: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let dump_secs = dumped.elapsed().as_secs_f64();
    println!(
        "mariadb-dump --single-transaction | mariadb: {dump_secs:.1} s, {:.1} MiB/s",
        mib / dump_secs
    );
    destination.sql("DROP DATABASE dumped").unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let src = source.server("app", MARIADB_SUPERUSER, Some(PASSWORD));
    let dst = destination.server("app", MARIADB_SUPERUSER, Some(PASSWORD));
    let name = cutover_db::replication_name("bench");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut session = source.session("app").unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut stdin = session.stdin.take().unwrap();
            let start = Instant::now();
            let mut n: u64 = 0;
            while writes > 0 && !stop.load(Ordering::SeqCst) {
                let statement = if n.is_multiple_of(2) {
                    format!("INSERT INTO accounts (name, note) VALUES ('live {n}', 'x');\n")
                } else {
                    format!(
                        "UPDATE accounts SET balance = balance + 1 WHERE id = {};\n",
                        1 + (n * 7919) % rows
                    )
                };
                if stdin.write_all(statement.as_bytes()).is_err() {
                    break;
                }
                n += 1;
                let due = start + Duration::from_micros(n * 1_000_000 / writes);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            drop(stdin);
            let _ = session.wait();
            n
        })
    };

    let copied = Instant::now();
    runtime.block_on(async {
        let started = mysql::start(&src, &src, &dst, &name, &|_| {}).await.unwrap();
        let copy_secs = copied.elapsed().as_secs_f64();
        let lag = mysql::lag(&src, &dst, &name).await.unwrap().unwrap();
        println!(
            "db.sync mysql, initial copy of {} rows (writer at {writes}/s): {copy_secs:.1} s, {:.1} MiB/s ({:.2}x the speed of mariadb-dump | mariadb); then {} transactions behind",
            started.rows_copied,
            mib / copy_secs,
            dump_secs / copy_secs,
            lag.lag_transactions.unwrap_or(0)
        );
    });

    // Freeze: the writer stops; verified as db.sync's verify does it.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    let frozen = Instant::now();
    let comparison = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(3600);
        let mut pause = Duration::from_millis(50);
        loop {
            let lag = mysql::lag(&src, &dst, &name).await.unwrap().unwrap();
            if lag.caught_up() {
                break;
            }
            assert!(Instant::now() < deadline, "not caught up within an hour");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        let caught_up = frozen.elapsed();
        mysql::copy_auto_increments(&src, &dst).await.unwrap();
        let compared = Instant::now();
        let comparison = mysql::compare(&src, &dst, CHUNK_ROWS).await.unwrap();
        let compare_secs = compared.elapsed().as_secs_f64();
        mysql::stop(&dst, &name).await.unwrap();
        println!(
            "after the freeze: caught up in {:.2} s, compared in {compare_secs:.1} s",
            caught_up.as_secs_f64()
        );
        comparison
    });
    assert!(comparison.equal(), "{comparison:?}");
    println!(
        "freeze -> verified: {:.1} s ({written} statements written during the sync; {} rows, {} chunks compared)",
        frozen.elapsed().as_secs_f64(),
        comparison.rows(),
        comparison.tables.iter().map(|t| t.chunks).sum::<u64>()
    );
}
