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
