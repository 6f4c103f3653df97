//! `plan --probe` reads the size of a replicating `db.sync`'s source
//! database from the server and plans the bulk copy from it, against real
//! PostgreSQL and MariaDB servers (Debian's packages) started by each test
//! in its own folder on free ports. `#[ignore]`: `.ci/run` runs them.

mod support;

use cutover_db::local::{LocalMariadb, LocalPostgres, MARIADB_SUPERUSER, free_port};
use std::path::Path;
use support::db::Cutover;

const PASSWORD: &str = "Probe-db-secret-4471";

/// Writes a runbook whose one step replicates `source` to `destination`
/// over a 100 Mbit link, without a `size` (and without a freeze step, which
/// would hold the step's end).
fn runbook(dir: &Path, engine: &str, user: &str, source: u16, destination: u16) {
    let text = format!(
        "runbook probe\n  link old -> new 100Mbit\n\n\
         host db-old site old addr 127.0.0.1 via local ./old\n\
         host db-new site new addr 127.0.0.1 via local ./new\n\n\
         step sync\n  db.sync {engine} db-old:{source}/app user {user} password env:PROBE_DB_PW -> db-new:{destination}/app user {user} password env:PROBE_DB_PW\n"
    );
    std::fs::write(dir.join("probe.runbook"), text).unwrap();
}

/// The planned duration of step `sync` under `plan --probe`, as JSON.
fn planned_sync(dir: &Path) -> serde_json::Value {
    let cutover = Cutover {
        dir: dir.to_owned(),
        env: ("PROBE_DB_PW", PASSWORD),
        runbook: "probe.runbook",
    };
    let mut outputs = String::new();
    let (status, out, err) = cutover.finish(
        &["plan", "probe.runbook", "--probe", "--format", "json"],
        &mut outputs,
    );
    assert!(status.success(), "{err}");
    assert!(!outputs.contains(PASSWORD), "no password in the output");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "sync")
        .unwrap()["duration"]
        .clone()
}

/// The bytes a basis like "bulk copy: 58.9 MB (probed) over ..." names.
fn probed_bytes(basis: &str) -> f64 {
    let text = basis
        .split("bulk copy: ")
        .nth(1)
        .and_then(|rest| rest.split(" (probed)").next())
        .unwrap_or_else(|| panic!("a probed size in {basis:?}"));
    let (number, unit) = text.split_once(' ').unwrap();
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other} in {basis:?}"),
    };
    number.parse::<f64>().unwrap() * scale
}

fn assert_planned_from(duration: &serde_json::Value, reported: f64) {
    assert_eq!(duration["source"], "probed", "{duration}");
    let basis = duration["basis"].as_str().unwrap();
    let probed = probed_bytes(basis);
    assert!(
        (probed - reported).abs() <= reported * 0.05,
        "planned from {probed} bytes, the server reports {reported}: {basis}"
    );
    // The bulk copy over 100 Mbit/s, then at least 10 s of final verification.
    let seconds = duration["seconds"].as_f64().unwrap();
    assert!(seconds >= probed * 8.0 / 100e6 * 0.95 + 10.0, "{duration}");
}

#[test]
#[ignore = "needs PostgreSQL (run by .ci/run)"]
fn plan_probe_sizes_a_postgres_source_from_the_server() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["pg-old", "pg-new", "old", "new"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let settings = [("wal_level", "logical")];
    let old = LocalPostgres::start(
        &dir.path().join("pg-old"),
        free_port().unwrap(),
        PASSWORD,
        &settings,
    )
    .unwrap();
    let new = LocalPostgres::start(
        &dir.path().join("pg-new"),
        free_port().unwrap(),
        PASSWORD,
        &settings,
    )
    .unwrap();
    for server in [&old, &new] {
        server.psql("postgres", "CREATE DATABASE app").unwrap();
    }
    old.psql_script(
        "app",
        "CREATE TABLE t (id bigint PRIMARY KEY, body text);\n\
         INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 100000) g;",
    )
    .unwrap();
    let reported: f64 = old
        .psql("app", "SELECT pg_database_size('app')")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    runbook(dir.path(), "postgres", "postgres", old.port(), new.port());
    assert_planned_from(&planned_sync(dir.path()), reported);
}

#[test]
#[ignore = "needs MariaDB (run by .ci/run)"]
fn plan_probe_sizes_a_mariadb_source_from_the_server() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["my-old", "my-new", "old", "new"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let old = LocalMariadb::start(
        &dir.path().join("my-old"),
        free_port().unwrap(),
        1,
        PASSWORD,
        &[],
    )
    .unwrap();
    let new = LocalMariadb::start(
        &dir.path().join("my-new"),
        free_port().unwrap(),
        2,
        PASSWORD,
        &[],
    )
    .unwrap();
    for server in [&old, &new] {
        server.sql("CREATE DATABASE app").unwrap();
    }
    old.sql_script(
        "USE app;\n\
         CREATE TABLE t (id BIGINT PRIMARY KEY, body TEXT);\n\
         INSERT INTO t SELECT seq, REPEAT(MD5(seq), 8) FROM seq_1_to_100000;\n\
         ANALYZE TABLE t;",
    )
    .unwrap();
    let reported: f64 = old
        .sql(
            "SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = 'app'",
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    runbook(
        dir.path(),
        "mysql",
        MARIADB_SUPERUSER,
        old.port(),
        new.port(),
    );
    assert_planned_from(&planned_sync(dir.path()), reported);
}
