//! The DNS and copy kinds driven by the real engine against real targets:
//! an embedded authoritative primary with a lagging secondary on loopback,
//! TSIG-signed updates, and host folders holding an image and a database.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cutover_dns::{
    RecordType, SecondaryConfig, ServeConfig, ServerHandle, TsigKey, ZoneSource, query, serve,
    serve_secondary,
};
use cutover_engine::{
    Controls, Engine, NoPrompter, NoReporter, Opened, RunOptions, RunOutcome, open_run,
};
use cutover_steps::Kinds;
use cutover_store::{Phase, Store};

const KEY_FILE: &str = "key \"lab-key\" {\n  algorithm hmac-sha256;\n  secret \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=\";\n};\n";

const ZONE: &str = "$ORIGIN lab.test.
$TTL 60
@     IN SOA ns1.lab.test. hostmaster.lab.test. 1 1 1 600 5
@     IN NS  ns1.lab.test.
ns1   IN A   127.0.0.1
wiki  3 IN A 192.0.2.10
busy  60 IN A 192.0.2.100
pool  60 IN A 192.0.2.1
pool  60 IN A 192.0.2.2
@     60 IN CAA 0 issue \"letsencrypt.org\"
";

struct Lab {
    dir: tempfile::TempDir,
    primary: ServerHandle,
    secondary: ServerHandle,
}

impl Lab {
    async fn start(lag: Duration) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lab.key"), KEY_FILE).unwrap();
        std::fs::write(dir.path().join("lab.test.zone"), ZONE).unwrap();
        let key = TsigKey::from_file(&dir.path().join("lab.key"), None, None).unwrap();
        let primary = serve(ServeConfig {
            zones: vec![ZoneSource {
                name: "lab.test".into(),
                file: dir.path().join("lab.test.zone"),
            }],
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            keys: vec![key],
            state_dir: dir.path().join("primary-state"),
            allow_transfer: vec!["127.0.0.1".parse().unwrap()],
        })
        .await
        .unwrap();
        let secondary = serve_secondary(SecondaryConfig {
            zones: vec!["lab.test".into()],
            primary: primary.addresses()[0],
            key: None,
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            lag,
            check_every: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
        })
        .await
        .unwrap();
        Lab {
            dir,
            primary,
            secondary,
        }
    }

    fn primary(&self) -> SocketAddr {
        self.primary.addresses()[0]
    }

    fn secondary(&self) -> SocketAddr {
        self.secondary.addresses()[0]
    }

    fn runbook(&self, steps: &str) -> String {
        format!(
            "runbook kinds-test
  window 2026-01-01 00:00 UTC for 1h

key lab-key hmac-sha256 file:lab.key

zone lab.test
  primary {primary} key lab-key
  verify  {primary}, {secondary}

host old  site a  addr 127.0.0.10  via local old
host new  site b  addr 127.0.0.20  via local new
{steps}",
            primary = self.primary(),
            secondary = self.secondary()
        )
    }

    /// Runs `text` to its end with the real engine and kinds.
    async fn run(&self, text: &str) -> (RunOutcome, Store) {
        let path = self.dir.path().join("test.runbook");
        std::fs::write(&path, text).unwrap();
        let loaded = cutover_lang::load_file(&path);
        let runbook = loaded.runbook.unwrap_or_else(|| {
            panic!(
                "{}",
                cutover_lang::render_human(&loaded.sources, &loaded.diagnostics, false)
            )
        });
        let state_path = self.dir.path().join(".cutover/test.db");
        let store = Store::open(&state_path).unwrap();
        let state = match open_run(
            store,
            &runbook,
            &path.display().to_string(),
            "hash",
            Some(Utc::now()),
        )
        .unwrap()
        {
            Opened::New(state) | Opened::Resumed(state) => state,
            Opened::Changed { .. } => panic!("a fresh state file cannot hold a changed run"),
        };
        let options = RunOptions {
            runbook_dir: self.dir.path().to_path_buf(),
            default_timeout: Duration::from_secs(20),
            ..RunOptions::default()
        };
        let engine = Engine {
            runbook: &runbook,
            kinds: &Kinds,
            reporter: &NoReporter,
            prompter: &NoPrompter,
            options: &options,
        };
        let outcome = tokio::time::timeout(
            Duration::from_secs(60),
            engine.run(&state, &Controls::default()),
        )
        .await
        .expect("the run ends within a minute")
        .unwrap();
        drop(state);
        (outcome, Store::open(&state_path).unwrap())
    }
}

async fn served(server: SocketAddr, name: &str) -> (Vec<String>, Option<u32>) {
    let answer = query(
        server,
        "lab.test",
        name,
        RecordType::A,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    (answer.values, answer.ttl)
}

fn write_image(path: &Path, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut data = vec![0u8; 3 << 20];
    for (i, byte) in data.iter_mut().enumerate().skip(1 << 20).take(1 << 20) {
        *byte = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    std::fs::write(path, data).unwrap();
}

fn write_database(path: &Path, rows: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch("CREATE TABLE pages (id INTEGER PRIMARY KEY, title TEXT NOT NULL);")
        .unwrap();
    for id in 0..rows {
        db.execute(
            "INSERT INTO pages (id, title) VALUES (?1, ?2)",
            (id, format!("page {id}")),
        )
        .unwrap();
    }
}

fn event_log(store: &Store, run: i64) -> String {
    let events = store.events(run).unwrap().into_iter();
    events
        .map(|e| format!("{:?} {} {}", e.step, e.kind, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}

fn evidence_at(
    store: &Store,
    run: i64,
    step: &str,
    phase: Phase,
) -> (DateTime<Utc>, serde_json::Value) {
    let record = store
        .latest_evidence(run, step, phase)
        .unwrap()
        .unwrap_or_else(|| panic!("{step} has {phase:?} evidence"));
    (record.at, record.data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_lowers_copies_syncs_and_switches_verified_at_both_servers() {
    let lab = Lab::start(Duration::from_secs(1)).await;
    write_image(&lab.dir.path().join("old/img/disk.img"), 7);
    write_image(&lab.dir.path().join("new/img/disk.img"), 9);
    write_database(&lab.dir.path().join("old/db/app.sqlite"), 500);
    std::fs::create_dir_all(lab.dir.path().join("new/db")).unwrap();
    let text = lab.runbook(
        "
step lower
  dns.ttl lab.test wiki A 1 was 3s

step copy-image after lower
  image.copy old:/img/disk.img -> new:/img/disk.img

step sync-db after lower
  db.sync sqlite old:/db/app.sqlite -> new:/db/app.sqlite

step switch after copy-image, sync-db
  dns.switch lab.test wiki A 192.0.2.10 -> 192.0.2.20
  undo dns.switch lab.test wiki A 192.0.2.20 -> 192.0.2.10
",
    );
    let (outcome, store) = lab.run(&text).await;
    let run = store.latest_run().unwrap().unwrap().id;
    assert_eq!(outcome, RunOutcome::Completed, "{}", event_log(&store, run));

    // Both servers serve the new value, with the lowered TTL kept.
    for server in [lab.primary(), lab.secondary()] {
        assert_eq!(
            served(server, "wiki").await,
            (vec!["192.0.2.20".to_string()], Some(1))
        );
    }

    // The lowering recorded the TTL it replaced; the switch waited it out.
    let (_, lowered) = evidence_at(&store, run, "lower", Phase::Act);
    assert_eq!(lowered["changes"][0]["previous_ttl"], 3);
    let (lower_verified, _) = evidence_at(&store, run, "lower", Phase::Verify);
    let (switched_at, switch) = evidence_at(&store, run, "switch", Phase::Act);
    assert_eq!(switch["ttl_wait"]["old_ttl"], 3);
    assert!(
        switched_at - lower_verified >= chrono::Duration::seconds(3),
        "switched {switched_at}, lowered {lower_verified}"
    );
    assert_eq!(switch["swapped"], true);

    // Verified at the lagging secondary only once it served the new serial.
    let (_, verified) = evidence_at(&store, run, "switch", Phase::Verify);
    let servers = verified["records"][0]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    for server in servers {
        assert_eq!(server["values"][0], "192.0.2.20");
        assert!(server["serial"].as_u64().unwrap() >= switch["serial"].as_u64().unwrap());
    }

    // The image and the database arrived whole.
    let source = std::fs::read(lab.dir.path().join("old/img/disk.img")).unwrap();
    assert_eq!(
        std::fs::read(lab.dir.path().join("new/img/disk.img")).unwrap(),
        source
    );
    let (_, copied) = evidence_at(&store, run, "copy-image", Phase::Act);
    assert!(
        copied["bytes_sent"].as_u64().unwrap() <= 1 << 20,
        "only the differing data is sent: {copied}"
    );
    assert_eq!(
        copied["in_place"], true,
        "the old image is patched: {copied}"
    );
    let (_, verified) = evidence_at(&store, run, "copy-image", Phase::Verify);
    assert_eq!(
        verified["verified_by"], "act",
        "the copy's own verification is taken: {verified}"
    );
    let db = rusqlite::Connection::open(lab.dir.path().join("new/db/app.sqlite")).unwrap();
    let rows: i64 = db
        .query_row("SELECT count(*) FROM pages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 500);
    let (_, synced) = evidence_at(&store, run, "sync-db", Phase::Verify);
    assert_eq!(synced["destination"][0]["rows"], 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_whose_record_is_not_the_expected_old_value_changes_nothing() {
    let lab = Lab::start(Duration::ZERO).await;
    let text = lab.runbook(
        "
step switch
  dns.switch lab.test wiki A 192.0.2.99 -> 192.0.2.20
  timeout 2s
",
    );
    let (outcome, store) = lab.run(&text).await;
    assert_eq!(
        outcome,
        RunOutcome::Failed {
            step: "switch".into()
        }
    );
    assert_eq!(
        served(lab.primary(), "wiki").await.0,
        vec!["192.0.2.10".to_string()]
    );
    let run = store.latest_run().unwrap().unwrap().id;
    let failure = store
        .events(run)
        .unwrap()
        .into_iter()
        .filter(|e| e.step.as_deref() == Some("switch"))
        .map(|e| e.message)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        failure.contains("not what the runbook expects"),
        "{failure}"
    );
    assert!(
        failure.contains("192.0.2.10"),
        "the failure names what was observed: {failure}"
    );
}

/// One pass: the check before the act leaves the comparison to the copy,
/// which finds the image already equal and leaves it untouched; the
/// verification takes the copy's own result instead of reading both images
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_copy_already_in_place_is_compared_once_and_left_untouched() {
    use std::os::unix::fs::MetadataExt;
    let lab = Lab::start(Duration::ZERO).await;
    write_image(&lab.dir.path().join("old/img/disk.img"), 1);
    let dest = lab.dir.path().join("new/img/disk.img");
    write_image(&dest, 1);
    let before = std::fs::metadata(&dest).unwrap();
    let text = lab.runbook(
        "
step copy-image
  image.copy old:/img/disk.img -> new:/img/disk.img
",
    );
    let (outcome, store) = lab.run(&text).await;
    assert_eq!(outcome, RunOutcome::Completed);
    let run = store.latest_run().unwrap().unwrap().id;
    let (_, acted) = evidence_at(&store, run, "copy-image", Phase::Act);
    assert_eq!(acted["outcome"], "already-equal", "{acted}");
    assert_eq!(acted["bytes_sent"], 0, "{acted}");
    let (_, verified) = evidence_at(&store, run, "copy-image", Phase::Verify);
    assert_eq!(verified["verified_by"], "act", "{verified}");
    assert_eq!(verified["hash"], acted["hash"], "{verified}");
    let after = std::fs::metadata(&dest).unwrap();
    assert_eq!(
        (after.ino(), after.mtime(), after.mtime_nsec()),
        (before.ino(), before.mtime(), before.mtime_nsec()),
        "the destination was not rewritten"
    );
}

/// Another writer changes the zone about three times a second (DHCP, ACME,
/// a colleague) while a switch waits for a secondary that follows by
/// refreshing, without NOTIFY: the switch is verified once the secondary
/// serves the new value at the update's serial or later, although the
/// primary's serial keeps moving ahead of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_on_a_zone_others_keep_changing_verifies_once_the_secondary_serves_it() {
    let lab = Lab::start(Duration::from_secs(1)).await;
    let key = TsigKey::from_file(&lab.dir.path().join("lab.key"), None, None).unwrap();
    let writer = cutover_dns::Updater::new(lab.primary(), Some(key), Duration::from_secs(2));
    let busy = tokio::spawn(async move {
        // Bounded: at most 200 changes (about a minute), stopped at the end.
        for n in 0..200u32 {
            let (old, new) = (
                format!("192.0.2.{}", 100 + n % 100),
                format!("192.0.2.{}", 100 + (n + 1) % 100),
            );
            let _ = writer
                .compare_and_swap(
                    "lab.test",
                    "busy",
                    RecordType::A,
                    &[old.as_str()],
                    &[new.as_str()],
                    60,
                )
                .await;
            tokio::time::sleep(Duration::from_millis(330)).await;
        }
    });
    let text = lab.runbook(
        "
step switch
  dns.switch lab.test wiki A 192.0.2.10 -> 192.0.2.20
  timeout 20s
",
    );
    let (outcome, store) = lab.run(&text).await;
    busy.abort();
    let run = store.latest_run().unwrap().unwrap().id;
    assert_eq!(outcome, RunOutcome::Completed, "{}", event_log(&store, run));
    let (_, switch) = evidence_at(&store, run, "switch", Phase::Act);
    let (_, verified) = evidence_at(&store, run, "switch", Phase::Verify);
    let update_serial = switch["serial"].as_u64().unwrap();
    for server in verified["records"][0]["servers"].as_array().unwrap() {
        assert_eq!(server["values"][0], "192.0.2.20", "{verified}");
        assert!(
            server["serial"].as_u64().unwrap() >= update_serial,
            "{verified}"
        );
    }
    // Each server's first sighting of the new value, with its lag.
    let first = verified["servers"].as_array().unwrap();
    assert_eq!(first.len(), 2, "{verified}");
    assert!(
        first.iter().all(|s| s["lag_seconds"].as_f64().is_some()),
        "{verified}"
    );
    // Not before: the secondary, one second late, was first seen serving
    // the new value at least most of that second after the update, and
    // the verification came no earlier than that sighting.
    let (acted_at, _) = evidence_at(&store, run, "switch", Phase::Act);
    let (verified_at, _) = evidence_at(&store, run, "switch", Phase::Verify);
    let secondary = lab.secondary().to_string();
    let sighting = first
        .iter()
        .find(|s| s["server"] == secondary.as_str())
        .unwrap_or_else(|| panic!("{verified}"));
    let seen_at: DateTime<Utc> = sighting["first_served_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        sighting["lag_seconds"].as_f64().unwrap() >= 0.5,
        "{verified}"
    );
    assert!(seen_at >= acted_at && verified_at >= seen_at, "{verified}");
    // As soon as: within a poll or two (at most 5 s apart) of the sighting.
    assert!(
        (verified_at - seen_at).num_milliseconds() < 5_500,
        "{verified}"
    );
    let log = event_log(&store, run);
    assert!(
        log.contains(&format!("waiting on {secondary}: serial ")),
        "{log}"
    );
    assert!(
        log.contains(&format!("{secondary} serves the new value at serial")),
        "{log}"
    );
}

/// Whole RRsets through the engine: `pool A 192.0.2.1, 192.0.2.2 -> 198.51.100.1` and the
/// apex CAA set changed from one value to two, each verified at the primary and at the
/// secondary that follows a second late; a switch naming only part of the old set changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_value_and_caa_switches_are_verified_at_the_primary_and_the_lagging_secondary() {
    let lab = Lab::start(Duration::from_secs(1)).await;
    let partial = lab.runbook(
        "
step part
  dns.switch lab.test pool A 192.0.2.1 -> 198.51.100.1
  timeout 2s
",
    );
    let (outcome, store) = lab.run(&partial).await;
    assert!(matches!(outcome, RunOutcome::Failed { .. }), "{outcome:?}");
    let run = store.latest_run().unwrap().unwrap().id;
    let log = event_log(&store, run);
    assert!(
        log.contains("observed 192.0.2.1, 192.0.2.2") && log.contains("nothing was changed"),
        "{log}"
    );
    drop(store);
    std::fs::remove_dir_all(lab.dir.path().join(".cutover")).unwrap();

    let text = lab.runbook(
        r#"
step pool
  dns.switch lab.test pool A 192.0.2.1, 192.0.2.2 -> 198.51.100.1
  timeout 20s

step caa after pool
  dns.switch lab.test @ CAA "0 issue \"letsencrypt.org\"" -> "0 issue \"pki.goog\"", "0 iodef \"mailto:ops@lab.test\""
  timeout 20s
"#,
    );
    let (outcome, store) = lab.run(&text).await;
    let run = store.latest_run().unwrap().unwrap().id;
    assert_eq!(outcome, RunOutcome::Completed, "{}", event_log(&store, run));
    for (step, wanted) in [
        ("pool", vec!["198.51.100.1"]),
        (
            "caa",
            vec!["0 iodef \"mailto:ops@lab.test\"", "0 issue \"pki.goog\""],
        ),
    ] {
        let (_, acted) = evidence_at(&store, run, step, Phase::Act);
        let (_, verified) = evidence_at(&store, run, step, Phase::Verify);
        let servers = verified["records"][0]["servers"].as_array().unwrap();
        assert_eq!(servers.len(), 2, "{verified}");
        for server in servers {
            assert_eq!(server["values"], serde_json::json!(wanted), "{verified}");
            assert!(
                server["serial"].as_u64().unwrap() >= acted["serial"].as_u64().unwrap(),
                "{verified}"
            );
        }
        // The secondary, a second late, was seen serving the new set after the primary.
        let first = verified["servers"].as_array().unwrap();
        let secondary = first
            .iter()
            .find(|s| s["server"] == lab.secondary().to_string().as_str())
            .unwrap_or_else(|| panic!("{verified}"));
        assert!(
            secondary["lag_seconds"].as_f64().unwrap() >= 0.5,
            "{verified}"
        );
    }
    let (_, pool) = evidence_at(&store, run, "pool", Phase::Act);
    assert_eq!(
        pool["old_values"],
        serde_json::json!(["192.0.2.1", "192.0.2.2"])
    );
    assert_eq!(pool["old"], "192.0.2.1, 192.0.2.2");
}
