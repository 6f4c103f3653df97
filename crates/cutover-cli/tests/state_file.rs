//! The state file as the real `cutover` binary meets it: a damaged file, an
//! empty or foreign file at the state path, and two coordinators started
//! at the same instant on a fresh state path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cutover(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .env("USER", "tester");
    cmd
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/store")
        .join(name)
}

/// A SQLite database file read just far enough to find the pages of one
/// table: the header's page size, `sqlite_master` (rooted at page 1) and
/// the table b-tree's leaves. Enough for the small files of these tests.
struct DbFile {
    bytes: Vec<u8>,
    page_size: usize,
}

fn varint(b: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    for (i, &byte) in b.iter().enumerate().take(9) {
        if i == 8 {
            return ((value << 8) | u64::from(byte), 9);
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    panic!("truncated varint")
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl DbFile {
    fn read(path: &Path) -> DbFile {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..16], b"SQLite format 3\0");
        let page_size = match be16(&bytes, 16) {
            1 => 65536,
            n => n,
        };
        DbFile { bytes, page_size }
    }

    fn page(&self, n: u32) -> &[u8] {
        let start = (n as usize - 1) * self.page_size;
        &self.bytes[start..start + self.page_size]
    }

    /// The leaf pages of the table b-tree rooted at `root`, left to right.
    fn leaves(&self, root: u32, out: &mut Vec<u32>) {
        let page = self.page(root);
        let h = if root == 1 { 100 } else { 0 };
        match page[h] {
            0x0d => out.push(root),
            0x05 => {
                for i in 0..be16(page, h + 3) {
                    let cell = be16(page, h + 12 + 2 * i);
                    self.leaves(be32(page, cell), out);
                }
                self.leaves(be32(page, h + 8), out);
            }
            other => panic!("page {root} is not a table b-tree page ({other:#x})"),
        }
    }

    /// The root page of table `name`, from `sqlite_master`'s rows (type,
    /// name, tbl_name, rootpage, sql).
    fn root_of(&self, name: &str) -> u32 {
        let mut leaves = Vec::new();
        self.leaves(1, &mut leaves);
        for leaf in leaves {
            let page = self.page(leaf);
            let h = if leaf == 1 { 100 } else { 0 };
            for i in 0..be16(page, h + 3) {
                let cell = be16(page, h + 8 + 2 * i);
                let (_, a) = varint(&page[cell..]);
                let (_, b) = varint(&page[cell + a..]);
                let record = &page[cell + a + b..];
                let (header_len, mut at) = varint(record);
                let mut types = Vec::new();
                while at < header_len as usize {
                    let (t, n) = varint(&record[at..]);
                    types.push(t);
                    at += n;
                }
                let mut body = header_len as usize;
                let mut columns = Vec::new();
                for t in types.iter().take(4) {
                    let len = match t {
                        0 | 8 | 9 => 0,
                        1..=4 => *t as usize,
                        5 => 6,
                        6 | 7 => 8,
                        t if t % 2 == 1 => ((t - 13) / 2) as usize,
                        t => ((t - 12) / 2) as usize,
                    };
                    columns.push((*t, &record[body..body + len]));
                    body += len;
                }
                let is_table = columns[0].1 == b"table";
                if is_table && columns[1].1 == name.as_bytes() {
                    let (t, root) = columns[3];
                    assert!((1..=4).contains(&t), "rootpage of {name}: type {t}");
                    return root.iter().fold(0, |v, &b| (v << 8) | u32::from(b));
                }
            }
        }
        panic!("no table {name}")
    }
}

/// Overwrites a leaf page in the middle of the `events` b-tree with junk.
fn damage_the_event_log(db: &Path) {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    assert!(
        !Path::new(&wal).exists(),
        "the last connection checkpoints the WAL into the file"
    );
    let file = DbFile::read(db);
    let mut leaves = Vec::new();
    file.leaves(file.root_of("events"), &mut leaves);
    assert!(leaves.len() >= 8, "a long event log: {leaves:?}");
    let page = leaves[leaves.len() / 2];
    let mut bytes = file.bytes.clone();
    let start = (page as usize - 1) * file.page_size;
    bytes[start..start + file.page_size].fill(0xA5);
    std::fs::write(db, bytes).unwrap();
}

#[test]
fn a_damaged_state_file_is_refused_by_run_confirm_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A chain of waits (three events or so each), then a step that acts.
    let mut text = String::from("runbook long\n\nstep s000\n  wait 0s\n\n");
    for i in 1..300 {
        text.push_str(&format!("step s{i:03} after s{:03}\n  wait 0s\n\n", i - 1));
    }
    text.push_str("step mark after s299\n  exec \"echo acted >> j\"\n");
    write(d, "long.runbook", &text);
    let (code, out, err) = output(cutover(d).args(["run", "long.runbook", "--until", "s299"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!d.join("j").exists());

    let db = d.join(".cutover/long.db");
    damage_the_event_log(&db);
    let damaged = std::fs::read(&db).unwrap();

    for args in [
        &["run", "long.runbook"][..],
        &["run", "long.runbook", "--take-over", "--yes"],
        &["confirm", "mark", "long.runbook"],
        &["rollback", "long.runbook"],
        &["status", "long.runbook"],
    ] {
        let (code, out, err) = output(cutover(d).args(args));
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.starts_with("error: state file ") && err.contains(".cutover/long.db is damaged ("),
            "{args:?}: {err}"
        );
        assert!(err.contains("btreeInitPage"), "{args:?}: {err}");
        assert!(
            err.contains("do not run against it: restore it from a backup"),
            "{err}"
        );
    }
    assert!(!d.join("j").exists(), "nothing acted");
    assert_eq!(std::fs::read(&db).unwrap(), damaged, "nothing written");
}

#[test]
fn an_empty_a_text_or_a_foreign_file_at_the_state_path_is_refused_and_nothing_runs() {
    let foreign = std::fs::read(fixture("foreign.sqlite")).unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        ("empty", b"", "the file is empty"),
        (
            "text",
            b"state: all done\nnothing to see here\n",
            "not an SQLite database",
        ),
        ("foreign", &foreign, "without cutover's schema"),
    ];
    for (what, content, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "m.runbook",
            "runbook m\n\nstep act\n  exec \"echo acted >> j\"\n",
        );
        std::fs::create_dir(d.join(".cutover")).unwrap();
        let db = d.join(".cutover/m.db");
        std::fs::write(&db, content).unwrap();
        let (code, out, err) = output(cutover(d).args(["run", "m.runbook"]));
        assert_eq!(code, 2, "{what}: {out}{err}");
        assert!(
            err.starts_with("error: ") && err.contains(".cutover/m.db is not a cutover state file"),
            "{what}: {err}"
        );
        assert!(err.contains(reason), "{what}: {err}");
        assert!(!d.join("j").exists(), "{what}: nothing acted");
        assert_eq!(
            std::fs::read(&db).unwrap(),
            content,
            "{what}: left as it is"
        );

        // An explicit --state path is refused the same way.
        let other = d.join("other.db");
        std::fs::write(&other, content).unwrap();
        let (code, _, err) =
            output(cutover(d).args(["run", "m.runbook", "--state", other.to_str().unwrap()]));
        assert_eq!(code, 2, "{what}: {err}");
        assert!(err.contains(other.to_str().unwrap()), "{what}: {err}");
        assert!(!d.join("j").exists(), "{what}: nothing acted");
    }
}

#[test]
fn a_new_state_file_appears_complete_and_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "m.runbook",
        "runbook m\n\nstep act\n  exec \"echo acted >> j\"\n",
    );
    let (code, out, err) = output(cutover(d).args(["run", "m.runbook"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read_to_string(d.join("j")).unwrap(), "acted\n");
    let names: Vec<String> = std::fs::read_dir(d.join(".cutover"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["m.db"], "no temporary file, no WAL left behind");
}

/// Kills a child if a test ends early, so none is left running.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn of_two_coordinators_started_at_once_one_runs_and_the_other_names_it() {
    let deadline = Instant::now() + Duration::from_secs(90);
    for round in 0..6 {
        assert!(Instant::now() < deadline, "round {round}: out of time");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "race.runbook",
            "runbook race\n\nstep hold\n  wait 2s\n\nstep mark after hold\n  exec \"echo ran >> j\"\n",
        );
        // Both wait, spinning (a bounded number of turns), for `go`, then
        // become `cutover run` (same pid) on the same fresh state path.
        let start = || {
            let child = Command::new("sh")
                .current_dir(d)
                .env("USER", "tester")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .args([
                    "-c",
                    "i=0; while [ ! -e go ] && [ $i -lt 100000 ]; do i=$((i+1)); done; exec \"$0\" run race.runbook",
                    env!("CARGO_BIN_EXE_cutover"),
                ])
                .spawn()
                .unwrap();
            Reap(child)
        };
        let mut a = start();
        let mut b = start();
        std::thread::sleep(Duration::from_millis(30));
        std::fs::write(d.join("go"), "").unwrap();

        let finish = |child: &mut Reap| {
            let pid = child.0.id();
            let stop = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.0.try_wait().unwrap() {
                    let mut err = String::new();
                    if let Some(mut stderr) = child.0.stderr.take() {
                        std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
                    }
                    return (pid, status.code().unwrap_or(-1), err);
                }
                assert!(
                    Instant::now() < stop,
                    "round {round}: pid {pid} still running"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let results = [finish(&mut a), finish(&mut b)];
        let winners: Vec<_> = results.iter().filter(|r| r.1 == 0).collect();
        let losers: Vec<_> = results.iter().filter(|r| r.1 == 2).collect();
        assert!(
            winners.len() == 1 && losers.len() == 1,
            "round {round}: {results:?}"
        );
        let (winner, _, _) = winners[0];
        let (_, _, err) = losers[0];
        assert!(!err.contains("database is locked"), "round {round}: {err}");
        assert!(
            err.contains("in use by another coordinator: tester@")
                && err.contains(&format!("(pid {winner}) since ")),
            "round {round}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("j")).unwrap(),
            "ran\n",
            "round {round}: acted once"
        );
    }
}
