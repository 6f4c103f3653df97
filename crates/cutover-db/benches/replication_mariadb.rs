//! MariaDB replication figures on this machine, printed (not asserted),
//! in rounds that alternate which of the two goes first (the machine is
//! shared: ratios are taken within one run, and every figure carries the
//! load beside it):
//!
//! - the bulk copy: `db.sync mysql`'s initial copy (snapshot at a GTID,
//!   rows written in key order, the replica started) with a writer at 200
//!   statements a second on the source, against `mariadb-dump
//!   --single-transaction | mariadb` (default options otherwise, one
//!   stream) of the same data into a fresh database (no writer: the dump's
//!   best case);
//! - freeze to verified: from the writer's stop to the verification done
//!   the way `db.sync`'s verify does it (lag polled with the engine's
//!   backoff until no transaction is behind, auto-increments copied,
//!   chunked checksums compared, the replica removed).
//!
//! `CUTOVER_DB_BENCH_MB` sets the size of the data (default 1024),
//! `CUTOVER_DB_BENCH_WRITES` the writer's statements a second (default
//! 200), `CUTOVER_DB_BENCH_ROUNDS` the rounds (default 3),
//! `CUTOVER_DB_BENCH_DIR` where the servers' folders go (default /tmp).
//! Needs Debian's `mariadb-server`; run with `cargo bench -p cutover-db
//! --bench replication_mariadb`.

mod support;

use cutover_db::local::{LocalMariadb, MARIADB_SUPERUSER, free_port};
use cutover_db::mysql;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{Writer, load, number};

const PASSWORD: &str = "bench-password-2718";
const CHUNK_ROWS: u64 = 10_000;
/// Bytes of table and index per row of `accounts`, about.
const ROW_BYTES: u64 = 330;

fn main() {
    let mb = number("CUTOVER_DB_BENCH_MB", 1024);
    let writes = number("CUTOVER_DB_BENCH_WRITES", 200);
    let rounds = number("CUTOVER_DB_BENCH_ROUNDS", 3).max(1);
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut dumps, mut copies, mut verified) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Which goes first alternates, so a change of load between the two
        // halves of a round shows in both directions.
        let dump_first = round % 2 == 0;
        if dump_first {
            dumps.push(dump_and_restore(&source, &destination, mib));
        }
        let (copy, freeze) = sync(&runtime, &source, &destination, mib, writes, rows);
        copies.push(copy);
        verified.push(freeze);
        if !dump_first {
            dumps.push(dump_and_restore(&source, &destination, mib));
        }
    }
    support::summary("mariadb-dump | mariadb", mib, &dumps, &copies, &verified);
}

/// `mariadb-dump --single-transaction app | mariadb dumped` into a fresh
/// database; the seconds it took.
fn dump_and_restore(source: &LocalMariadb, destination: &LocalMariadb, mib: f64) -> f64 {
    destination
        .sql("DROP DATABASE IF EXISTS dumped; CREATE DATABASE dumped")
        .unwrap();
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
        "mariadb-dump --single-transaction | mariadb: {dump_secs:.1} s, {:.1} MiB/s ({})",
        mib / dump_secs,
        load()
    );
    destination.sql("DROP DATABASE dumped").unwrap();
    dump_secs
}

/// One `db.sync mysql` into a fresh database with the writer on, then the
/// freeze and the verification; (copy, freeze to verified) in seconds.
fn sync(
    runtime: &tokio::runtime::Runtime,
    source: &LocalMariadb,
    destination: &LocalMariadb,
    mib: f64,
    writes: u64,
    rows: u64,
) -> (f64, f64) {
    destination
        .sql("DROP DATABASE IF EXISTS app; CREATE DATABASE app")
        .unwrap();
    let src = source.server("app", MARIADB_SUPERUSER, Some(PASSWORD));
    let dst = destination.server("app", MARIADB_SUPERUSER, Some(PASSWORD));
    let name = cutover_db::replication_name("bench");
    let writer = Writer::start(source.session("app").unwrap(), writes, rows);
    let copied = Instant::now();
    let copy_secs = runtime.block_on(async {
        let started = mysql::start(&src, &src, &dst, &name, &|_| {}).await.unwrap();
        let copy_secs = copied.elapsed().as_secs_f64();
        let lag = mysql::lag(&src, &dst, &name).await.unwrap().unwrap();
        println!(
            "db.sync mysql, initial copy of {} rows (writer at {writes}/s): {copy_secs:.1} s, {:.1} MiB/s ({}); then {} transactions behind",
            started.rows_copied,
            mib / copy_secs,
            load(),
            lag.lag_transactions.unwrap_or(0)
        );
        copy_secs
    });

    // Freeze: the writer stops; verified as db.sync's verify does it.
    std::thread::sleep(Duration::from_secs(3));
    let written = writer.stop();
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
    let freeze_secs = frozen.elapsed().as_secs_f64();
    println!(
        "freeze -> verified: {freeze_secs:.1} s ({}; {written} statements written during the sync; {} rows, {} chunks compared)",
        load(),
        comparison.rows(),
        comparison.tables.iter().map(|t| t.chunks).sum::<u64>()
    );
    (copy_secs, freeze_secs)
}
