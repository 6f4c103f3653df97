//! MariaDB preflight against real servers (Debian's `mariadb-server`),
//! started by the test in its own folder on free ports, as the `mysql`
//! user when run as root. `#[ignore]`: `.ci/run` runs it.

use cutover_db::local::{LocalMariadb, MARIADB_SUPERUSER, free_port};
use cutover_db::{DbError, mysql};

const PASSWORD: &str = "maria-test-Secret-2718";

fn server(dir: &std::path::Path, name: &str, id: u32, settings: &[(&str, &str)]) -> LocalMariadb {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let server = LocalMariadb::start(&dir, free_port().unwrap(), id, PASSWORD, settings).unwrap();
    server.sql("CREATE DATABASE shop").unwrap();
    server
}

fn settings(err: &DbError) -> Vec<String> {
    let DbError::Preflight(problems) = err else {
        panic!("{err}")
    };
    problems.iter().map(|p| p.setting.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
async fn preflight_names_binlog_server_id_privileges_and_a_refused_login() {
    let dir = tempfile::tempdir().unwrap();
    let good = server(dir.path(), "good", 1, &[]);
    let other = server(dir.path(), "other", 2, &[]);
    let root = |s: &LocalMariadb| s.server("shop", MARIADB_SUPERUSER, Some(PASSWORD));
    mysql::preflight(&root(&good), &root(&other)).await.unwrap();

    // Statement-based binary log, and the same server_id on both sides.
    let statement = server(
        dir.path(),
        "statement",
        2,
        &[("binlog-format", "STATEMENT")],
    );
    let err = mysql::preflight(&root(&statement), &root(&other))
        .await
        .unwrap_err();
    let found = settings(&err);
    assert!(found.contains(&"binlog_format".to_string()), "{found:?}");
    assert!(found.contains(&"server_id".to_string()), "{found:?}");
    assert!(err.to_string().contains("binlog_format = ROW"), "{err}");

    // No binary log at all.
    let no_log = server(dir.path(), "nolog", 3, &[("skip-log-bin", "1")]);
    let found = settings(
        &mysql::preflight(&root(&no_log), &root(&other))
            .await
            .unwrap_err(),
    );
    assert!(found.contains(&"log_bin".to_string()), "{found:?}");

    // A user that may read but not replicate.
    good.sql("CREATE USER plain@'127.0.0.1' IDENTIFIED BY 'plain-pass-1'; GRANT SELECT ON *.* TO plain@'127.0.0.1'").unwrap();
    other.sql("CREATE USER plain@'127.0.0.1' IDENTIFIED BY 'plain-pass-1'; GRANT SELECT ON *.* TO plain@'127.0.0.1'").unwrap();
    let plain = |s: &LocalMariadb| s.server("shop", "plain", Some("plain-pass-1"));
    let found = settings(
        &mysql::preflight(&plain(&good), &plain(&other))
            .await
            .unwrap_err(),
    );
    assert!(
        found.contains(&"the REPLICATION SLAVE privilege".to_string()),
        "{found:?}"
    );
    assert!(
        found.contains(&"the REPLICATION SLAVE ADMIN privilege".to_string()),
        "{found:?}"
    );
    assert!(
        !found.contains(&"the SELECT privilege".to_string()),
        "{found:?}"
    );

    // A wrong password: the login is named, the password is not shown.
    let wrong = good.server("shop", MARIADB_SUPERUSER, Some("not-the-password-42"));
    let err = mysql::preflight(&wrong, &root(&other)).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("the login of user `root`"), "{text}");
    assert!(
        !text.contains("not-the-password-42") && !text.contains(PASSWORD),
        "{text}"
    );
}

/// Replication end to end at the library's level: a copy with a writer
/// running, caught up by GTID, compared equal with auto-increments; a copy
/// cut short resumes without a second copy; a row changed behind the
/// replication's back is named with its key range; stop removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
async fn replication_copies_catches_up_by_gtid_and_compares_in_chunks() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let old = server(dir.path(), "old", 1, &[]);
    let new = server(dir.path(), "new", 2, &[]);
    old.sql(
        "USE shop; CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(40) NOT NULL, qty INT, note TEXT, raw VARBINARY(8), at TIMESTAMP NULL, KEY (item));
         CREATE TABLE parts (o INT, n INT, what VARCHAR(20), PRIMARY KEY (o, n));
         CREATE TABLE loose (x INT, y VARCHAR(10));
         INSERT INTO orders (item, qty, note, raw, at) SELECT CONCAT('item ', seq), seq % 7, IF(seq % 5 = 0, NULL, REPEAT('n''\\\\', 3)), UNHEX('00FF10'), '2026-01-02 03:04:05' FROM seq_1_to_20000;
         INSERT INTO parts SELECT seq DIV 3, seq % 3, 'w' FROM seq_1_to_3000;
         INSERT INTO loose VALUES (1, 'a'), (2, NULL);
         INSERT INTO orders (item) VALUES ('gone'); DELETE FROM orders WHERE item = 'gone';",
    )
    .unwrap();
    let root = |s: &LocalMariadb| s.server("shop", MARIADB_SUPERUSER, Some(PASSWORD));
    let name = cutover_db::replication_name("sync");
    let mut writer = old.session("shop").unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    for n in 0..200 {
        writeln!(stdin, "INSERT INTO orders (item, qty) VALUES ('live {n}', {n}); UPDATE orders SET qty = qty + 1 WHERE id = {};", 1 + n * 37).unwrap();
    }
    let started = mysql::start(&root(&old), &root(&old), &root(&new), &name, &|_| {})
        .await
        .unwrap();
    assert!(
        started.replica_created && !started.copy_resumed,
        "{started:?}"
    );
    assert_eq!((started.tables, started.tables_created), (3, 3));
    for n in 200..400 {
        writeln!(stdin, "INSERT INTO orders (item, qty) VALUES ('live {n}', {n}); DELETE FROM parts WHERE o = {};", n % 900).unwrap();
    }
    drop(stdin);
    assert!(writer.wait().unwrap().success());
    let mut caught_up = false;
    for _ in 0..300 {
        let lag = mysql::lag(&root(&old), &root(&new), &name)
            .await
            .unwrap()
            .unwrap();
        if lag.caught_up() {
            caught_up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(caught_up, "caught up by GTID within 30 s");
    let values = mysql::copy_auto_increments(&root(&old), &root(&new))
        .await
        .unwrap();
    assert!(
        values
            .iter()
            .any(|v| v.sequence == "shop.orders AUTO_INCREMENT"),
        "{values:?}"
    );
    let comparison = mysql::compare(&root(&old), &root(&new), 1000)
        .await
        .unwrap();
    assert!(comparison.equal(), "{comparison:?}");
    assert_eq!(comparison.tables.len(), 3);
    assert!(
        comparison
            .warnings
            .iter()
            .any(|w| w.contains("shop.loose has no primary key"))
    );
    assert_eq!(
        old.sql("SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_NAME = 'orders'")
            .unwrap(),
        new.sql("SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_NAME = 'orders'")
            .unwrap()
    );

    // A row changed behind replication's back (not logged, so not sent on).
    new.sql("SET SESSION sql_log_bin = 0; UPDATE shop.orders SET note = 'changed' WHERE id = 4242")
        .unwrap();
    let comparison = mysql::compare(&root(&old), &root(&new), 1000)
        .await
        .unwrap();
    assert_eq!(comparison.differences.len(), 1, "{comparison:?}");
    assert_eq!(comparison.differences[0].table, "shop.orders");
    assert_eq!(comparison.differences[0].range, "(4241, 4242] of (id)");

    // Started again: found running, nothing copied twice.
    let again = mysql::start(&root(&old), &root(&old), &root(&new), &name, &|_| {})
        .await
        .unwrap();
    assert!(
        !again.replica_created && again.rows_copied == 0,
        "{again:?}"
    );

    mysql::stop(&root(&new), &name).await.unwrap();
    assert!(!mysql::is_replicating(&root(&new), &name).await.unwrap());
    assert_eq!(new.sql("SHOW ALL SLAVES STATUS").unwrap(), "");
}
