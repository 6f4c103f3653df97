use super::*;
use std::path::Path;

fn new_run(store: &Store) -> i64 {
    store
        .create_run(&NewRun {
            runbook_name: "move".into(),
            runbook_path: "move.runbook".into(),
            content_hash: "h1".into(),
            operator: "ops".into(),
            t0: None,
            steps: ["a", "b"]
                .iter()
                .map(|n| NewStep {
                    name: (*n).into(),
                    definition: format!("def {n}"),
                    planned_start: None,
                })
                .collect(),
        })
        .unwrap()
}

#[test]
fn transitions_are_recorded_with_events_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sub/run.db")).unwrap();
    let run = new_run(&store);
    store
        .transition(
            run,
            &Transition {
                step: "a",
                status: StepStatus::Running,
                phase: Some(Phase::Act),
                new_attempt: true,
                event_kind: "phase",
                message: "acting".into(),
                evidence: None,
            },
        )
        .unwrap();
    store
        .transition(
            run,
            &Transition {
                step: "a",
                status: StepStatus::Done,
                phase: Some(Phase::Verify),
                new_attempt: false,
                event_kind: "done",
                message: "verified".into(),
                evidence: Some((
                    Phase::Verify,
                    "port open".into(),
                    serde_json::json!({"port": 80}),
                )),
            },
        )
        .unwrap();
    let steps = store.steps(run).unwrap();
    assert_eq!(steps[0].status, StepStatus::Done);
    assert_eq!(steps[0].attempts, 1);
    assert!(steps[0].first_act_at.is_some());
    assert!(steps[0].finished_at.is_some());
    assert_eq!(steps[0].last_evidence.as_deref(), Some("port open"));
    assert_eq!(steps[1].status, StepStatus::Pending);
    let evidence = store
        .latest_evidence(run, "a", Phase::Verify)
        .unwrap()
        .unwrap();
    assert_eq!(evidence.attempt, 1);
    assert_eq!(evidence.data["port"], 80);
    assert_eq!(store.events(run).unwrap().len(), 3);
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

#[test]
fn the_event_log_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("run.db")).unwrap();
    new_run(&store);
    let err = store
        .sql(|c| c.execute("DELETE FROM events", []))
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[test]
fn unknown_step_cannot_be_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("run.db")).unwrap();
    let run = new_run(&store);
    let err = store.confirm(run, "nope", "ops", None).unwrap_err();
    assert!(err.to_string().contains("no step named `nope`"), "{err}");
    store.confirm(run, "b", "ops", Some("all stopped")).unwrap();
    let c = store.confirmation(run, "b").unwrap().unwrap();
    assert_eq!(
        (c.user.as_str(), c.note.as_deref()),
        ("ops", Some("all stopped"))
    );
}

#[test]
fn lock_refuses_a_live_holder_and_takes_over_a_dead_one_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.db");
    let store = Store::open(&path).unwrap();
    new_run(&store);
    let me = LockHolder::current();
    assert_eq!(
        store.acquire_lock(&me, false).unwrap(),
        LockState::Acquired { took_over: None }
    );

    let other = LockHolder {
        pid: me.pid + 1,
        ..me.clone()
    };
    // pid 1 is alive on every Unix: a live holder (with its real start time).
    let live = LockHolder {
        pid: 1,
        start_time: lock::process_start_time(1),
        ..me.clone()
    };
    store.release_lock(&me).unwrap();
    store.acquire_lock(&live, false).unwrap();
    assert_eq!(
        store.acquire_lock(&other, true).unwrap(),
        LockState::Held(live.clone())
    );

    // A child that has exited and been reaped: a dead holder.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let dead = LockHolder {
        pid: dead_pid,
        ..me.clone()
    };
    store.sql(|c| c.execute("DELETE FROM lock", [])).unwrap();
    store.acquire_lock(&dead, false).unwrap();
    assert_eq!(
        store.acquire_lock(&me, false).unwrap(),
        LockState::Stale(dead.clone())
    );
    assert_eq!(
        store.acquire_lock(&me, true).unwrap(),
        LockState::Acquired {
            took_over: Some(dead)
        }
    );
    assert_eq!(store.lock_holder().unwrap().unwrap().pid, me.pid);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", CURRENT_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
}

#[test]
fn a_read_only_open_creates_nothing_and_migrates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("sub/run.db");
    let err = Store::open_read_only(&missing).unwrap_err();
    assert!(matches!(err, StoreError::Missing(_)), "{err}");
    assert!(!dir.path().join("sub").exists());

    // A file at version 0: the engine would migrate it, a reader must not.
    let old = dir.path().join("old.db");
    let conn = rusqlite::Connection::open(&old).unwrap();
    conn.execute_batch("CREATE TABLE unrelated (x)").unwrap();
    drop(conn);
    let err = Store::open_read_only(&old).unwrap_err();
    assert!(
        matches!(err, StoreError::Version { found: 0, supported, .. } if supported == CURRENT_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("schema version 0"), "{err}");
    let conn = rusqlite::Connection::open(&old).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let runs: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'runs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((version, runs), (0, 0));

    // A newer file is refused too.
    let newer = dir.path().join("newer.db");
    drop(Store::open(&newer).unwrap());
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.pragma_update(None, "user_version", CURRENT_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = Store::open_read_only(&newer).unwrap_err();
    assert!(matches!(err, StoreError::Version { .. }), "{err}");
}

#[test]
fn a_read_only_transaction_reads_one_state_while_the_engine_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.db");
    let writer = Store::open(&path).unwrap();
    let run = new_run(&writer);
    writer.acquire_lock(&LockHolder::current(), false).unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    let acting = Transition {
        step: "a",
        status: StepStatus::Running,
        phase: Some(Phase::Act),
        new_attempt: true,
        event_kind: "phase",
        message: "acting".into(),
        evidence: None,
    };

    let (before, after) = reader
        .read(|tx| {
            let run = tx.latest_run()?.expect("a run");
            let before = (tx.steps(run.id)?, tx.events(run.id)?);
            // The engine commits while the reader is inside its transaction.
            writer.transition(run.id, &acting)?;
            writer.confirm(run.id, "b", "ops", None)?;
            writer.append_event(run.id, None, "message", "hello", None)?;
            let after = (tx.steps(run.id)?, tx.events(run.id)?);
            assert!(tx.confirmations(run.id)?.is_empty());
            assert!(tx.evidence(run.id)?.is_empty());
            assert_eq!(tx.lock_holder()?.unwrap().pid, std::process::id());
            Ok::<_, StoreError>((before, after))
        })
        .unwrap();
    assert_eq!(before.0[0].status, StepStatus::Pending);
    assert_eq!(after.0[0].status, StepStatus::Pending);
    assert_eq!(before.1.len(), after.1.len());

    // The next transaction sees the commits, mapped as the engine's own reads.
    let (steps, events, confirmations) = reader
        .read(|tx| Ok::<_, StoreError>((tx.steps(run)?, tx.events(run)?, tx.confirmations(run)?)))
        .unwrap();
    assert_eq!(steps[0].status, StepStatus::Running);
    assert_eq!(steps[0].phase, Some(Phase::Act));
    assert_eq!(events.len(), before.1.len() + 3);
    assert_eq!(events.len(), writer.events(run).unwrap().len());
    assert_eq!(confirmations[0].user, "ops");

    // Reading wrote nothing: no migration, no lock, no row.
    assert_eq!(writer.integrity_check().unwrap(), "ok");
    assert_eq!(
        writer.lock_holder().unwrap().unwrap().pid,
        std::process::id()
    );
}

/// A child process that runs until the returned guard is dropped.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn spawn() -> Sleeper {
        Sleeper(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lock_row(store: &Store, holder: &LockHolder) {
    store.sql(|c| c.execute("DELETE FROM lock", [])).unwrap();
    assert_eq!(
        store.acquire_lock(holder, false).unwrap(),
        LockState::Acquired { took_over: None }
    );
}

#[test]
fn a_live_pid_with_another_start_time_or_boot_id_is_a_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("run.db")).unwrap();
    new_run(&store);
    let me = LockHolder::current();
    let sleeper = Sleeper::spawn();
    let pid = sleeper.0.id();
    let Some(start_time) = lock::process_start_time(pid) else {
        eprintln!("no /proc here: nothing to test");
        return;
    };
    let holder = LockHolder {
        pid,
        start_time: Some(start_time.clone()),
        ..me.clone()
    };

    // Same pid, start time and boot id: held.
    assert_eq!(holder.liveness(), Liveness::Alive);
    lock_row(&store, &holder);
    assert_eq!(
        store.acquire_lock(&me, true).unwrap(),
        LockState::Held(holder.clone())
    );

    // The pid is alive but another process has it (another start time).
    let reused = LockHolder {
        start_time: Some(format!("{start_time}1")),
        ..holder.clone()
    };
    assert_eq!(reused.liveness(), Liveness::Gone(GoneReason::PidReused));
    lock_row(&store, &reused);
    assert_eq!(
        store.acquire_lock(&me, false).unwrap(),
        LockState::Stale(reused.clone())
    );

    // Taken before the last reboot: whatever has the pid now is not it.
    let rebooted = LockHolder {
        boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
        ..holder.clone()
    };
    if me.boot_id.is_some() {
        assert_eq!(rebooted.liveness(), Liveness::Gone(GoneReason::Rebooted));
        lock_row(&store, &rebooted);
        assert_eq!(
            store.acquire_lock(&me, true).unwrap(),
            LockState::Acquired {
                took_over: Some(rebooted.clone())
            }
        );
        let run = store.latest_run().unwrap().unwrap().id;
        let logged = store.events(run).unwrap();
        let last = logged.last().unwrap();
        assert_eq!(last.kind, "lock");
        assert!(last.message.contains("rebooted"), "{}", last.message);
    }

    // A version-1 lock (no start time, no boot id) keeps the old rule.
    let old = LockHolder {
        start_time: None,
        boot_id: None,
        ..holder.clone()
    };
    lock_row(&store, &old);
    assert_eq!(store.lock_holder().unwrap().unwrap(), old);
    assert_eq!(
        store.acquire_lock(&me, true).unwrap(),
        LockState::Held(old.clone())
    );
    drop(sleeper);
    assert_eq!(old.liveness(), Liveness::Gone(GoneReason::Exited));
    assert_eq!(holder.liveness(), Liveness::Gone(GoneReason::Exited));
    assert_eq!(
        store.acquire_lock(&me, false).unwrap(),
        LockState::Stale(old)
    );

    // Another host cannot be checked: never stale.
    let remote = LockHolder {
        host: format!("{}-elsewhere", me.host),
        boot_id: Some("x".into()),
        ..holder
    };
    assert_eq!(remote.liveness(), Liveness::OtherHost);
    assert!(!remote.is_stale());
}

#[test]
fn the_lock_of_a_file_kept_busy_names_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.db");
    let first = Store::open(&path).unwrap();
    new_run(&first);
    let holder = LockHolder {
        pid: 1,
        start_time: lock::process_start_time(1),
        ..LockHolder::current()
    };
    first.acquire_lock(&holder, false).unwrap();
    // The coordinator keeps a write transaction open past the busy timeout.
    first
        .sql(|c| c.execute_batch("BEGIN IMMEDIATE; INSERT INTO events (run_id, at, kind, message) VALUES (1, 'now', 'message', 'busy')"))
        .unwrap();
    let second = Store::open(&path).unwrap();
    second
        .sql(|c| c.busy_timeout(std::time::Duration::from_millis(50)))
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        second.acquire_lock(&LockHolder::current(), true).unwrap(),
        LockState::Held(holder)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    first.sql(|c| c.execute_batch("COMMIT")).unwrap();
}

/// Fills the event log (so that the `events` table spans many pages) and
/// returns the number of a leaf page of it in the middle, found with
/// `dbstat`, and the page size.
fn events_page(path: &Path) -> (u64, u64) {
    {
        let store = Store::open(path).unwrap();
        let run = new_run(&store);
        store.sql(|c| c.execute_batch("BEGIN")).unwrap();
        for i in 0..2000 {
            store
                .append_event(
                    run,
                    Some("a"),
                    "message",
                    &format!("event number {i} of a long enough log"),
                    None,
                )
                .unwrap();
        }
        store.sql(|c| c.execute_batch("COMMIT")).unwrap();
    }
    assert!(
        !path.with_extension("db-wal").exists(),
        "checkpointed on close"
    );
    let conn = rusqlite::Connection::open(path).unwrap();
    let pages: Vec<i64> = conn
        .prepare(
            "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY pageno",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert!(pages.len() > 10, "{pages:?}");
    (pages[pages.len() / 2] as u64, size as u64)
}

fn overwrite_page(path: &Path, page: u64, size: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start((page - 1) * size)).unwrap();
    file.write_all(&vec![0xA5; size as usize]).unwrap();
    file.sync_all().unwrap();
}

#[test]
fn a_damaged_file_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.db");
    let (page, size) = events_page(&path);
    overwrite_page(&path, page, size);
    let before = std::fs::read(&path).unwrap();

    for open in [Store::open, Store::open_existing] {
        let err = open(&path).unwrap_err();
        let StoreError::Damaged {
            path: named,
            problems,
        } = &err
        else {
            panic!("not refused as damaged: {err}");
        };
        assert_eq!(named, &path);
        assert!(!problems.is_empty() && problems.len() <= 11, "{problems:?}");
        assert!(
            problems.iter().any(|p| p
                .to_lowercase()
                .contains(&format!("page {page}: btreeinitpage"))),
            "{problems:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(
            text.contains("damaged") && text.contains("do not run against it"),
            "{text}"
        );
        assert!(text.contains("backup"), "{text}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing written");
}

#[test]
fn an_empty_or_foreign_file_is_not_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reason = |path: &Path| match Store::open(path).unwrap_err() {
        StoreError::NotAStateFile {
            path: named,
            reason,
        } => {
            assert_eq!(named, path);
            let again = Store::open_existing(path).unwrap_err();
            assert!(matches!(again, StoreError::NotAStateFile { .. }), "{again}");
            assert!(
                again.to_string().contains(&path.display().to_string()),
                "{again}"
            );
            reason
        }
        other => panic!("{}: {other}", path.display()),
    };

    let empty = d.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert!(reason(&empty).contains("empty"));
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "left empty");

    let text = d.join("notes.db");
    std::fs::write(&text, "these are my notes, not a database\n").unwrap();
    assert!(reason(&text).contains("not an SQLite database"));
    let short = d.join("short.db");
    std::fs::write(&short, "SQLite").unwrap();
    assert!(reason(&short).contains("not an SQLite database"));

    let foreign = d.join("foreign.db");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes (text) VALUES ('hello');")
        .unwrap();
    drop(conn);
    let foreign_reason = reason(&foreign);
    assert!(
        foreign_reason.contains("without cutover's schema"),
        "{foreign_reason}"
    );
    assert!(foreign_reason.contains("`notes`"), "{foreign_reason}");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1, "nothing migrated into it");
    drop(conn);

    // An SQLite file with no tables at all is not taken for a fresh run.
    let blank = d.join("blank.db");
    let conn = rusqlite::Connection::open(&blank).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    drop(conn);
    assert!(reason(&blank).contains("no tables"));

    // Another program's file that uses user_version too.
    let versioned = d.join("versioned.db");
    let conn = rusqlite::Connection::open(&versioned).unwrap();
    conn.execute_batch("CREATE TABLE runs (x); PRAGMA user_version = 1;")
        .unwrap();
    drop(conn);
    assert!(reason(&versioned).contains("`steps`"));
}

#[test]
fn a_new_file_is_created_complete_under_a_temporary_name_by_one_of_many() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/run.db");
    // Eight threads open the same missing file at once: one creates it,
    // the others open that one; none fails, none sees a partial file.
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let store = Store::open(&path)?;
                    store.acquire_lock(&LockHolder::current(), false)?;
                    Ok::<_, StoreError>(())
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    let names: Vec<String> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["run.db"], "no temporary file left behind");
    let store = Store::open_existing(&path).unwrap();
    let version: i64 = store
        .sql(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(version, CURRENT_VERSION);
    let mode: String = store
        .sql(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

#[test]
fn a_version_1_file_is_migrated_to_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
    conn.execute_batch(
        "PRAGMA user_version = 1;
         INSERT INTO runs (runbook_name, runbook_path, content_hash, operator, started_at, status)
           VALUES ('move', 'move.runbook', 'h', 'ops', '2026-03-14T17:00:00Z', 'running');
         INSERT INTO steps (run_id, name, position, definition, status) VALUES (1, 'gate', 0, 'step gate', 'pending');
         INSERT INTO confirmations (run_id, step, user, note, at) VALUES (1, 'gate', 'bob', NULL, '2026-03-14T17:01:00Z');
         INSERT INTO lock (id, user, host, pid, since) VALUES (1, 'ops', 'elsewhere', 42, '2026-03-14T17:00:00Z');",
    )
    .unwrap();
    drop(conn);

    let store = Store::open_existing(&path).unwrap();
    let version: i64 = store
        .sql(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(version, CURRENT_VERSION);
    let holder = store.lock_holder().unwrap().unwrap();
    assert_eq!(
        (holder.pid, holder.start_time, holder.boot_id),
        (42, None, None)
    );
    let confirmation = store.confirmation(1, "gate").unwrap().unwrap();
    assert_eq!(
        (confirmation.user.as_str(), confirmation.ahead),
        ("bob", false)
    );
    let indexes: Vec<String> = store
        .sql(|c| {
            c.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%_by_step' ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
        .unwrap();
    assert_eq!(
        indexes,
        [
            "confirmations_by_step",
            "events_by_step",
            "evidence_by_step"
        ]
    );
    // The lookups the engine makes per step use them.
    let plan = |sql: &str| -> String {
        store
            .sql(|c| {
                c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?
                    .query_map([], |r| r.get::<_, String>(3))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap()
            .join("; ")
    };
    assert!(
        plan("SELECT * FROM confirmations WHERE run_id = 1 AND step = 'gate' ORDER BY id DESC LIMIT 1")
            .contains("confirmations_by_step"),
    );
    assert!(
        plan("SELECT * FROM evidence WHERE run_id = 1 AND step = 'gate' AND phase = 'act' ORDER BY id DESC LIMIT 1")
            .contains("evidence_by_step"),
    );
    assert!(
        plan("SELECT * FROM events WHERE run_id = 1 AND step = 'gate'").contains("events_by_step")
    );
    assert!(
        plan("SELECT * FROM steps WHERE run_id = 1 AND name = 'gate'")
            .contains("sqlite_autoindex_steps_1"),
    );
    drop(store);
    // Now this build's version: a reader opens it.
    let reader = Store::open_read_only(&path).unwrap();
    let confirmations = reader.read(|tx| tx.confirmations(1)).unwrap();
    assert_eq!(confirmations.len(), 1);
}

#[test]
fn one_step_is_read_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("run.db")).unwrap();
    let run = new_run(&store);
    store
        .transition(
            run,
            &Transition {
                step: "b",
                status: StepStatus::Done,
                phase: Some(Phase::Verify),
                new_attempt: true,
                event_kind: "done",
                message: "verified".into(),
                evidence: Some((Phase::Verify, "seen".into(), serde_json::json!({}))),
            },
        )
        .unwrap();
    let b = store.step(run, "b").unwrap().unwrap();
    let all = store.steps(run).unwrap();
    assert_eq!(format!("{b:?}"), format!("{:?}", all[1]));
    assert_eq!(b.last_evidence.as_deref(), Some("seen"));
    assert!(store.step(run, "nope").unwrap().is_none());
    assert!(store.step(run + 1, "b").unwrap().is_none());
}

fn set_step(store: &Store, run: i64, step: &str, status: StepStatus, phase: Option<Phase>) {
    store
        .transition(
            run,
            &Transition {
                step,
                status,
                phase,
                new_attempt: false,
                event_kind: "phase",
                message: "test".into(),
                evidence: None,
            },
        )
        .unwrap();
}

fn refusal(err: StoreError) -> GateRefusal {
    match err {
        StoreError::GateRefused { refusal, .. } => *refusal,
        other => panic!("not a refusal: {other}"),
    }
}

#[test]
fn a_gate_is_confirmed_only_while_it_waits_or_ahead_before_it_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("run.db")).unwrap();
    let run = new_run(&store);
    let confirms = |step: &str| {
        store
            .sql(|c| {
                c.query_row(
                    "SELECT count(*) FROM confirmations WHERE step = ?1",
                    [step],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap()
    };

    // Unknown step, unknown run.
    let err = store
        .confirm_gate(run, "nope", "bob", None, true)
        .unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
    assert_eq!(refusal(err), GateRefusal::NoStep);
    let err = store
        .confirm_gate(run + 1, "a", "bob", None, true)
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");

    // Pending, no coordinator: not waiting; ahead, recorded as ahead.
    let err = store
        .confirm_gate(run, "a", "bob", None, false)
        .unwrap_err();
    assert!(
        err.to_string().contains("pending (not reached yet)"),
        "{err}"
    );
    assert_eq!(
        refusal(err),
        GateRefusal::NotWaiting {
            status: StepStatus::Pending,
            phase: None,
            coordinator: None,
            coordinator_alive: false
        }
    );
    let ahead = store
        .confirm_gate(run, "a", "bob", Some("early"), true)
        .unwrap();
    assert!(ahead.ahead && !ahead.coordinator_alive);
    assert_eq!(ahead.status, StepStatus::Pending);
    let recorded = store.confirmation(run, "a").unwrap().unwrap();
    assert!(recorded.ahead);
    assert_eq!(recorded.note.as_deref(), Some("early"));

    // Waiting: running in act with a live coordinator (this process).
    let me = LockHolder::current();
    store.acquire_lock(&me, false).unwrap();
    set_step(&store, run, "b", StepStatus::Running, Some(Phase::Act));
    let confirmed = store.confirm_gate(run, "b", "bob", None, true).unwrap();
    assert!(!confirmed.ahead, "a waiting gate is confirmed, not ahead");
    assert!(confirmed.coordinator_alive);
    assert_eq!(confirmed.coordinator.as_ref(), Some(&me));
    assert!(!store.confirmation(run, "b").unwrap().unwrap().ahead);
    let events = store.events(run).unwrap();
    assert_eq!(events.last().unwrap().message, "confirmed by bob");

    // Past its gate (verifying): refused even ahead.
    set_step(&store, run, "b", StepStatus::Running, Some(Phase::Verify));
    let before = confirms("b");
    for ahead in [false, true] {
        let err = store
            .confirm_gate(run, "b", "bob", None, ahead)
            .unwrap_err();
        assert!(err.to_string().contains("verifying"), "{err}");
        assert!(matches!(
            refusal(err),
            GateRefusal::NotWaiting {
                coordinator_alive: true,
                ..
            }
        ));
    }
    assert_eq!(confirms("b"), before);

    // In act but the coordinator is gone (a crash): not waiting; ahead is
    // kept for the resume.
    store.release_lock(&me).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = LockHolder {
        pid: child.id(),
        ..me.clone()
    };
    child.wait().unwrap();
    store.acquire_lock(&dead, false).unwrap();
    set_step(&store, run, "b", StepStatus::Running, Some(Phase::Act));
    let err = store
        .confirm_gate(run, "b", "bob", None, false)
        .unwrap_err();
    assert!(err.to_string().contains("is gone"), "{err}");
    assert_eq!(
        refusal(err),
        GateRefusal::NotWaiting {
            status: StepStatus::Running,
            phase: Some(Phase::Act),
            coordinator: Some(dead.clone()),
            coordinator_alive: false
        }
    );
    assert!(
        store
            .confirm_gate(run, "b", "bob", None, true)
            .unwrap()
            .ahead
    );

    // A failed gate is retried by the next run: ahead only.
    set_step(&store, run, "b", StepStatus::Failed, Some(Phase::Act));
    assert!(store.confirm_gate(run, "b", "bob", None, false).is_err());
    assert!(
        store
            .confirm_gate(run, "b", "bob", None, true)
            .unwrap()
            .ahead
    );

    // Done, skipped, undone: refused either way.
    for status in [StepStatus::Done, StepStatus::Skipped, StepStatus::Undone] {
        set_step(&store, run, "b", status, Some(Phase::Verify));
        let before = confirms("b");
        for ahead in [false, true] {
            let err = store
                .confirm_gate(run, "b", "bob", None, ahead)
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("already {}", status.as_str())),
                "{err}"
            );
            assert_eq!(refusal(err), GateRefusal::StepFinished { status });
        }
        assert_eq!(confirms("b"), before);
    }

    // A finished run: refused either way, even for a pending step.
    set_step(&store, run, "a", StepStatus::Pending, None);
    for status in [RunStatus::Completed, RunStatus::RolledBack] {
        store.set_run_status(run, status).unwrap();
        for ahead in [false, true] {
            let err = store
                .confirm_gate(run, "a", "bob", None, ahead)
                .unwrap_err();
            assert!(err.to_string().contains("the run is finished"), "{err}");
            assert_eq!(refusal(err), GateRefusal::RunFinished { status });
        }
    }
    // The engine's own prompt records a plain confirmation.
    store.set_run_status(run, RunStatus::Running).unwrap();
    store.confirm(run, "a", "ops", None).unwrap();
    assert!(!store.confirmation(run, "a").unwrap().unwrap().ahead);
}

#[test]
fn a_run_records_the_plan_it_is_judged_against_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("planned.db")).unwrap();
    let run = new_run(&store);
    assert_eq!(
        store.run_plan(run).unwrap(),
        None,
        "planned from the runbook alone"
    );
    let planned = RunPlan {
        rehearsal: true,
        origin: "2026-03-14T17:00:00Z".parse().unwrap(),
        reviewed: Some(ReviewedPlanRef {
            file: "move.plan".into(),
            hash: "abc".into(),
            made_at: "2026-03-13T09:00:00Z".into(),
            probed_at: Some("2026-03-13T08:59:58Z".into()),
        }),
        steps: vec![PlannedSpan {
            name: "a".into(),
            start_ms: -60_000,
            end_ms: 3_190,
            source: "measured".into(),
        }],
    };
    let second = store
        .create_planned_run(
            &NewRun {
                runbook_name: "move".into(),
                runbook_path: "move.runbook".into(),
                content_hash: "h1".into(),
                operator: "ops".into(),
                t0: None,
                steps: Vec::new(),
            },
            Some(&planned),
        )
        .unwrap();
    assert_eq!(store.run_plan(second).unwrap(), Some(planned.clone()));
    drop(store);
    let read = Store::open_read_only(&dir.path().join("planned.db")).unwrap();
    let back = read.read(|tx| tx.run_plan(second)).unwrap();
    assert_eq!(back, Some(planned));
}
