//! `db.sync postgres|mysql SERVER -> SERVER [freeze STEP] [size SIZE]`:
//! servers on runbook hosts, passwords by reference only, the freeze step.

use cutover_lang::{ActionKind, DbServer, HostId, SecretRef, ServerEngine, parse_source};

const HEAD: &str = "runbook r\n\nhost db-old addr 127.0.0.1 via local ./old\nhost db-new addr 127.0.0.2 via local ./new\ngroup both db-old, db-new\n\n";

fn parse(steps: &str) -> cutover_lang::Loaded {
    parse_source("r.runbook", format!("{HEAD}{steps}"))
}

fn codes(steps: &str) -> Vec<&'static str> {
    parse(steps).diagnostics.iter().map(|d| d.code).collect()
}

#[test]
fn servers_passwords_and_the_freeze_step_are_parsed_and_described() {
    let loaded = parse(
        "step sync\n  db.sync postgres db-old/app user repl password env:OLD_PW -> db-new:6432/app user admin password file:secrets/new.pw freeze stop-writes size 2G\n\
         step stop-writes\n  manual \"stop the writers\"\n",
    );
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let runbook = loaded.runbook.unwrap();
    let action = &runbook.steps[0].action;
    let ActionKind::DbReplicate {
        engine,
        from,
        to,
        freeze,
        size,
    } = &action.kind
    else {
        panic!("{:?}", action.kind)
    };
    assert_eq!(*engine, ServerEngine::Postgres);
    assert_eq!(
        from,
        &DbServer {
            host: HostId(
                runbook
                    .hosts
                    .iter()
                    .position(|h| h.name == "db-old")
                    .unwrap()
            ),
            port: 5432,
            database: "app".into(),
            user: "repl".into(),
            password: Some(SecretRef::Env("OLD_PW".into())),
        }
    );
    assert_eq!(to.port, 6432);
    assert_eq!(to.password, Some(SecretRef::File("secrets/new.pw".into())));
    assert_eq!(*freeze, runbook.step_by_name("stop-writes"));
    assert_eq!(size.map(|s| s.0), Some(2_000_000_000));
    let described = runbook.describe(action);
    assert_eq!(
        described,
        "db.sync postgres db-old:5432/app user repl password env:OLD_PW -> db-new:6432/app user admin password file:secrets/new.pw freeze stop-writes size 2G"
    );
    // The description reads back as the same action.
    let again = parse(&format!(
        "step sync\n  {described}\nstep stop-writes\n  manual \"stop the writers\"\n"
    ));
    assert!(again.diagnostics.is_empty(), "{:?}", again.diagnostics);
    assert_eq!(again.runbook.unwrap().steps[0].action.kind, action.kind);
}

#[test]
fn mysql_defaults_to_3306_and_a_password_is_optional() {
    let loaded =
        parse("step sync\n  db.sync mysql db-old/shop user root -> db-new/shop user root\n");
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let runbook = loaded.runbook.unwrap();
    let ActionKind::DbReplicate {
        engine, from, to, ..
    } = &runbook.steps[0].action.kind
    else {
        panic!()
    };
    assert_eq!(*engine, ServerEngine::Mysql);
    assert_eq!((from.port, to.port), (3306, 3306));
    assert_eq!(from.password, None);
}

#[test]
fn sqlite_is_unchanged() {
    let loaded = parse("step s\n  db.sync sqlite db-old:/db/a.sqlite -> db-new:/db/a.sqlite\n");
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert!(matches!(
        loaded.runbook.unwrap().steps[0].action.kind,
        ActionKind::DbSync { .. }
    ));
}

#[test]
fn a_password_itself_is_refused() {
    let loaded = parse(
        "step s\n  db.sync postgres db-old/app user u password hunter22 -> db-new/app user u\n",
    );
    let diag = loaded
        .diagnostics
        .iter()
        .find(|d| d.code == "bad-secret")
        .expect("bad-secret");
    assert!(
        diag.help
            .as_deref()
            .unwrap()
            .contains("password env:VARIABLE")
    );
    assert!(!format!("{diag:?}").contains("help: hunter22"));
}

#[test]
fn mistakes_are_named() {
    for (steps, code) in [
        (
            "step s\n  db.sync oracle db-old/app user u -> db-new/app user u\n",
            "bad-value",
        ),
        (
            "step s\n  db.sync postgres db-old/app -> db-new/app user u\n",
            "bad-kind-args",
        ),
        (
            "step s\n  db.sync postgres db-old user u -> db-new/app user u\n",
            "bad-kind-args",
        ),
        (
            "step s\n  db.sync postgres db-old:0/app user u -> db-new/app user u\n",
            "bad-value",
        ),
        (
            "step s\n  db.sync postgres both/app user u -> db-new/app user u\n",
            "group-not-allowed",
        ),
        (
            "step s\n  db.sync postgres nowhere/app user u -> db-new/app user u\n",
            "unknown-name",
        ),
        (
            "step s\n  db.sync postgres db-old/app user u -> db-old/other user u\n",
            "bad-value",
        ),
        (
            "step s\n  db.sync postgres db-old/app user u -> db-new/app user u freeze nope\n",
            "unknown-name",
        ),
        (
            "step s\n  db.sync postgres db-old/app user u -> db-new/app user u fast\n",
            "bad-kind-args",
        ),
        (
            "step s\n  db.sync postgres db-old/app user u user v -> db-new/app user u\n",
            "duplicate-attribute",
        ),
        (
            "step s\n  db.sync postgres db-old/app user u password env:1X -> db-new/app user u\n",
            "bad-secret",
        ),
    ] {
        let found = codes(steps);
        assert!(found.contains(&code), "{steps}: {found:?}");
    }
}

#[test]
fn an_undo_may_replicate_back_only_the_step_s_own_sync() {
    let found = codes(
        "step s\n  db.sync postgres db-old/app user u -> db-new/app user u\n  undo db.sync postgres db-new/app user v -> db-old/app user u\n",
    );
    assert!(!found.contains(&"bad-undo-kind"), "{found:?}");
    for undo in [
        "db.sync postgres db-new/app user u -> db-other/app user u",
        "db.sync postgres db-new/other user u -> db-old/app user u",
        "db.sync mysql db-new/app user u -> db-old/app user u",
    ] {
        let found = codes(&format!(
            "host db-other addr 127.0.0.9 via local o\n\
             step s\n  db.sync postgres db-old/app user u -> db-new/app user u\n  undo {undo}\n"
        ));
        assert!(found.contains(&"bad-undo-kind"), "{undo}: {found:?}");
    }
    let found = codes(
        "step s\n  exec \"true\"\n  undo db.sync postgres db-new/app user u -> db-old/app user u\n",
    );
    assert!(found.contains(&"bad-undo-kind"), "{found:?}");
}

#[test]
fn a_freeze_step_that_waits_for_the_sync_is_refused() {
    let found = codes(
        "step sync\n  db.sync postgres db-old/app user u -> db-new/app user u freeze gate\n\
         step mid after sync\n  wait 1m\n\
         step gate after mid\n  manual \"stop writers\"\n",
    );
    assert!(found.contains(&"freeze-cycle"), "{found:?}");
    let found =
        codes("step sync\n  db.sync postgres db-old/app user u -> db-new/app user u freeze sync\n");
    assert!(found.contains(&"freeze-cycle"), "{found:?}");
}

#[test]
fn a_password_variable_is_never_handed_to_a_command() {
    let loaded = parse(
        "step sync\n  db.sync postgres db-old/app user u password env:DB_PW -> db-new/app user u\n\
         step leak\n  exec \"env\" env PATH, DB_PW\n",
    );
    let diag = loaded
        .diagnostics
        .iter()
        .find(|d| d.code == "secret-env")
        .expect("secret-env");
    assert!(
        diag.message.contains("DB_PW") && diag.message.contains("`sync`"),
        "{}",
        diag.message
    );
}

/// A db.sync whose undo replicates back, for `db.unfollow`.
const FALLBACK: &str = "step sync\n  db.sync mysql db-old/shop user u -> db-new/shop user u\n  undo db.sync mysql db-new/shop user u -> db-old/shop user u\n";

#[test]
fn unfollow_names_its_db_sync_and_reads_back_as_written() {
    let loaded = parse(&format!(
        "{FALLBACK}step stay after sync\n  manual \"stay on the new side\"\nstep end after stay\n  db.unfollow sync\n"
    ));
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let runbook = loaded.runbook.unwrap();
    let end = &runbook.steps[2].action;
    assert_eq!(
        end.kind,
        ActionKind::DbUnfollow {
            step: runbook.step_by_name("sync").unwrap()
        }
    );
    assert_eq!(runbook.describe(end), "db.unfollow sync");
}

#[test]
fn unfollow_is_refused_without_a_fallback_window_or_before_its_step() {
    let refused = [
        // Not a db.sync.
        "step sync\n  exec \"true\"\nstep end after sync\n  db.unfollow sync\n".to_owned(),
        // A db.sync without an undo.
        "step sync\n  db.sync postgres db-old/app user u -> db-new/app user u\nstep end after sync\n  db.unfollow sync\n".to_owned(),
        // A db.sync whose undo does not replicate back.
        "step sync\n  db.sync postgres db-old/app user u -> db-new/app user u\n  undo exec \"true\"\nstep end after sync\n  db.unfollow sync\n".to_owned(),
        // SQLite: a copy, no replication.
        "step sync\n  db.sync sqlite db-old:/a.db -> db-new:/a.db\nstep end after sync\n  db.unfollow sync\n".to_owned(),
        // Not after the step.
        format!("{FALLBACK}step end\n  db.unfollow sync\n"),
        // Itself.
        "step end\n  db.unfollow end\n".to_owned(),
    ];
    for steps in &refused {
        let found = codes(steps);
        assert_eq!(found, ["no-fallback"], "{steps}");
    }
    let loaded = parse(&format!("{FALLBACK}step end\n  db.unfollow sync\n"));
    let d = &loaded.diagnostics[0];
    assert_eq!(
        d.message,
        "`end` does not come after `sync`, whose fallback window it ends"
    );
    assert_eq!(d.help.as_deref(), Some("add `after sync` to step `end`"));
    let loaded = parse("step sync\n  exec \"true\"\nstep end after sync\n  db.unfollow sync\n");
    assert!(
        loaded.diagnostics[0]
            .message
            .contains("`sync` is not a db.sync postgres|mysql whose `undo` replicates back"),
        "{:?}",
        loaded.diagnostics
    );
    // An unknown step is named with the nearest one; a missing one is asked for.
    let loaded = parse(&format!(
        "{FALLBACK}step end after sync\n  db.unfollow synk\n"
    ));
    assert_eq!(loaded.diagnostics[0].code, "unknown-name");
    assert!(
        loaded.diagnostics[0]
            .help
            .as_deref()
            .is_some_and(|h| h.contains("did you mean `sync`")),
        "{:?}",
        loaded.diagnostics
    );
    assert_eq!(
        codes(&format!("{FALLBACK}step end after sync\n  db.unfollow\n")),
        ["bad-kind-args"]
    );
    assert_eq!(
        codes(&format!(
            "{FALLBACK}step end after sync\n  db.unfollow sync sync\n"
        )),
        ["bad-kind-args"]
    );
}
