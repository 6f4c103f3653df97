//! `db.sync postgres` through the real `cutover run`, against two real
//! PostgreSQL servers (Debian's `postgresql`) started by each test in its
//! own folder on free ports, as the `postgres` user when run as root.
//! `#[ignore]`: `.ci/run` runs them.
//!
//! - a writer keeps writing during the bulk copy and the catch-up; the
//!   coordinator is SIGKILLed once during the initial copy and once while
//!   it waits for the freeze gate; each resume continues the same
//!   subscription; after the gate the step verifies with equal rows,
//!   checksums and sequences, and replication is removed;
//! - a row changed on the destination behind cutover's back fails the step
//!   naming the table and the key range;
//! - a wrong password, a missing privilege and `wal_level = replica` stop
//!   the run at preflight, naming the setting; so do what an `undo` that
//!   replicates back needs on the new side (as the source) and on the old
//!   side (as the destination), said to be for the undo;
//! - `db.unfollow` ends an undo's fallback window: the old side no longer
//!   follows, its evidence says what was removed, rollback refuses the
//!   undo naming the step that ended the window; found half removed (an
//!   act cut short), it removes the rest;
//! - no password appears in any output, the state file or the export.
//!
//! `CUTOVER_DB_TEST_ROWS` sets the rows of the big table (default 300,000,
//! about 70 MB).

mod support;

use cutover_db::local::{LocalPostgres, free_port};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::db::{Cutover, LIMIT, Writer, assert_no_password, kill_group, wait_bounded, wait_for};

const OLD_PASSWORD: &str = "Old-PG-secret-9081";
const NEW_PASSWORD: &str = "New-PG-secret-5523";

struct Lab {
    dir: tempfile::TempDir,
    old: LocalPostgres,
    new: LocalPostgres,
}

fn lab(old_settings: &[(&str, &str)]) -> Lab {
    lab_with(old_settings, &[])
}

/// Two servers, each with its own settings.
fn lab_with(old_settings: &[(&str, &str)], new_settings: &[(&str, &str)]) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["pg-old", "pg-new", "old", "new"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let old = LocalPostgres::start(
        &dir.path().join("pg-old"),
        free_port().unwrap(),
        OLD_PASSWORD,
        old_settings,
    )
    .unwrap();
    let new = LocalPostgres::start(
        &dir.path().join("pg-new"),
        free_port().unwrap(),
        NEW_PASSWORD,
        new_settings,
    )
    .unwrap();
    old.psql("postgres", "CREATE DATABASE app").unwrap();
    new.psql("postgres", "CREATE DATABASE app").unwrap();
    std::fs::write(dir.path().join("new.pw"), format!("{NEW_PASSWORD}\n")).unwrap();
    Lab { dir, old, new }
}

impl Lab {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn runbook(&self, user: &str, freeze: bool) {
        let text = format!(
            "runbook dbmove\n\n\
             host db-old addr 127.0.0.1 via local ./old\n\
             host db-new addr 127.0.0.1 via local ./new\n\n\
             step sync\n  db.sync postgres db-old:{}/app user {user} password env:OLD_PG_PW -> db-new:{}/app user postgres password file:new.pw{}\n  timeout 20m\n\n\
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
        std::fs::write(self.path().join("dbmove.runbook"), text).unwrap();
    }

    fn runner(&self) -> Cutover {
        Cutover {
            dir: self.path().to_owned(),
            env: ("OLD_PG_PW", OLD_PASSWORD),
            runbook: "dbmove.runbook",
        }
    }

    fn cutover(&self, args: &[&str]) -> Command {
        self.runner().command(args)
    }

    fn finish(&self, args: &[&str], outputs: &mut String) -> (ExitStatus, String, String) {
        self.runner().finish(args, outputs)
    }

    fn spawn_run(&self, log: &Path) -> Child {
        self.runner().spawn_run(log)
    }

    /// (tables not ready, tables) of the destination's subscription.
    fn subscription_tables(&self) -> (u64, u64) {
        let text = self
            .new
            .psql("app", "SELECT count(*) FILTER (WHERE srsubstate <> 'r') || ' ' || count(*) FROM pg_subscription_rel")
            .unwrap();
        let mut parts = text.split(' ').map(|p| p.parse::<u64>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    }

    fn subscription_oid(&self) -> String {
        self.new
            .psql(
                "app",
                "SELECT coalesce(string_agg(oid::text, ','), '') FROM pg_subscription",
            )
            .unwrap()
    }
}

fn rows() -> u64 {
    std::env::var("CUTOVER_DB_TEST_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000)
}

fn seed(old: &LocalPostgres, rows: u64) {
    old.psql(
        "app",
        &format!(
            "CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, balance numeric(12,2) DEFAULT 0, note text, updated timestamptz DEFAULT now());
             CREATE INDEX accounts_name ON accounts (name);
             CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, account bigint REFERENCES accounts (id), kind text, at timestamptz DEFAULT now());
             CREATE TABLE settings (key text PRIMARY KEY, value jsonb);
             CREATE SEQUENCE invoice_numbers START 1000;
             INSERT INTO accounts (name, balance, note) SELECT 'account ' || g, g % 1000, repeat(md5(g::text), 4) FROM generate_series(1, {rows}) g;
             INSERT INTO events (account, kind) SELECT 1 + g % {rows}, 'seed' FROM generate_series(1, {}) g;
             INSERT INTO settings SELECT 'k' || g, jsonb_build_object('n', g) FROM generate_series(1, 100) g;
             SELECT nextval('invoice_numbers') FROM generate_series(1, 7);",
            rows / 3
        ),
    )
    .unwrap();
}

/// The writer: inserts, updates and sequence calls on `server` at
/// `per_second`.
fn writer(server: &LocalPostgres, rows: u64, per_second: u64) -> Writer {
    Writer::start(
        server.psql_session("app").unwrap(),
        per_second,
        move |n| match n % 4 {
            0 => format!("INSERT INTO accounts (name, note) VALUES ('new {n}', 'written live');\n"),
            1 => format!(
                "UPDATE accounts SET balance = balance + 1, updated = now() WHERE id = {};\n",
                1 + (n * 7919) % rows
            ),
            2 => format!(
                "INSERT INTO events (account, kind) VALUES ({}, 'live');\n",
                1 + n % rows
            ),
            _ => "SELECT nextval('invoice_numbers');\n".to_string(),
        },
    )
}

#[test]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
fn sync_with_a_writer_survives_two_kills_and_verifies_after_the_freeze() {
    let lab = lab(&[]);
    let rows = rows();
    seed(&lab.old, rows);
    lab.runbook("postgres", true);
    let mut outputs = String::new();
    let mut writer = writer(&lab.old, rows, 200);

    // First run: killed while the initial copy runs.
    let mut run = lab.spawn_run(&lab.path().join("run1.log"));
    wait_for(
        "the initial copy starts",
        Duration::from_secs(120),
        &lab.path().join("run1.log"),
        || {
            let (copying, tables) = lab.subscription_tables();
            tables > 0 && copying > 0
        },
    );
    let subscription = lab.subscription_oid();
    kill_group(&run);
    let _ = run.wait();
    assert!(
        lab.subscription_tables().0 > 0,
        "killed during the initial copy"
    );

    // Second run: continues the same subscription; killed while it waits
    // for the freeze gate (everything copied, the writer still writing).
    let mut run = lab.spawn_run(&lab.path().join("run2.log"));
    wait_for(
        "the initial copy ends",
        Duration::from_secs(300),
        &lab.path().join("run2.log"),
        || lab.subscription_tables().0 == 0,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run waits for the freeze gate"
    );
    assert_eq!(
        lab.subscription_oid(),
        subscription,
        "the same subscription, no second copy"
    );
    kill_group(&run);
    let _ = run.wait();

    // Third run: the writers stop, the gate is confirmed, the step verifies.
    let mut run = lab.spawn_run(&lab.path().join("run3.log"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lab.subscription_oid(),
        subscription,
        "the same subscription, no second copy"
    );
    let written = writer.stop();
    assert!(
        written > 400,
        "the writer wrote during the sync ({written} statements)"
    );
    let frozen = Instant::now();
    let (status, _, err) = lab.finish(&["confirm", "freeze", "dbmove.runbook"], &mut outputs);
    assert!(status.success(), "confirm: {err}");
    let status = wait_bounded(&mut run, LIMIT);
    let verified = frozen.elapsed();
    for log in ["run1.log", "run2.log", "run3.log"] {
        outputs.push_str(&std::fs::read_to_string(lab.path().join(log)).unwrap());
    }
    assert!(status.success(), "the resumed run completes: {outputs}");
    eprintln!(
        "freeze confirmed -> run completed: {:.1} s",
        verified.as_secs_f64()
    );

    // Equal rows and sequences; replication removed.
    for table in ["accounts", "events", "settings"] {
        let sql = format!(
            "SELECT count(*) || ' ' || md5(string_agg(md5(t::text), '' ORDER BY 1)) FROM (SELECT * FROM {table} ORDER BY 1) t"
        );
        assert_eq!(
            lab.old.psql("app", &sql).unwrap(),
            lab.new.psql("app", &sql).unwrap(),
            "{table}"
        );
    }
    for sequence in ["invoice_numbers", "accounts_id_seq", "events_id_seq"] {
        let sql = format!("SELECT last_value FROM {sequence}");
        assert_eq!(
            lab.old.psql("app", &sql).unwrap(),
            lab.new.psql("app", &sql).unwrap(),
            "{sequence}"
        );
    }
    assert_eq!(lab.subscription_oid(), "", "the subscription is removed");
    assert_eq!(
        lab.old
            .psql("app", "SELECT count(*) FROM pg_publication")
            .unwrap(),
        "0"
    );
    assert_eq!(
        lab.old
            .psql("app", "SELECT count(*) FROM pg_replication_slots")
            .unwrap(),
        "0"
    );

    let (status, export, _) = lab.finish(
        &["export", "dbmove.runbook", "--format", "json"],
        &mut outputs,
    );
    assert!(status.success());
    // One act set replication up; the resumes continued it (an act
    // repeated after a kill says so, and sets nothing up again).
    if let Ok(keep) = std::env::var("CUTOVER_DB_TEST_KEEP") {
        std::fs::write(keep, &export).unwrap();
    }
    let export: serde_json::Value = serde_json::from_str(&export).unwrap();
    let sync = export["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "sync")
        .unwrap();
    let acts: Vec<&str> = sync["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["phase"] == "act")
        .map(|e| e["summary"].as_str().unwrap())
        .collect();
    assert_eq!(acts.len(), 1, "one act: {acts:?}");
    assert!(
        acts[0].contains("replication `cutover_sync` set up for 3 tables"),
        "{acts:?}"
    );
    let sessions = export["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[0]["end"], "crashed");
    assert_eq!(sessions[1]["end"], "crashed");
    assert_eq!(sessions[2]["end"], "completed");
    let verified = sync["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["phase"] == "verify")
        .unwrap();
    let summary = verified["summary"].as_str().unwrap();
    assert!(
        summary.contains("match by row count and checksum")
            && summary.contains("3 sequences copied"),
        "{summary}"
    );
    assert!(
        summary.contains("replication `cutover_sync` removed"),
        "{summary}"
    );
    let (status, _, _) = lab.finish(&["status", "dbmove.runbook"], &mut outputs);
    assert!(status.success());
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}

#[test]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
fn a_row_changed_on_the_destination_fails_the_step_with_its_key_range() {
    let lab = lab(&[]);
    seed(&lab.old, 5_000);
    lab.runbook("postgres", true);
    let mut outputs = String::new();
    let mut run = lab.spawn_run(&lab.path().join("run.log"));
    wait_for(
        "the initial copy ends",
        Duration::from_secs(120),
        &lab.path().join("run.log"),
        || {
            let (copying, tables) = lab.subscription_tables();
            tables == 3 && copying == 0
        },
    );
    lab.new
        .psql(
            "app",
            "UPDATE accounts SET note = 'changed behind our back' WHERE id = 4242",
        )
        .unwrap();
    let (status, _, err) = lab.finish(&["confirm", "freeze", "dbmove.runbook"], &mut outputs);
    assert!(status.success(), "confirm: {err}");
    let status = wait_bounded(&mut run, LIMIT);
    outputs.push_str(&std::fs::read_to_string(lab.path().join("run.log")).unwrap());
    assert_eq!(status.code(), Some(1), "the step fails: {outputs}");
    let (_, export, _) = lab.finish(
        &["export", "dbmove.runbook", "--format", "json"],
        &mut outputs,
    );
    assert!(
        export.contains("public.accounts: rows with key in (4241, 4242] of (id) differ"),
        "the difference is named: {export}"
    );
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}

#[test]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
fn preflight_names_the_setting_for_a_password_a_privilege_and_wal_level() {
    let lab = lab(&[("wal_level", "replica")]);
    seed(&lab.old, 100);
    lab.old
        .psql("app", &format!("CREATE ROLE plain LOGIN PASSWORD '{OLD_PASSWORD}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO plain"))
        .unwrap();
    let mut outputs = String::new();

    lab.runbook("postgres", false);
    let (status, _, err) = lab.finish(&["run", "dbmove.runbook"], &mut outputs);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("wal_level is `replica`") && err.contains("wal_level = logical"),
        "{err}"
    );
    assert!(err.contains("nothing was run"), "{err}");
    // `plan --probe` reads the same settings, without running anything.
    let (_, _, err) = lab.finish(&["plan", "dbmove.runbook", "--probe"], &mut outputs);
    assert!(
        err.contains("could not probe: preflight: step `sync`")
            && err.contains("wal_level is `replica`"),
        "{err}"
    );

    lab.runbook("plain", false);
    let (status, _, err) = lab.finish(&["run", "dbmove.runbook"], &mut outputs);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("the REPLICATION privilege is missing for user `plain`"),
        "{err}"
    );

    lab.runbook("nobody-here", false);
    let (status, _, err) = lab.finish(&["run", "dbmove.runbook"], &mut outputs);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("the login of user `nobody-here` is refused"),
        "{err}"
    );

    // An unset variable names the variable, not a value.
    let mut cmd = lab.cutover(&["run", "dbmove.runbook"]);
    cmd.env_remove("OLD_PG_PW");
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the password of db-old:{}/app is read from environment variable OLD_PG_PW, which is not set",
            lab.old.port()
        )),
        "{err}"
    );
    outputs.push_str(&err);

    assert!(
        !lab.path().join(".cutover/dbmove.db").exists(),
        "preflight failures write no state"
    );
    for password in [OLD_PASSWORD, NEW_PASSWORD] {
        assert!(!outputs.contains(password));
    }
}

/// A step whose `undo` replicates back needs on the new server what a
/// source needs and on the old one what a destination needs: with the new
/// server at `wal_level = replica`, the undo's user there without
/// `REPLICATION` and the old server without logical replication workers,
/// `run` and `plan --probe` name each as the undo's, with the line to
/// change, before anything runs; the same runbook without the undo passes.
/// A refused login or an unset password variable that both directions use
/// is named once.
#[test]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
fn preflight_checks_what_the_undo_s_replication_back_needs() {
    let lab = lab_with(
        &[("max_logical_replication_workers", "0")],
        &[("wal_level", "replica")],
    );
    seed(&lab.old, 100);
    lab.new
        .psql(
            "app",
            &format!("CREATE ROLE plain LOGIN PASSWORD '{NEW_PASSWORD}'"),
        )
        .unwrap();
    let (old, new) = (lab.old.port(), lab.new.port());
    let runbook = |undo: bool| {
        let text = format!(
            "runbook dbmove\n\n\
             host db-old addr 127.0.0.1 via local ./old\n\
             host db-new addr 127.0.0.1 via local ./new\n\n\
             step sync\n  db.sync postgres db-old:{old}/app user postgres password env:OLD_PG_PW -> db-new:{new}/app user postgres password file:new.pw freeze freeze\n{}\
             \x20 timeout 10m\n\n\
             step freeze\n  manual \"stop the writers\"\n",
            if undo {
                format!(
                    "  undo db.sync postgres db-new:{new}/app user plain password file:new.pw -> db-old:{old}/app user postgres password env:OLD_PG_PW\n"
                )
            } else {
                String::new()
            }
        );
        std::fs::write(lab.path().join("dbmove.runbook"), text).unwrap();
    };
    let mut outputs = String::new();

    // Forward alone, the servers have what it needs.
    runbook(false);
    let (_, _, err) = lab.finish(&["plan", "dbmove.runbook", "--probe"], &mut outputs);
    assert!(!err.contains("could not probe"), "{err}");

    runbook(true);
    let back = "for the undo (replication back, new -> old): ";
    let expected = [
        format!(
            "plain@127.0.0.1:{new}/app: {back}wal_level is `replica`: set `wal_level = logical` in postgresql.conf"
        ),
        format!(
            "plain@127.0.0.1:{new}/app: {back}the REPLICATION privilege is missing for user `plain`: run `ALTER ROLE \"plain\" REPLICATION;`"
        ),
        format!(
            "postgres@127.0.0.1:{old}/app: {back}max_logical_replication_workers is 0: set `max_logical_replication_workers = 4`"
        ),
    ];
    lab.runner()
        .assert_preflight_refuses(&expected, &mut outputs);
    assert_eq!(
        lab.new
            .psql(
                "app",
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            )
            .unwrap(),
        "0",
        "nothing was copied"
    );

    // A login both directions use is refused once, not again for the undo;
    // so is a password both directions read from an unset variable.
    let wrong = "Wrong-PG-secret-4410";
    let mut run = lab.cutover(&["run", "dbmove.runbook"]);
    run.env("OLD_PG_PW", wrong);
    let (status, _, err) = lab.runner().finish_command(run, &mut outputs);
    assert_eq!(status.code(), Some(2), "{err}");
    let refused = format!("postgres@127.0.0.1:{old}/app: the login of user `postgres` is refused");
    assert_eq!(err.matches(refused.as_str()).count(), 1, "{err}");
    assert!(
        !err.contains(&format!("postgres@127.0.0.1:{old}/app: {back}the login")),
        "{err}"
    );
    let mut run = lab.cutover(&["run", "dbmove.runbook"]);
    run.env_remove("OLD_PG_PW");
    let (status, _, err) = lab.runner().finish_command(run, &mut outputs);
    assert_eq!(status.code(), Some(2), "{err}");
    let unset = format!(
        "the password of db-old:{old}/app is read from environment variable OLD_PG_PW, which is not set"
    );
    assert_eq!(err.matches(unset.as_str()).count(), 1, "{err}");
    for password in [OLD_PASSWORD, NEW_PASSWORD, wrong] {
        assert!(!outputs.contains(password));
    }
}

/// A step whose `undo` is its `db.sync` in reverse: once the step is done
/// the old server follows the new one, so rows written on the new side
/// after the cutover reach the old side; `cutover rollback` then waits for
/// them, copies the sequences back, compares and removes the replication
/// back, leaving the old database on its own with every write.
#[test]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
fn an_undo_replicating_back_brings_the_new_side_s_writes_to_the_old_side() {
    let lab = lab(&[]);
    seed(&lab.old, 3_000);
    let (old, new) = (lab.old.port(), lab.new.port());
    let text = format!(
        "runbook dbmove\n\n\
         host db-old addr 127.0.0.1 via local ./old\n\
         host db-new addr 127.0.0.1 via local ./new\n\n\
         step sync\n  db.sync postgres db-old:{old}/app user postgres password env:OLD_PG_PW -> db-new:{new}/app user postgres password file:new.pw freeze freeze\n\
         \x20 undo db.sync postgres db-new:{new}/app user postgres password file:new.pw -> db-old:{old}/app user postgres password env:OLD_PG_PW\n  timeout 10m\n\n\
         step freeze\n  exec \"true\"\n  undo exec \"true\"\n"
    );
    std::fs::write(lab.path().join("dbmove.runbook"), text).unwrap();
    let mut outputs = String::new();
    let (status, out, err) = lab.finish(&["run", "dbmove.runbook"], &mut outputs);
    assert!(status.success(), "run: {out}\n{err}");
    let subscriptions = |server: &LocalPostgres| {
        server
            .psql(
                "app",
                "SELECT coalesce(string_agg(subname::text, ','), '') FROM pg_subscription",
            )
            .unwrap()
    };
    assert_eq!(
        subscriptions(&lab.new),
        "",
        "replication forward is removed"
    );
    assert_eq!(
        subscriptions(&lab.old),
        "cutover_sync_back",
        "the old side follows the new one"
    );
    let (_, export, _) = lab.finish(
        &["export", "dbmove.runbook", "--format", "json"],
        &mut outputs,
    );
    assert!(
        export.contains("replication back `cutover_sync_back` set up"),
        "the evidence says the fallback window is open: {export}"
    );

    // After the cutover the service writes on the new side only.
    lab.new
        .psql(
            "app",
            "INSERT INTO accounts (name, note) SELECT 'after ' || g, 'written on the new side' FROM generate_series(1, 50) g;
             UPDATE accounts SET note = 'changed on the new side' WHERE id = 17;
             DELETE FROM events WHERE id = 3;
             SELECT nextval('invoice_numbers') FROM generate_series(1, 5);",
        )
        .unwrap();
    let count = |server: &LocalPostgres, sql: &str| server.psql("app", sql).unwrap();
    let log = lab.path().join("rollback.log");
    wait_for(
        "the new side's writes reach the old side",
        Duration::from_secs(60),
        &log,
        || {
            count(
                &lab.old,
                "SELECT count(*) FROM accounts WHERE note = 'written on the new side'",
            ) == "50"
                && count(&lab.old, "SELECT note FROM accounts WHERE id = 17")
                    == "changed on the new side"
                && count(&lab.old, "SELECT count(*) FROM events WHERE id = 3") == "0"
        },
    );

    let (status, out, err) = lab.finish(&["rollback", "dbmove.runbook", "--yes"], &mut outputs);
    assert!(status.success(), "rollback: {out}\n{err}");
    assert!(
        out.contains(
            "replication `cutover_sync_back` removed, the old database is independent again"
        ),
        "{out}"
    );
    assert_eq!(subscriptions(&lab.old), "", "replication back is removed");
    assert_eq!(
        count(&lab.new, "SELECT count(*) FROM pg_publication"),
        "0",
        "and its publication"
    );
    assert_eq!(
        count(&lab.old, "SELECT last_value FROM invoice_numbers"),
        count(&lab.new, "SELECT last_value FROM invoice_numbers"),
        "the sequence came back too"
    );
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}

/// The names of the server's subscriptions.
fn subscriptions(server: &LocalPostgres) -> String {
    server
        .psql(
            "app",
            "SELECT coalesce(string_agg(subname::text, ','), '') FROM pg_subscription",
        )
        .unwrap()
}

/// A lab running `sync` (its undo replicating back), then the manual
/// `stay`, then `end-fallback` (`db.unfollow sync`), waiting at `stay`
/// with the fallback window open: the lab, the run's log and the run.
fn unfollow_lab() -> (Lab, std::path::PathBuf, Child) {
    let lab = lab(&[]);
    seed(&lab.old, 3_000);
    let (old, new) = (lab.old.port(), lab.new.port());
    let text = format!(
        "runbook dbmove\n\n\
         host db-old addr 127.0.0.1 via local ./old\n\
         host db-new addr 127.0.0.1 via local ./new\n\n\
         step sync\n  db.sync postgres db-old:{old}/app user postgres password env:OLD_PG_PW -> db-new:{new}/app user postgres password file:new.pw freeze freeze\n\
         \x20 undo db.sync postgres db-new:{new}/app user postgres password file:new.pw -> db-old:{old}/app user postgres password env:OLD_PG_PW\n  timeout 10m\n\n\
         step freeze\n  exec \"true\"\n  undo exec \"true\"\n\n\
         step stay after sync\n  manual \"the new side takes writes; we stay on it\"\n\n\
         step end-fallback after stay\n  db.unfollow sync\n"
    );
    std::fs::write(lab.path().join("dbmove.runbook"), text).unwrap();
    let log = lab.path().join("run.log");
    let run = lab.spawn_run(&log);
    wait_for(
        "the fallback window opens",
        Duration::from_secs(120),
        &log,
        || subscriptions(&lab.old) == "cutover_sync_back",
    );
    (lab, log, run)
}

/// `db.unfollow sync` ends the fallback window the undo opened: the
/// new side's writes reached the old side while it was open; once the step
/// is done the old server has no subscription (and the new one no
/// publication), a write on the new side no longer arrives, the evidence
/// says what was removed, and `cutover rollback` refuses the db.sync's
/// undo, saying the window ended at that step, instead of setting the
/// replication back up without the writes made in between.
#[test]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
fn ending_the_fallback_window_stops_the_old_side_following_and_rollback_says_so() {
    let (lab, log, mut run) = unfollow_lab();
    let mut outputs = String::new();
    let value = |server: &LocalPostgres, sql: &str| server.psql("app", sql).unwrap();
    lab.new
        .psql(
            "app",
            "INSERT INTO accounts (name, note) SELECT 'after ' || g, 'written on the new side' FROM generate_series(1, 50) g",
        )
        .unwrap();
    wait_for(
        "the new side's writes reach the old side",
        Duration::from_secs(60),
        &log,
        || {
            value(
                &lab.old,
                "SELECT count(*) FROM accounts WHERE note = 'written on the new side'",
            ) == "50"
        },
    );
    let (status, _, err) = lab.finish(&["confirm", "stay", "dbmove.runbook"], &mut outputs);
    assert!(status.success(), "confirm: {err}");
    let status = wait_bounded(&mut run, LIMIT);
    outputs.push_str(&std::fs::read_to_string(&log).unwrap());
    assert!(status.success(), "the run completes: {outputs}");
    assert_eq!(
        subscriptions(&lab.old),
        "",
        "the old side no longer follows"
    );
    assert_eq!(
        value(&lab.new, "SELECT count(*) FROM pg_publication"),
        "0",
        "the new side publishes nothing"
    );
    assert_eq!(
        value(
            &lab.new,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'cutover_sync_back%'"
        ),
        "0",
        "and keeps no slot"
    );
    lab.new
        .psql(
            "app",
            "INSERT INTO accounts (name, note) VALUES ('late', 'written after the window')",
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        value(
            &lab.old,
            "SELECT count(*) FROM accounts WHERE note = 'written after the window'"
        ),
        "0",
        "a write on the new side no longer reaches the old side"
    );
    let (_, export, _) = lab.finish(
        &["export", "dbmove.runbook", "--format", "json"],
        &mut outputs,
    );
    assert!(
        export.contains("replication back `cutover_sync_back` removed (its subscription on the old server and its publication on the new one)"),
        "the act's evidence says what was removed: {export}"
    );
    assert!(
        export.contains("no replication back `cutover_sync_back` on db-old"),
        "the verification observed the old side: {export}"
    );

    let (status, out, err) = lab.finish(&["rollback", "dbmove.runbook", "--yes"], &mut outputs);
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
    assert!(
        said.contains("the failed undo refused for good")
            && !said.contains("retry the failed undo"),
        "a new rollback would fail the same way, and the summary does not suggest it: {said}"
    );
    assert!(
        said.contains("now: it cannot be undone: the fallback window of `sync` ended"),
        "the rollback's plan says so before it starts: {said}"
    );
    assert!(
        !said.contains("replication back `cutover_sync_back` set up"),
        "rollback does not set the replication back up again: {said}"
    );
    assert_eq!(subscriptions(&lab.old), "", "nor does it on the server");
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}

/// An act cut short after the old server's subscription went (removed by
/// hand here) but before the new server's publication did: the step finds
/// the old side no longer following, says so, removes what was left on the
/// new side, and verifies.
#[test]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
fn unfollow_finds_the_replication_back_half_removed_and_finishes_it() {
    let (lab, log, mut run) = unfollow_lab();
    let mut outputs = String::new();
    lab.old
        .psql("app", "DROP SUBSCRIPTION cutover_sync_back")
        .unwrap();
    let value = |server: &LocalPostgres, sql: &str| server.psql("app", sql).unwrap();
    assert_eq!(
        value(&lab.new, "SELECT count(*) FROM pg_publication"),
        "1",
        "the new side's publication is left"
    );
    let (status, _, err) = lab.finish(&["confirm", "stay", "dbmove.runbook"], &mut outputs);
    assert!(status.success(), "confirm: {err}");
    let status = wait_bounded(&mut run, LIMIT);
    outputs.push_str(&std::fs::read_to_string(&log).unwrap());
    assert!(status.success(), "the run completes: {outputs}");
    assert!(
        outputs.contains("replication back `cutover_sync_back` was removed already from db-old"),
        "{outputs}"
    );
    assert_eq!(
        value(&lab.new, "SELECT count(*) FROM pg_publication"),
        "0",
        "what was left on the new side is removed"
    );
    assert_eq!(subscriptions(&lab.old), "");
    assert_no_password(lab.path(), &outputs, &[OLD_PASSWORD, NEW_PASSWORD]);
}
