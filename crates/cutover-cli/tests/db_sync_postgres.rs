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
//!   the run at preflight, naming the setting;
//! - no password appears in any output, the state file or the export.
//!
//! `CUTOVER_DB_TEST_ROWS` sets the rows of the big table (default 300,000,
//! about 70 MB).

use cutover_db::local::{LocalPostgres, free_port};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const OLD_PASSWORD: &str = "Old-PG-secret-9081";
const NEW_PASSWORD: &str = "New-PG-secret-5523";
/// No command of the test may take longer.
const LIMIT: Duration = Duration::from_secs(600);

struct Lab {
    dir: tempfile::TempDir,
    old: LocalPostgres,
    new: LocalPostgres,
}

fn lab(old_settings: &[(&str, &str)]) -> Lab {
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
        &[],
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

    fn cutover(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.current_dir(self.path())
            .args(args)
            .env("OLD_PG_PW", OLD_PASSWORD)
            .stdin(Stdio::null())
            .process_group(0);
        cmd
    }

    /// Runs a cutover command to its end (bounded); status, stdout, stderr.
    fn finish(&self, args: &[&str], outputs: &mut String) -> (ExitStatus, String, String) {
        let out = tempfile::NamedTempFile::new().unwrap();
        let err = tempfile::NamedTempFile::new().unwrap();
        let mut child = self
            .cutover(args)
            .stdout(out.reopen().unwrap())
            .stderr(err.reopen().unwrap())
            .spawn()
            .unwrap();
        let status = wait_bounded(&mut child, LIMIT);
        let out = std::fs::read_to_string(out.path()).unwrap();
        let err = std::fs::read_to_string(err.path()).unwrap();
        outputs.push_str(&out);
        outputs.push_str(&err);
        (status, out, err)
    }

    fn spawn_run(&self, log: &Path) -> Child {
        let file = std::fs::File::create(log).unwrap();
        self.cutover(&["run", "dbmove.runbook", "--take-over"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap()
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

fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            kill_group(child);
            let _ = child.wait();
            panic!("a cutover command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_group(child: &Child) {
    let group = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
}

/// Polls `ready` every 20 ms until it holds (bounded).
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
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

/// Writes at about `per_second` statements a second on one connection
/// until stopped; counts the statements sent.
struct Writer {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(server: &LocalPostgres, rows: u64, per_second: u64) -> Writer {
        let mut session = server.psql_session("app").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let mut stdin = session.stdin.take().unwrap();
            let start = Instant::now();
            let mut n: u64 = 0;
            while !stop2.load(Ordering::SeqCst) {
                let statement = match n % 4 {
                    0 => format!(
                        "INSERT INTO accounts (name, note) VALUES ('new {n}', 'written live');\n"
                    ),
                    1 => format!(
                        "UPDATE accounts SET balance = balance + 1, updated = now() WHERE id = {};\n",
                        1 + (n * 7919) % rows
                    ),
                    2 => format!(
                        "INSERT INTO events (account, kind) VALUES ({}, 'live');\n",
                        1 + n % rows
                    ),
                    _ => "SELECT nextval('invoice_numbers');\n".to_string(),
                };
                if stdin.write_all(statement.as_bytes()).is_err() {
                    break;
                }
                n += 1;
                sent2.store(n, Ordering::SeqCst);
                let due = start + Duration::from_micros(n * 1_000_000 / per_second);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = session.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = session.kill();
            let _ = session.wait();
        });
        Writer {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Stops writing and waits until every statement sent was run.
    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn assert_no_password(lab: &Lab, outputs: &str) {
    let mut texts = vec![("outputs", outputs.to_owned())];
    for entry in std::fs::read_dir(lab.path().join(".cutover")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        texts.push(("state file", String::from_utf8_lossy(&bytes).into_owned()));
    }
    for (what, text) in texts {
        for password in [OLD_PASSWORD, NEW_PASSWORD] {
            assert!(!text.contains(password), "a password is in the {what}");
        }
    }
}

#[test]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
fn sync_with_a_writer_survives_two_kills_and_verifies_after_the_freeze() {
    let lab = lab(&[]);
    let rows = rows();
    seed(&lab.old, rows);
    lab.runbook("postgres", true);
    let mut outputs = String::new();
    let mut writer = Writer::start(&lab.old, rows, 200);

    // First run: killed while the initial copy runs.
    let mut run = lab.spawn_run(&lab.path().join("run1.log"));
    wait_for("the initial copy starts", Duration::from_secs(120), || {
        let (copying, tables) = lab.subscription_tables();
        tables > 0 && copying > 0
    });
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
    wait_for("the initial copy ends", Duration::from_secs(300), || {
        lab.subscription_tables().0 == 0
    });
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
    assert_no_password(&lab, &outputs);
}

#[test]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
fn a_row_changed_on_the_destination_fails_the_step_with_its_key_range() {
    let lab = lab(&[]);
    seed(&lab.old, 5_000);
    lab.runbook("postgres", true);
    let mut outputs = String::new();
    let mut run = lab.spawn_run(&lab.path().join("run.log"));
    wait_for("the initial copy ends", Duration::from_secs(120), || {
        let (copying, tables) = lab.subscription_tables();
        tables == 3 && copying == 0
    });
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
    assert_no_password(&lab, &outputs);
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
