use super::*;

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
    // pid 1 is alive on every Unix: a live holder.
    let live = LockHolder {
        pid: 1,
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
