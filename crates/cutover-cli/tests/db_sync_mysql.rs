//! `db.sync mysql` through the real `cutover run`: replication of MariaDB
//! is not built yet, but preflight logs in to both servers (Debian's
//! `mariadb-server`, started by the test in its own folder on free ports)
//! and names every missing replication setting before saying so; nothing
//! runs and no state file is written. `#[ignore]`: `.ci/run` runs it.

use cutover_db::local::{LocalMariadb, free_port};
use std::process::{Command, Stdio};

const PASSWORD: &str = "Maria-secret-1618";

#[test]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
fn preflight_names_the_missing_settings_and_says_mysql_is_not_built() {
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, id: u32, settings: &[(&str, &str)]| {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let server =
            LocalMariadb::start(&folder, free_port().unwrap(), id, PASSWORD, settings).unwrap();
        server.sql("CREATE DATABASE shop").unwrap();
        server
    };
    let old = start("old", 7, &[("binlog-format", "MIXED")]);
    let new = start("new", 7, &[]);
    std::fs::write(
        dir.path().join("shop.runbook"),
        format!(
            "runbook shop\n\nhost db-old addr 127.0.0.1 via local ./old\nhost db-new addr 127.0.0.1 via local ./new\n\n\
             step sync\n  db.sync mysql db-old:{}/shop user root password env:OLD_DB_PW -> db-new:{}/shop user root password env:NEW_DB_PW\n",
            old.port(),
            new.port()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(dir.path())
        .args(["run", "shop.runbook"])
        .env("OLD_DB_PW", PASSWORD)
        .env("NEW_DB_PW", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("binlog_format is `MIXED`") && err.contains("binlog_format = ROW"),
        "{err}"
    );
    assert!(
        err.contains("server_id is 7, the same as the source's"),
        "{err}"
    );
    assert!(
        err.contains("replication of MariaDB/MySQL is not built yet"),
        "{err}"
    );
    assert!(err.contains("nothing was run"), "{err}");
    assert!(!err.contains(PASSWORD) && !String::from_utf8_lossy(&out.stdout).contains(PASSWORD));
    assert!(!dir.path().join(".cutover/shop.db").exists());
}
