//! db.sync confined to a root against races: while databases are synced
//! within a root (the source's snapshot and the destination beside each
//! other), another thread swaps their folder for a link that leads out of
//! the root, to a folder holding databases and companion files of the same
//! names. SQLite creates, checkpoints and removes files beside a database;
//! none of that may happen outside the root.

mod support;

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use support::snapshot;

use cutover_copy::{CopyOptions, ErrorKind, Location, sync_sqlite, table_checksums};
use rusqlite::Connection;

/// Syncs tried: at least [`TRIES`] (of which [`SYNCED`] got through), at
/// most [`MAX_TRIES`], for [`BUDGET`] at most.
const TRIES: u64 = 1_000;
const SYNCED: u64 = 100;
const MAX_TRIES: u64 = 20_000;
const BUDGET: Duration = Duration::from_secs(25);

fn database(path: &Path, rows: i64) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT OR REPLACE INTO t VALUES (?1, ?2)",
            rusqlite::params![i, format!("row {i}")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// The databases' folder is swapped, again and again, for a link to a
/// folder outside the root that holds a source and a destination database
/// of the same names, with a log, an index and a journal beside the
/// destination: a sync that followed the link would snapshot, settle,
/// replace or remove something there.
#[test]
fn a_folder_swapped_for_a_link_out_of_the_root_is_not_followed_by_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    let real = root.join("data");
    fs::create_dir_all(&real).unwrap();
    fs::create_dir(&outside).unwrap();
    database(&outside.join("live.sqlite"), 3);
    database(&outside.join("copy.sqlite"), 2);
    for suffix in ["-wal", "-shm", "-journal"] {
        fs::write(
            outside.join(format!("copy.sqlite{suffix}")),
            b"outside the root",
        )
        .unwrap();
    }
    let before = snapshot(&outside);
    database(&real.join("live.sqlite"), 200);

    let moved = root.join("data.moved");
    let stop = AtomicBool::new(false);
    let synced = AtomicU64::new(0);
    let last_error = Mutex::new(None);
    thread::scope(|scope| {
        let meddler = scope.spawn(|| {
            let mut round = 0;
            while !stop.load(Ordering::SeqCst) && round < 1_000_000 {
                if fs::rename(&real, &moved).is_ok() {
                    let _ = std::os::unix::fs::symlink(&outside, &real);
                    thread::yield_now();
                    let _ = fs::remove_file(&real);
                    let _ = fs::rename(&moved, &real);
                }
                // Long enough between swaps for a sync to get through.
                thread::sleep(Duration::from_micros(300 * (round % 8)));
                round += 1;
            }
        });
        let started = Instant::now();
        for tries in 0..MAX_TRIES {
            let enough = tries >= TRIES && synced.load(Ordering::SeqCst) >= SYNCED;
            if enough || started.elapsed() > BUDGET {
                break;
            }
            let rooted = |path: &str| Location::Rooted {
                root: root.clone(),
                path: path.to_string(),
            };
            let result = sync_sqlite(
                &rooted("data/live.sqlite"),
                &rooted("data/copy.sqlite"),
                &CopyOptions::default(),
            );
            match result {
                Ok(_) => {
                    synced.fetch_add(1, Ordering::SeqCst);
                }
                Err(err) => *last_error.lock().unwrap() = Some(err.to_string()),
            }
        }
        stop.store(true, Ordering::SeqCst);
        meddler.join().unwrap();
    });
    if !real.is_dir() {
        fs::rename(&moved, &real).unwrap();
    }
    let synced = synced.into_inner();
    assert!(
        synced > 0,
        "no sync got through; the last error: {:?}",
        last_error.into_inner().unwrap()
    );
    let after = snapshot(&outside);
    let names = |entries: &[(String, Vec<u8>)]| -> Vec<String> {
        entries.iter().map(|(name, _)| name.clone()).collect()
    };
    assert_eq!(
        names(&after),
        names(&before),
        "a sync created or removed files outside the root ({synced} of them got through)"
    );
    assert!(
        after == before,
        "a sync changed a file outside the root ({synced} of them got through)"
    );
}

/// A database named through a link beneath the root is synced where the
/// link leads (its snapshot taken and removed there); one whose link leads
/// out of the root is refused.
#[test]
fn a_database_named_through_a_link_is_synced_where_it_leads_beneath_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    for folder in ["real", "data", "copies"] {
        fs::create_dir_all(root.join(folder)).unwrap();
    }
    fs::create_dir(&outside).unwrap();
    database(&root.join("real/live.sqlite"), 50);
    database(&outside.join("live.sqlite"), 5);
    std::os::unix::fs::symlink("../real/live.sqlite", root.join("data/link.sqlite")).unwrap();
    std::os::unix::fs::symlink(outside.join("live.sqlite"), root.join("data/out.sqlite")).unwrap();
    let rooted = |path: &str| Location::Rooted {
        root: root.clone(),
        path: path.to_string(),
    };
    let report = sync_sqlite(
        &rooted("data/link.sqlite"),
        &rooted("copies/copy.sqlite"),
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(report.tables.len(), 1);
    assert_eq!(report.tables[0].rows, 50);
    assert_eq!(
        table_checksums(&rooted("copies/copy.sqlite")).unwrap(),
        table_checksums(&rooted("real/live.sqlite")).unwrap()
    );
    let names = |folder: &str| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root.join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("real"), ["live.sqlite"], "the snapshot was left");
    assert_eq!(names("data"), ["link.sqlite", "out.sqlite"]);

    let err = sync_sqlite(
        &rooted("data/out.sqlite"),
        &rooted("copies/other.sqlite"),
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::OutsideRoot, "{err}");
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        1,
        "a snapshot was taken outside the root"
    );
}
