//! `db.sync mysql` through the real `cutover run`, against real MariaDB
//! servers (Debian's `mariadb-server`) started by each test in its own
//! folder on free ports, as the `mysql` user when run as root.
//! `#[ignore]`: `.ci/run` runs them.
//!
//! - a writer keeps writing (200 statements a second) during the copy and
//!   the catch-up; the coordinator is SIGKILLed once during the initial
//!   copy and once while it waits for the freeze gate; the first resume
//!   finishes the same copy (rows already written stay, no second copy),
//!   the second continues the same replica; after the gate the step
//!   verifies with equal rows, checksums and auto-increment values
//!   (checked here with the server's own `CHECKSUM TABLE`), and the
//!   replica is removed;
//! - a row changed on the destination behind cutover's back fails the step
//!   naming the table and the key range;
//! - a wrong password, a missing privilege, `log_bin` off, `binlog_format`
//!   not ROW and a shared `server_id` stop the run at preflight, naming the
//!   setting; so do what an `undo` that replicates back needs on the new
//!   side (as the source) and on the old side (as the destination), said
//!   to be for the undo;
//! - `db.unfollow` ends an undo's fallback window: the old side no longer
//!   follows, its evidence says what was removed, rollback refuses the
//!   undo naming the step that ended the window;
//! - no password appears in any output, the state file or the export.
//!
//! `CUTOVER_DB_TEST_ROWS` sets the rows of the big table (default 100,000,
//! about 27 MB: the copy runs in this debug build).

mod support;

use cutover_db::local::{LocalMariadb, free_port};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::Duration;
use support::db::{Cutover, LIMIT, Writer, assert_no_password, kill_group, wait_bounded, wait_for};

const OLD_PASSWORD: &str = "Old-Maria-secret-7731";
const NEW_PASSWORD: &str = "New-Maria-secret-2290";

struct Lab {
    dir: tempfile::TempDir,
    old: LocalMariadb,
    new: LocalMariadb,
}

fn start(
    dir: &Path,
    name: &str,
    id: u32,
    password: &str,
    settings: &[(&str, &str)],
) -> LocalMariadb {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let server =
        LocalMariadb::start(&folder, free_port().unwrap(), id, password, settings).unwrap();
    server.sql("CREATE DATABASE shop").unwrap();
    server
}

fn lab(old_settings: &[(&str, &str)], new_id: u32) -> Lab {
    lab_with(old_settings, new_id, &[])
}

/// Two servers, each with its own settings.
fn lab_with(old_settings: &[(&str, &str)], new_id: u32, new_settings: &[(&str, &str)]) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["old", "new"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let old = start(dir.path(), "db-old", 1, OLD_PASSWORD, old_settings);
    let new = start(dir.path(), "db-new", new_id, NEW_PASSWORD, new_settings);
    std::fs::write(dir.path().join("new.pw"), format!("{NEW_PASSWORD}\n")).unwrap();
    Lab { dir, old, new }
}

impl Lab {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn runbook(&self, user: &str, freeze: bool) {
        let text = format!(
            "runbook shopmove\n\n\
             host db-old addr 127.0.0.1 via local ./old\n\
             host db-new addr 127.0.0.1 via local ./new\n\n\
             step sync\n  db.sync mysql db-old:{}/shop user {user} password env:OLD_DB_PW -> db-new:{}/shop user root password file:new.pw{}\n  timeout 20m\n\n\
             {}\
             step switch after sync\n  exec \"true\"\n",
            self.old.port(),
            self.new.port(),
            if freeze { " freeze freeze" } else { "" },
            if freeze {
                "step freeze\n  manual \"stop the writers\"\n\n"
            } else {
                ""
            },
        );
        std::fs::write(self.path().join("shopmove.runbook"), text).unwrap();
    }

    fn cutover(&self) -> Cutover {
        Cutover {
            dir: self.path().to_owned(),
            env: ("OLD_DB_PW", OLD_PASSWORD),
            runbook: "shopmove.runbook",
        }
    }

    fn finish(&self, args: &[&str], outputs: &mut String) -> (ExitStatus, String, String) {
        self.cutover().finish(args, outputs)
    }

    fn spawn_run(&self, log: &Path) -> Child {
        self.cutover().spawn_run(log)
    }

    /// The destination's replica connection: (IO thread, SQL thread), or
    /// None when there is none.
    fn replica(&self) -> Option<(String, String)> {
        let text = self.new.sql("SHOW ALL SLAVES STATUS").unwrap();
        let line = text.lines().next()?;
        let fields: Vec<&str> = line.split('\t').collect();
        // Connection_name, Slave_SQL_State, Slave_IO_State, Master_Host,
        // ..., Slave_IO_Running is the 13th, Slave_SQL_Running the 14th.
        Some((fields[12].to_owned(), fields[13].to_owned()))
    }

    fn rows(&self, server: &LocalMariadb, table: &str) -> u64 {
        server
            .sql(&format!("SELECT COUNT(*) FROM shop.{table}"))
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn big_rows() -> u64 {
    std::env::var("CUTOVER_DB_TEST_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn seed(old: &LocalMariadb, rows: u64) {
    old.sql(&format!(
        "USE shop;
         CREATE TABLE accounts (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(60) NOT NULL, balance DECIMAL(12,2) DEFAULT 0, note TEXT, updated TIMESTAMP(6) NULL, KEY (name)) ENGINE=InnoDB;
         CREATE TABLE events (id INT AUTO_INCREMENT PRIMARY KEY, account BIGINT, kind VARCHAR(10), at DATETIME DEFAULT CURRENT_TIMESTAMP, FOREIGN KEY (account) REFERENCES accounts (id)) ENGINE=InnoDB;
         CREATE TABLE settings (k VARCHAR(20), n INT, v BLOB, PRIMARY KEY (k, n)) ENGINE=InnoDB;
         CREATE TABLE journal (line TEXT) ENGINE=InnoDB;
         INSERT INTO accounts (name, balance, note, updated) SELECT CONCAT('account ', seq), seq % 1000, REPEAT(MD5(seq), 4), '2026-05-01 10:00:00.123456' FROM seq_1_to_{rows};
         INSERT INTO events (account, kind) SELECT 1 + seq % {rows}, 'seed' FROM seq_1_to_{};
         INSERT INTO settings SELECT CONCAT('k', seq % 10), seq, UNHEX(MD5(seq)) FROM seq_1_to_100;
         INSERT INTO journal VALUES ('one'), ('two');
         INSERT INTO events (account, kind) VALUES (1, 'gone'); DELETE FROM events WHERE kind = 'gone';",
        rows / 3
    ))
    .unwrap();
}

/// The writer: inserts, updates and deletes on `server` at `per_second`.
fn writer(server: &LocalMariadb, rows: u64, per_second: u64) -> Writer {
    Writer::start(
        server.session("shop").unwrap(),
        per_second,
        move |n| match n % 4 {
            0 => format!("INSERT INTO accounts (name, note) VALUES ('new {n}', 'written live');\n"),
            1 => format!(
                "UPDATE accounts SET balance = balance + 1, updated = NOW(6) WHERE id = {};\n",
                1 + (n * 7919) % rows
            ),
            2 => format!(
                "INSERT INTO events (account, kind) VALUES ({}, 'live');\n",
                1 + n % rows
            ),
            _ => format!(
                "DELETE FROM events WHERE id = {};\n",
                1 + (n * 104_729) % (rows / 3)
            ),
        },
    )
}

fn export_step(lab: &Lab, outputs: &mut String) -> serde_json::Value {
    let (status, export, _) =
        lab.finish(&["export", "shopmove.runbook", "--format", "json"], outputs);
    assert!(status.success());
    let export: serde_json::Value = serde_json::from_str(&export).unwrap();
    let sync = export["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "sync")
        .unwrap()
        .clone();
    serde_json::json!({ "sync": sync, "sessions": export["sessions"] })
}

#[test]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
fn sync_with_a_writer_survives_two_kills_and_verifies_after_the_freeze() {
    let lab = lab(&[], 2);
    let rows = big_rows();
    seed(&lab.old, rows);
    lab.runbook("root", true);
    let mut outputs = String::new();
    let mut writer = writer(&lab.old, rows, 200);

    // First run: killed while the initial copy writes rows.
    let mut run = lab.spawn_run(&lab.path().join("run1.log"));
    wait_for(
        "the initial copy starts",
        Duration::from_secs(120),
        &lab.path().join("run1.log"),
        || lab.replica().is_some() && lab.rows(&lab.new, "accounts") > 0,
    );
    kill_group(&run);
    let _ = run.wait();
    let copied_before = lab.rows(&lab.new, "accounts");
    assert!(
        copied_before < rows,
        "killed during the initial copy ({copied_before} of {rows} rows)"
    );
    assert_eq!(
        lab.replica().map(|r| r.1),
        Some("No".to_string()),
        "the replica waits for the copy"
    );

    // Second run: finishes the same copy; killed while it waits for the
    // freeze gate (the replica applying the writer's changes).
    let mut run = lab.spawn_run(&lab.path().join("run2.log"));
    wait_for(
        "the replica starts",
        Duration::from_secs(120),
        &lab.path().join("run2.log"),
        || lab.replica().is_some_and(|r| r.1 == "Yes"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run waits for the freeze gate"
    );
    kill_group(&run);
    let _ = run.wait();
    // Where replication stands is said as it runs: copied, and the lag in
    // transactions (GTIDs compared), bytes and seconds.
    let log = std::fs::read_to_string(lab.path().join("run2.log")).unwrap();
    assert!(
        log.contains("sync: db-old:")
            && log.contains("4/4 tables copied")
            && log.contains(", lag ")
            && log.contains(" transactions"),
        "the lag is reported: {log}"
    );

    // Third run: the writers stop, the gate is confirmed, the step verifies.
    let mut run = lab.spawn_run(&lab.path().join("run3.log"));
    std::thread::sleep(Duration::from_secs(2));
    let written = writer.stop();
    assert!(
        written > 400,
        "the writer wrote during the sync ({written} statements)"
    );
    let (status, _, err) = lab.finish(&["confirm", "freeze", "shopmove.runbook"], &mut outputs);
    assert!(status.success(), "confirm: {err}");
    let status = wait_bounded(&mut run, LIMIT);
    for log in ["run1.log", "run2.log", "run3.log"] {
        outputs.push_str(&std::fs::read_to_string(lab.path().join(log)).unwrap());
    }
    assert!(status.success(), "the resumed run completes: {outputs}");

    // Equal by the server's own checksum; equal counters; replica removed.
    for table in ["accounts", "events", "settings", "journal"] {
        let sql =
            format!("SELECT COUNT(*) FROM shop.{table}; CHECKSUM TABLE shop.{table} EXTENDED");
        assert_eq!(
            lab.old.sql(&sql).unwrap(),
            lab.new.sql(&sql).unwrap(),
            "{table}"
        );
        let sql = format!(
            "SELECT IFNULL(AUTO_INCREMENT, 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = '{table}'"
        );
        assert_eq!(
            lab.old.sql(&sql).unwrap(),
            lab.new.sql(&sql).unwrap(),
            "{table}"
        );
    }
    assert_eq!(lab.replica(), None, "the replica is removed");

    let step = export_step(&lab, &mut outputs);
    let acts: Vec<&str> = step["sync"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["phase"] == "act")
        .map(|e| e["summary"].as_str().unwrap())
        .collect();
    // The killed act recorded nothing; the resumed one finished the copy
    // with the rows not copied before, and none again.
    assert_eq!(acts.len(), 1, "one act: {acts:?}");
    assert!(
        acts[0].contains("its copy was cut short and is finished now"),
        "{acts:?}"
    );
    let act = step["sync"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["phase"] == "act")
        .unwrap();
    let more = act["data"]["rows_copied"].as_u64().unwrap();
    // The source never held more rows than seeded and written since.
    let most = rows + rows / 3 + 100 + 2 + written;
    assert!(
        more + copied_before <= most,
        "no second copy: {more} rows after the {copied_before} kept (at most {most} in all)"
    );
    let sessions = step["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[2]["end"], "completed");
    let verified = step["sync"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["phase"] == "verify")
        .unwrap();
    let summary = verified["summary"].as_str().unwrap();
    assert!(
        summary.contains("4 tables")
            && summary.contains("match by row count and checksum")
            && summary.contains("(1 warnings)")
            && summary.contains("2 auto-increment values copied")
            && summary.contains("replication `cutover_sync` removed"),
        "{summary}"
    );
    let (status, _, _) = lab.finish(&["status", "shopmove.runbook"], &mut outputs);
    assert!(status.success());
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}

#[test]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
fn a_row_changed_on_the_destination_fails_the_step_with_its_key_range() {
    let lab = lab(&[], 2);
    seed(&lab.old, 5_000);
    lab.runbook("root", true);
    let mut outputs = String::new();
    let mut run = lab.spawn_run(&lab.path().join("run.log"));
    wait_for(
        "the replica starts",
        Duration::from_secs(120),
        &lab.path().join("run.log"),
        || lab.replica().is_some_and(|r| r.1 == "Yes"),
    );
    lab.new
        .sql("SET SESSION sql_log_bin = 0; UPDATE shop.accounts SET note = 'changed behind our back' WHERE id = 4242")
        .unwrap();
    let (status, _, err) = lab.finish(&["confirm", "freeze", "shopmove.runbook"], &mut outputs);
    assert!(status.success(), "confirm: {err}");
    let status = wait_bounded(&mut run, LIMIT);
    outputs.push_str(&std::fs::read_to_string(lab.path().join("run.log")).unwrap());
    assert_eq!(status.code(), Some(1), "the step fails: {outputs}");
    let (_, export, _) = lab.finish(
        &["export", "shopmove.runbook", "--format", "json"],
        &mut outputs,
    );
    assert!(
        export.contains("shop.accounts: rows with key in (4241, 4242] of (id) differ"),
        "the difference is named: {export}"
    );
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}

#[test]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
fn preflight_names_the_setting_for_a_password_a_privilege_and_the_binary_log() {
    let mut outputs = String::new();
    let expect_refusal = |lab: &Lab, outputs: &mut String, needles: &[&str]| {
        let (status, _, err) = lab.finish(&["run", "shopmove.runbook"], outputs);
        assert_eq!(status.code(), Some(2), "{err}");
        for needle in needles {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert!(err.contains("nothing was run"), "{err}");
        assert!(
            !lab.path().join(".cutover/shopmove.db").exists(),
            "preflight failures write no state"
        );
    };

    // Statement-based binary log and the destination sharing the id.
    let lab_a = lab(&[("binlog-format", "MIXED")], 1);
    lab_a.runbook("root", false);
    expect_refusal(
        &lab_a,
        &mut outputs,
        &[
            "binlog_format is `MIXED`",
            "binlog_format = ROW",
            "server_id is 1, the same as the source's",
        ],
    );
    // `plan --probe` reads the same settings, without running anything.
    let (_, _, err) = lab_a.finish(&["plan", "shopmove.runbook", "--probe"], &mut outputs);
    assert!(
        err.contains("could not probe: preflight: step `sync`")
            && err.contains("binlog_format is `MIXED`"),
        "{err}"
    );
    drop(lab_a);

    // No binary log; then a user without REPLICATION SLAVE; then a wrong
    // password.
    let lab_b = lab(&[("skip-log-bin", "1")], 2);
    lab_b.runbook("root", false);
    expect_refusal(&lab_b, &mut outputs, &["log_bin is off", "add `log_bin`"]);
    lab_b
        .old
        .sql(&format!(
            "CREATE USER plain@'127.0.0.1' IDENTIFIED BY '{OLD_PASSWORD}'; GRANT SELECT ON *.* TO plain@'127.0.0.1'"
        ))
        .unwrap();
    lab_b.runbook("plain", false);
    expect_refusal(
        &lab_b,
        &mut outputs,
        &["the REPLICATION SLAVE privilege is missing for user `plain`"],
    );
    lab_b.runbook("nobody-here", false);
    expect_refusal(
        &lab_b,
        &mut outputs,
        &["the login of user `nobody-here` is refused"],
    );

    for password in [OLD_PASSWORD, NEW_PASSWORD] {
        assert!(!outputs.contains(password));
    }
}

/// A step whose `undo` replicates back needs on the new server what a
/// source needs and on the old one what a destination needs: with the new
/// server writing no binary log (and statement-based where it would) and
/// the undo's user on the old server without `REPLICATION SLAVE ADMIN`,
/// `run` and `plan --probe` name each as the undo's, with the line to
/// change, before anything runs; the same runbook without the undo passes.
#[test]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
fn preflight_checks_what_the_undo_s_replication_back_needs() {
    let lab = lab_with(&[], 2, &[("skip-log-bin", "1"), ("binlog-format", "MIXED")]);
    seed(&lab.old, 100);
    lab.old
        .sql(&format!(
            "CREATE USER plain@'127.0.0.1' IDENTIFIED BY '{OLD_PASSWORD}'; GRANT SELECT ON *.* TO plain@'127.0.0.1'"
        ))
        .unwrap();
    let (old, new) = (lab.old.port(), lab.new.port());
    let runbook = |undo: bool| {
        let text = format!(
            "runbook shopmove\n\n\
             host db-old addr 127.0.0.1 via local ./old\n\
             host db-new addr 127.0.0.1 via local ./new\n\n\
             step sync\n  db.sync mysql db-old:{old}/shop user root password env:OLD_DB_PW -> db-new:{new}/shop user root password file:new.pw freeze freeze\n{}\
             \x20 timeout 10m\n\n\
             step freeze\n  manual \"stop the writers\"\n",
            if undo {
                format!(
                    "  undo db.sync mysql db-new:{new}/shop user root password file:new.pw -> db-old:{old}/shop user plain password env:OLD_DB_PW\n"
                )
            } else {
                String::new()
            }
        );
        std::fs::write(lab.path().join("shopmove.runbook"), text).unwrap();
    };
    let mut outputs = String::new();

    // Forward alone, the servers have what it needs.
    runbook(false);
    let (_, _, err) = lab.finish(&["plan", "shopmove.runbook", "--probe"], &mut outputs);
    assert!(!err.contains("could not probe"), "{err}");

    runbook(true);
    let back = "for the undo (replication back, new -> old): ";
    let expected = [
        format!("root@127.0.0.1:{new}/shop: {back}log_bin is off (`OFF`): add `log_bin`"),
        format!(
            "root@127.0.0.1:{new}/shop: {back}binlog_format is `MIXED`: set `binlog_format = ROW`"
        ),
        format!(
            "plain@127.0.0.1:{old}/shop: {back}the REPLICATION SLAVE ADMIN privilege is missing for user `plain`"
        ),
    ];
    lab.cutover()
        .assert_preflight_refuses(&expected, &mut outputs);
    assert_eq!(
        lab.new
            .sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'")
            .unwrap(),
        "0",
        "nothing was copied"
    );
    for password in [OLD_PASSWORD, NEW_PASSWORD] {
        assert!(!outputs.contains(password));
    }
}

/// A step whose `undo` is its `db.sync` in reverse: once the step is done
/// the old server replicates from the new one, so rows written on the new
/// side after the cutover reach the old side; `cutover rollback` then
/// waits for them, compares and removes the replica connection back.
#[test]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
fn an_undo_replicating_back_brings_the_new_side_s_writes_to_the_old_side() {
    let lab = lab(&[], 2);
    seed(&lab.old, 3_000);
    let (old, new) = (lab.old.port(), lab.new.port());
    let text = format!(
        "runbook shopmove\n\n\
         host db-old addr 127.0.0.1 via local ./old\n\
         host db-new addr 127.0.0.1 via local ./new\n\n\
         step sync\n  db.sync mysql db-old:{old}/shop user root password env:OLD_DB_PW -> db-new:{new}/shop user root password file:new.pw freeze freeze\n\
         \x20 undo db.sync mysql db-new:{new}/shop user root password file:new.pw -> db-old:{old}/shop user root password env:OLD_DB_PW\n  timeout 10m\n\n\
         step freeze\n  exec \"true\"\n  undo exec \"true\"\n"
    );
    std::fs::write(lab.path().join("shopmove.runbook"), text).unwrap();
    let mut outputs = String::new();
    let (status, out, err) = lab.finish(&["run", "shopmove.runbook"], &mut outputs);
    assert!(status.success(), "run: {out}\n{err}");
    assert_eq!(lab.replica(), None, "replication forward is removed");
    assert!(
        lab.old
            .sql("SHOW ALL SLAVES STATUS")
            .unwrap()
            .starts_with("cutover_sync_back\t"),
        "the old side follows the new one"
    );
    let (_, export, _) = lab.finish(
        &["export", "shopmove.runbook", "--format", "json"],
        &mut outputs,
    );
    assert!(
        export.contains("replication back `cutover_sync_back` set up"),
        "the evidence says the fallback window is open: {export}"
    );

    lab.new
        .sql(
            "USE shop;
             INSERT INTO accounts (name, note) SELECT CONCAT('after ', seq), 'written on the new side' FROM seq_1_to_50;
             UPDATE accounts SET note = 'changed on the new side' WHERE id = 17;
             DELETE FROM events WHERE id = 3;",
        )
        .unwrap();
    let value = |server: &LocalMariadb, sql: &str| server.sql(sql).unwrap();
    let log = lab.path().join("rollback.log");
    wait_for(
        "the new side's writes reach the old side",
        Duration::from_secs(60),
        &log,
        || {
            value(
                &lab.old,
                "SELECT COUNT(*) FROM shop.accounts WHERE note = 'written on the new side'",
            ) == "50"
                && value(&lab.old, "SELECT note FROM shop.accounts WHERE id = 17")
                    == "changed on the new side"
                && value(&lab.old, "SELECT COUNT(*) FROM shop.events WHERE id = 3") == "0"
        },
    );

    let (status, out, err) = lab.finish(&["rollback", "shopmove.runbook", "--yes"], &mut outputs);
    assert!(status.success(), "rollback: {out}\n{err}");
    assert!(
        out.contains(
            "replication `cutover_sync_back` removed, the old database is independent again"
        ),
        "{out}"
    );
    assert_eq!(
        value(&lab.old, "SHOW ALL SLAVES STATUS"),
        "",
        "replication back is removed"
    );
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}

/// A lab whose old server holds a second database, `bugs` (3,000 rows),
/// beside the shop; the new server has it empty.
fn lab_with_bugs() -> Lab {
    let lab = lab(&[], 2);
    seed(&lab.old, 5_000);
    lab.old
        .sql("CREATE DATABASE bugs; USE bugs; CREATE TABLE bugs (id INT AUTO_INCREMENT PRIMARY KEY, title TEXT); INSERT INTO bugs (title) SELECT CONCAT('bug ', seq) FROM seq_1_to_3000")
        .unwrap();
    lab.new.sql("CREATE DATABASE bugs").unwrap();
    lab
}

/// Bugs filed on `server` at 50 a second.
fn bug_writer(server: &LocalMariadb) -> Writer {
    Writer::start(server.session("bugs").unwrap(), 50, |n| {
        format!("INSERT INTO bugs (title) VALUES ('filed live {n}');\n")
    })
}

/// Two databases of one server replicated to one server, as maemo-2013's
/// db VM does (the wiki's, then Bugzilla's): MariaDB takes one replica
/// connection from a server at a time, so the second step follows the
/// first (side by side, preflight refuses them). The first replicates
/// while both databases are written to, the
/// second copies once the freeze has stopped the writers; both verify and
/// both connections are removed.
#[test]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
fn two_databases_of_one_server_replicate_to_one_server_one_after_the_other() {
    let lab = lab_with_bugs();
    let (old, new) = (lab.old.port(), lab.new.port());
    let runbook = |order: &str, undo: bool| {
        let back = |name: &str| {
            if undo {
                format!(
                    "  undo db.sync mysql db-new:{new}/{name} user root password file:new.pw -> db-old:{old}/{name} user root password env:OLD_DB_PW\n"
                )
            } else {
                String::new()
            }
        };
        let text = format!(
            "runbook shopmove\n\n\
             host db-old addr 127.0.0.1 via local ./old\n\
             host db-new addr 127.0.0.1 via local ./new\n\n\
             step sync-shop\n  db.sync mysql db-old:{old}/shop user root password env:OLD_DB_PW -> db-new:{new}/shop user root password file:new.pw freeze freeze\n{}  timeout 10m\n\n\
             step sync-bugs{order}\n  db.sync mysql db-old:{old}/bugs user root password env:OLD_DB_PW -> db-new:{new}/bugs user root password file:new.pw freeze freeze\n{}  timeout 10m\n\n\
             step freeze\n  manual \"stop the writers\"\n",
            back("shop"),
            back("bugs"),
        );
        std::fs::write(lab.path().join("shopmove.runbook"), text).unwrap();
    };
    let mut outputs = String::new();
    // Side by side, preflight refuses them before anything runs.
    runbook("", false);
    lab.cutover().assert_preflight_refuses(
        &[format!(
            "preflight: step `sync-shop`: 127.0.0.1:{old} -> 127.0.0.1:{new}: replicates from the same server to the same server as step `sync-bugs`, and neither waits for the other: MariaDB takes one replica connection from a source; put `after sync-shop` on `sync-bugs`"
        )],
        &mut outputs,
    );
    // Two fallback windows between the same servers cannot both open.
    runbook(" after sync-shop", true);
    lab.cutover().assert_preflight_refuses(
        &[format!(
            "preflight: step `sync-shop`: 127.0.0.1:{new} -> 127.0.0.1:{old}: its undo replicates back between the same servers as the undo of step `sync-bugs`"
        )],
        &mut outputs,
    );
    runbook(" after sync-shop", false);
    let mut shop = writer(&lab.old, 5_000, 50);
    let mut bugs = bug_writer(&lab.old);
    let log = lab.path().join("run.log");
    let mut run = lab.spawn_run(&log);
    wait_for(
        "the first replica runs",
        Duration::from_secs(180),
        &log,
        || lab.replica().is_some_and(|r| r.1 == "Yes"),
    );
    std::thread::sleep(Duration::from_secs(2));
    shop.stop();
    bugs.stop();
    let (status, _, err) = lab.finish(&["confirm", "freeze", "shopmove.runbook"], &mut outputs);
    assert!(status.success(), "confirm: {err}");
    let status = wait_bounded(&mut run, LIMIT);
    outputs.push_str(&std::fs::read_to_string(&log).unwrap());
    assert!(status.success(), "run: {outputs}");
    assert_eq!(lab.replica(), None, "both replicas are removed");
    assert_eq!(
        lab.rows(&lab.old, "accounts"),
        lab.rows(&lab.new, "accounts")
    );
    let count = |server: &LocalMariadb| server.sql("SELECT COUNT(*) FROM bugs.bugs").unwrap();
    assert_eq!(count(&lab.old), count(&lab.new));
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}

/// cloud-2013's shape: the wiki's database cut over with its undo
/// replicating back (new to old) for the soak, then another database of
/// the old server replicated forward while the new side writes the first
/// and the old side the second: both directions between the same two
/// servers at once. Both steps verify, the new side's writes reach the
/// old side, and the replication back keeps running.
#[test]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
fn a_second_database_replicates_forward_while_the_first_replicates_back() {
    let lab = lab_with_bugs();
    let (old, new) = (lab.old.port(), lab.new.port());
    let db = |side: &str, port: u16, name: &str| {
        let password = if side == "old" {
            "env:OLD_DB_PW"
        } else {
            "file:new.pw"
        };
        format!("db-{side}:{port}/{name} user root password {password}")
    };
    let text = format!(
        "runbook shopmove\n\n\
         host db-old addr 127.0.0.1 via local ./old\n\
         host db-new addr 127.0.0.1 via local ./new\n\n\
         step sync-shop\n  db.sync mysql {} -> {} freeze freeze-shop\n  undo db.sync mysql {} -> {}\n  timeout 10m\n\n\
         step freeze-shop\n  manual \"stop the shop's writers\"\n\n\
         step sync-bugs after sync-shop\n  db.sync mysql {} -> {} freeze freeze-bugs\n  timeout 10m\n\n\
         step freeze-bugs after sync-shop\n  manual \"stop the bug tracker's writers\"\n",
        db("old", old, "shop"),
        db("new", new, "shop"),
        db("new", new, "shop"),
        db("old", old, "shop"),
        db("old", old, "bugs"),
        db("new", new, "bugs"),
    );
    std::fs::write(lab.path().join("shopmove.runbook"), text).unwrap();
    let mut shop = writer(&lab.old, 5_000, 50);
    let mut bugs = bug_writer(&lab.old);
    let mut outputs = String::new();
    let log = lab.path().join("run.log");
    let mut run = lab.spawn_run(&log);
    wait_for(
        "the shop's replica runs",
        Duration::from_secs(180),
        &log,
        || lab.replica().is_some_and(|r| r.1 == "Yes"),
    );
    shop.stop();
    let (status, _, err) = lab.finish(
        &["confirm", "freeze-shop", "shopmove.runbook"],
        &mut outputs,
    );
    assert!(status.success(), "confirm: {err}");
    // The shop now writes on the new side; the bug tracker still on the old.
    let connections = |server: &LocalMariadb| {
        server
            .sql("SHOW ALL SLAVES STATUS")
            .unwrap()
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                fields.get(12) == Some(&"Yes") && fields.get(13) == Some(&"Yes")
            })
            .map(|line| line.split('\t').next().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    wait_for(
        "the shop's replication back runs",
        Duration::from_secs(180),
        &log,
        || connections(&lab.old) == ["cutover_sync_shop_back"],
    );
    let mut shop = writer(&lab.new, 5_000, 50);
    wait_for(
        "the bug tracker's replica runs",
        Duration::from_secs(180),
        &log,
        || connections(&lab.new) == ["cutover_sync_bugs"],
    );
    std::thread::sleep(Duration::from_secs(2));
    bugs.stop();
    let (status, _, err) = lab.finish(
        &["confirm", "freeze-bugs", "shopmove.runbook"],
        &mut outputs,
    );
    assert!(status.success(), "confirm: {err}");
    let status = wait_bounded(&mut run, LIMIT);
    outputs.push_str(&std::fs::read_to_string(&log).unwrap());
    assert!(status.success(), "run: {outputs}");
    shop.stop();
    let count = |server: &LocalMariadb, table: &str| {
        server.sql(&format!("CHECKSUM TABLE {table}")).unwrap()
    };
    assert_eq!(count(&lab.old, "bugs.bugs"), count(&lab.new, "bugs.bugs"));
    wait_for(
        "the new side's writes reach the old side",
        Duration::from_secs(60),
        &log,
        || count(&lab.old, "shop.accounts") == count(&lab.new, "shop.accounts"),
    );
    assert_eq!(
        connections(&lab.old),
        ["cutover_sync_shop_back"],
        "the fallback window stays open"
    );
    assert_eq!(connections(&lab.new), Vec::<String>::new());
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}

/// `db.unfollow sync` ends the fallback window the undo opened: the
/// new side's writes reached the old side while it was open; once the step
/// is done the old server has no replica connection, a write on the new
/// side no longer arrives, the evidence says what was removed, and
/// `cutover rollback` refuses the db.sync's undo, saying the window ended
/// at that step, instead of setting the replica up again without the
/// writes made in between.
#[test]
#[ignore = "needs MariaDB (Debian mariadb-server); run by .ci/run"]
fn ending_the_fallback_window_stops_the_old_side_following_and_rollback_says_so() {
    let lab = lab(&[], 2);
    seed(&lab.old, 3_000);
    let (old, new) = (lab.old.port(), lab.new.port());
    let text = format!(
        "runbook shopmove\n\n\
         host db-old addr 127.0.0.1 via local ./old\n\
         host db-new addr 127.0.0.1 via local ./new\n\n\
         step sync\n  db.sync mysql db-old:{old}/shop user root password env:OLD_DB_PW -> db-new:{new}/shop user root password file:new.pw freeze freeze\n\
         \x20 undo db.sync mysql db-new:{new}/shop user root password file:new.pw -> db-old:{old}/shop user root password env:OLD_DB_PW\n  timeout 10m\n\n\
         step freeze\n  exec \"true\"\n  undo exec \"true\"\n\n\
         step stay after sync\n  manual \"the new side takes writes; we stay on it\"\n\n\
         step end-fallback after stay\n  db.unfollow sync\n"
    );
    std::fs::write(lab.path().join("shopmove.runbook"), text).unwrap();
    let mut outputs = String::new();
    let log = lab.path().join("run.log");
    let mut run = lab.spawn_run(&log);
    let value = |server: &LocalMariadb, sql: &str| server.sql(sql).unwrap();
    wait_for(
        "the fallback window opens",
        Duration::from_secs(120),
        &log,
        || value(&lab.old, "SHOW ALL SLAVES STATUS").starts_with("cutover_sync_back\t"),
    );
    lab.new
        .sql(
            "USE shop; INSERT INTO accounts (name, note) SELECT CONCAT('after ', seq), 'written on the new side' FROM seq_1_to_50",
        )
        .unwrap();
    wait_for(
        "the new side's writes reach the old side",
        Duration::from_secs(60),
        &log,
        || {
            value(
                &lab.old,
                "SELECT COUNT(*) FROM shop.accounts WHERE note = 'written on the new side'",
            ) == "50"
        },
    );
    let (status, _, err) = lab.finish(&["confirm", "stay", "shopmove.runbook"], &mut outputs);
    assert!(status.success(), "confirm: {err}");
    let status = wait_bounded(&mut run, LIMIT);
    outputs.push_str(&std::fs::read_to_string(&log).unwrap());
    assert!(status.success(), "the run completes: {outputs}");
    assert_eq!(
        value(&lab.old, "SHOW ALL SLAVES STATUS"),
        "",
        "the old side no longer follows"
    );
    lab.new
        .sql("INSERT INTO shop.accounts (name, note) VALUES ('late', 'written after the window')")
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        value(
            &lab.old,
            "SELECT COUNT(*) FROM shop.accounts WHERE note = 'written after the window'"
        ),
        "0",
        "a write on the new side no longer reaches the old side"
    );
    let (_, export, _) = lab.finish(
        &["export", "shopmove.runbook", "--format", "json"],
        &mut outputs,
    );
    assert!(
        export.contains(
            "replication back `cutover_sync_back` removed (the old server's replica connection)"
        ),
        "the act's evidence says what was removed: {export}"
    );
    assert!(
        export.contains("no replication back `cutover_sync_back` on db-old"),
        "the verification observed the old side: {export}"
    );

    let (status, out, err) = lab.finish(&["rollback", "shopmove.runbook", "--yes"], &mut outputs);
    assert!(
        !status.success(),
        "rollback cannot be complete: {out}\n{err}"
    );
    let said = format!("{out}\n{err}");
    assert!(
        said.contains("the fallback window of `sync` ended at step `end-fallback`"),
        "{said}"
    );
    assert!(
        said.contains("cannot bring back the writes made on the new side since"),
        "{said}"
    );
    assert_eq!(
        value(&lab.old, "SHOW ALL SLAVES STATUS"),
        "",
        "rollback does not set the replica up again"
    );
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}
