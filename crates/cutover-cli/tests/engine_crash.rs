//! The crash test: a lab-like cutover run by the real binary, killed with
//! SIGKILL at random instants and resumed each time, then rolled back and
//! killed again while it rolls back.
//!
//! The runbook (see [`runbook`]) has a chain of 30 steps (exec steps
//! appending to a journal with idempotent checks, waits, port checks against
//! loopback listeners) and, beside it, a cutover between two `via local`
//! hosts: a DNS TTL lowered against an authoritative server embedded in this
//! process, pre-copies of two sparse images, an exec step that writes into
//! one of them as a running VM would, the final syncs, a `db.sync` of a
//! SQLite database, the DNS switch (with its `undo`) and the TTL restored.
//!
//! Checked after the run: every step is done; no exec action is in the
//! journal more than once or after its verification; no step acted after it
//! was done; every DNS update was made once (the zone's serial); the
//! destination images are byte-identical to the sources and the database
//! copy's tables equal the source's; the record has its new value; the state
//! file passes `PRAGMA integrity_check`; and `cutover export --format json`
//! lists one crashed session for every killed attempt that had recorded its
//! session's start (`run started…` or `run running`) and not its end. The
//! state file is read (read-only) before and after each attempt to tell: a
//! kill before the attempt's start was recorded leaves no session (before
//! the first one, not even a run), one after its end leaves a finished one.
//!
//! A kill is a crash of the coordinator's machine: its process group, and
//! the commands it started in process groups of their own (this process
//! reaps them as a subreaper), are killed at once.
//!
//! Then `cutover rollback --yes` is killed at a few random instants and
//! resumed with `--take-over` until it exits 0: the run ends `rolled_back`,
//! every undo ran (none after its step was recorded undone), DNS is back to
//! the old value and TTL, and the export lists the rollback's crashes too.
//!
//! When the run completes before the kills are spent, another round starts
//! on a fresh lab, so any number of kills is reached.
//!
//! Session counts that do not hold, and files the copies left beside their
//! destinations, are collected and reported at the end,
//! with the event log's evidence; everything else fails at once.
//!
//! `CUTOVER_CRASH_KILLS=N` sets the number of kills of `cutover run`
//! (default 100; `just crash-test` runs 1,000); `CUTOVER_CRASH_ROLLBACK_KILLS=N` those of each rollback
//! (default 5); `CUTOVER_CRASH_SEED` replays a sequence of kill instants.

use chrono::{DateTime, Utc};
use cutover_store::{RunStatus, StepStatus, Store};
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Steps of the exec/wait/port chain.
const CHAIN: usize = 30;
/// Rounds at most, whatever the kill count (each ends a complete run).
const MAX_ROUNDS: usize = 40;
/// Kill instants are drawn below this many milliseconds at first; the bound
/// grows while kills keep landing before an attempt records anything new
/// (a resume re-checks every done step before it goes on), and shrinks back.
const MIN_DELAY_MS: u64 = 150;
/// The same for a rollback, which takes a fraction of a second.
const MIN_ROLLBACK_DELAY_MS: u64 = 100;
const MAX_DELAY_MS: u64 = 2_000;
/// No single command of the test may take longer than this.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

const ZONE: &str = "lab.test";
const OLD_A: &str = "192.0.2.1";
const NEW_A: &str = "192.0.2.2";
/// The record's TTL before the cutover (and after it); lowered to 1 s.
const TTL: u32 = 2;

const MIB: u64 = 1 << 20;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A loopback listener that accepts and drops connections until stopped
/// or for at most ten minutes.
fn listener(stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(600);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => drop(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    port
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An authoritative server for `lab.test` in this process (as in
/// `engine_run/signals.rs`), taking TSIG-signed updates, so it outlives
/// every killed coordinator.
struct DnsLab {
    runtime: tokio::runtime::Runtime,
    server: Option<cutover_dns::ServerHandle>,
    addr: std::net::SocketAddr,
}

impl DnsLab {
    fn start(dir: &Path, records: &str) -> DnsLab {
        std::fs::write(
            dir.join("lab.zone"),
            format!(
                "$ORIGIN lab.test.\n$TTL 60\n@ IN SOA ns1.lab.test. hostmaster.lab.test. 1 60 60 600 5\n@ IN NS ns1.lab.test.\nns1 IN A 127.0.0.1\n{records}"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("update.key"), "c2VjcmV0LWZvci10aGUtbGFiLXpvbmU=\n").unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let key = cutover_dns::TsigKey::new(
            "update",
            cutover_dns::TsigAlgorithm::HmacSha256,
            b"secret-for-the-lab-zone".to_vec(),
        )
        .unwrap();
        let server = runtime
            .block_on(cutover_dns::serve(cutover_dns::ServeConfig {
                zones: vec![cutover_dns::ZoneSource {
                    name: ZONE.into(),
                    file: dir.join("lab.zone"),
                }],
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                keys: vec![key],
                state_dir: dir.join("dns-state"),
                allow_transfer: Vec::new(),
            }))
            .unwrap();
        let addr = server.addresses()[0];
        DnsLab {
            runtime,
            server: Some(server),
            addr,
        }
    }

    /// What the server answers for `name` A now: values and TTL.
    fn a(&self, name: &str) -> (Vec<String>, Option<u32>) {
        let o = self
            .runtime
            .block_on(cutover_dns::query(
                self.addr,
                ZONE,
                name,
                cutover_dns::RecordType::A,
                Duration::from_secs(2),
            ))
            .unwrap();
        (o.values, o.ttl)
    }

    fn serial(&self) -> u32 {
        self.runtime
            .block_on(cutover_dns::soa(self.addr, ZONE, Duration::from_secs(2)))
            .unwrap()
            .serial
    }
}

impl Drop for DnsLab {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

/// A small xorshift generator: reproducible kill instants from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A sparse image of `size` bytes with data at a few offsets.
fn make_image(path: &Path, size: u64, extents: &[(u64, usize)], rng: &mut Rng) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::fs::File::create(path).unwrap();
    file.set_len(size).unwrap();
    for &(offset, len) in extents {
        let mut data = vec![0u8; len];
        rng.fill(&mut data);
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&data).unwrap();
    }
    file.sync_all().unwrap();
}

fn have_sqlite3() -> bool {
    Command::new("sqlite3")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The database `db.sync` copies: made with the `sqlite3` command where
/// there is one; otherwise a cutover state file (SQLite with tables and
/// rows) stands in for it.
fn make_database(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if have_sqlite3() {
        let sql = "PRAGMA journal_mode = WAL;
            CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
            CREATE TABLE pages (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author INTEGER NOT NULL REFERENCES accounts(id), body BLOB NOT NULL);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
              INSERT INTO accounts SELECT i, 'user' || i, 'user' || i || '@lab.test' FROM n;
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600)
              INSERT INTO pages SELECT i, 'Page ' || i, 1 + i % 200, randomblob(1000) FROM n;";
        let out = Command::new("sqlite3").arg(path).arg(sql).output().unwrap();
        assert!(
            out.status.success(),
            "sqlite3 could not make the database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        let store = Store::open(path).unwrap();
        store
            .create_run(&cutover_store::NewRun {
                runbook_name: "stand-in".into(),
                runbook_path: "stand-in.runbook".into(),
                content_hash: "0".repeat(64),
                operator: "crash-test".into(),
                t0: None,
                steps: (0..50)
                    .map(|i| cutover_store::NewStep {
                        name: format!("step{i}"),
                        definition: format!("step step{i}\n  wait {i}s\n"),
                        planned_start: None,
                    })
                    .collect(),
            })
            .unwrap();
    }
}

/// What a database holds, table by table (`sqlite3 .dump` where there is
/// one, and cutover's row counts and checksums).
fn database_content(path: &Path) -> (Option<String>, Vec<cutover_copy::TableChecksum>) {
    let dump = have_sqlite3().then(|| {
        let out = Command::new("sqlite3")
            .arg("-readonly")
            .arg(path)
            .arg(".dump")
            .output()
            .unwrap();
        assert!(out.status.success(), "sqlite3 .dump {}", path.display());
        String::from_utf8(out.stdout).unwrap()
    });
    let sums =
        cutover_copy::table_checksums(&cutover_copy::Location::Local(path.to_owned())).unwrap();
    (dump, sums)
}

/// The runbook, and the names of the steps that journal their action
/// (`journal`) and their undo (`undo-journal`).
struct Book {
    text: String,
    /// Exec steps whose act appends `NAME NANOS` to `journal`.
    journaled: Vec<String>,
    /// Steps whose undo appends `undo-NAME NANOS` to `undo-journal`.
    undo_journaled: Vec<String>,
    steps: usize,
}

/// An undo that journals itself, then takes a moment (so that kills of the
/// rollback land in undos too).
fn undo_line(name: &str) -> String {
    format!("  undo exec on lab \"echo undo-{name} $(date +%s%N) >> undo-journal && sleep 0.02\"\n")
}

fn runbook(dns: std::net::SocketAddr, open: &[u16], closed: u16) -> Book {
    let mut text = format!(
        "runbook crash\n  title \"crash test: a lab cutover\"\n  link old-dc -> new-dc 1Gbit\n\n\
         key update hmac-sha256 file:update.key\n\n\
         zone {ZONE}\n  primary {dns} key update\n  verify {dns}\n\n\
         host lab addr 127.0.0.1 via local .\n\
         host old site old-dc addr 127.0.0.2 via local old\n\
         host new site new-dc addr 127.0.0.3 via local new\n\n"
    );
    let mut journaled = Vec::new();
    let mut undo_journaled = Vec::new();
    let mut steps = 0;
    for i in 0..CHAIN {
        let name = format!("s{i:02}");
        // A chain with some fan-out: every step waits for one before it.
        let after = match i {
            0 => String::new(),
            i if i % 4 == 0 => format!(" after s{:02}", i - 2),
            i => format!(" after s{:02}", i - 1),
        };
        text.push_str(&format!("step {name}{after}\n"));
        match i % 10 {
            3 => text.push_str(&format!("  port.open lab:{}\n", open[i % open.len()])),
            6 => text.push_str("  wait 3s\n"),
            8 => text.push_str(&format!("  port.closed lab:{closed}\n")),
            _ => {
                text.push_str(&format!(
                    "  exec on lab \"echo {name} $(date +%s%N) >> journal\"\n  verify exec on lab \"grep -q '^{name} ' journal\"\n"
                ));
                text.push_str(&undo_line(&name));
                journaled.push(name.clone());
                undo_journaled.push(name);
            }
        }
        text.push('\n');
        steps += 1;
    }
    let lab_steps = [
        (
            "lower-ttl",
            "",
            format!(
                "  dns.ttl {ZONE} www A 1 was {TTL}\n  undo dns.ttl {ZONE} www A {TTL} was 1\n"
            ),
        ),
        (
            "precopy-disk",
            "",
            format!(
                "  image.copy old:/images/disk.img -> new:/images/disk.img size 6MiB\n{}",
                undo_line("precopy-disk")
            ),
        ),
        (
            "precopy-data",
            "",
            format!(
                "  image.copy old:/images/data.img -> new:/images/data.img size 3MiB\n{}",
                undo_line("precopy-data")
            ),
        ),
        (
            // The VM goes on writing after the pre-copy: a fixed text at a
            // fixed offset, so acting twice writes the same bytes.
            "vm-writes",
            " after precopy-disk",
            format!(
                "  exec on old \"printf 'written by the vm after the pre-copy' | dd of=images/disk.img bs=4096 seek=900 conv=notrunc status=none && echo vm-writes $(date +%s%N) >> ../journal\"\n  verify exec on lab \"grep -q '^vm-writes ' journal\"\n{}",
                undo_line("vm-writes")
            ),
        ),
        (
            "final-sync-disk",
            " after vm-writes",
            format!(
                "  image.copy old:/images/disk.img -> new:/images/disk.img size 6MiB\n{}",
                undo_line("final-sync-disk")
            ),
        ),
        (
            "final-sync-data",
            " after precopy-data",
            format!(
                "  image.copy old:/images/data.img -> new:/images/data.img size 3MiB\n{}",
                undo_line("final-sync-data")
            ),
        ),
        (
            "db",
            " after vm-writes",
            format!(
                "  db.sync sqlite old:/db/app.sqlite -> new:/db/app.sqlite size 1MiB\n{}",
                undo_line("db")
            ),
        ),
        (
            "switch-www",
            " after lower-ttl, final-sync-disk, final-sync-data, db",
            format!(
                "  dns.switch {ZONE} www A {OLD_A} -> {NEW_A}\n  undo dns.switch {ZONE} www A {NEW_A} -> {OLD_A}\n"
            ),
        ),
        (
            "restore-ttl",
            " after switch-www",
            format!(
                "  dns.ttl {ZONE} www A {TTL} was 1\n  undo dns.ttl {ZONE} www A 1 was {TTL}\n"
            ),
        ),
    ];
    for (name, after, body) in lab_steps {
        text.push_str(&format!("step {name}{after}\n{body}\n"));
        if name == "vm-writes" {
            journaled.push(name.to_owned());
        }
        if body.contains("undo exec") {
            undo_journaled.push(name.to_owned());
        }
        steps += 1;
    }
    Book {
        text,
        journaled,
        undo_journaled,
        steps,
    }
}

fn cutover(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so a kill takes what stayed in its group
        // with it, as a crash of the coordinator's machine would.
        .process_group(0);
    cmd
}

fn run_command(dir: &Path) -> Command {
    cutover(
        dir,
        &["run", "crash.runbook", "--take-over", "--parallel", "3"],
    )
}

fn kill_group(child: &Child) {
    let group = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
}

/// Makes this process the reaper of orphans: the commands a killed
/// coordinator started run in process groups of their own, so its kill
/// leaves them running, and they become children of this process.
fn become_subreaper() {
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me)).expect("prctl(PR_SET_CHILD_SUBREAPER)");
}

/// Kills (with their process groups) and reaps the orphans a killed
/// coordinator left: a crash of its machine would have taken them too, and
/// one left running could act after the resume checked its step. Call it
/// only while no child this test waits for is running. Returns how many.
fn kill_orphans() -> usize {
    let me = std::process::id();
    let mut killed = 0;
    for _ in 0..50 {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // `PID (COMM) STATE PPID PGRP ...`; COMM may hold spaces.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.get(1).and_then(|f| f.parse::<u32>().ok()) == Some(me) {
                found.push((pid, fields.get(2).and_then(|f| f.parse::<i32>().ok())));
            }
        }
        if found.is_empty() {
            return killed;
        }
        for (pid, pgrp) in found {
            use rustix::process::{Pid, Signal, WaitOptions};
            {
                if let Some(pgrp) = pgrp.filter(|g| *g > 1).and_then(Pid::from_raw) {
                    let _ = rustix::process::kill_process_group(pgrp, Signal::KILL);
                }
                let Some(pid) = Pid::from_raw(pid) else {
                    continue;
                };
                let _ = rustix::process::kill_process(pid, Signal::KILL);
                if let Ok(Some((reaped, _))) =
                    rustix::process::waitpid(Some(pid), WaitOptions::empty())
                    && reaped == pid
                {
                    killed += 1;
                }
            }
        }
    }
    panic!("orphans of the killed coordinator keep appearing");
}

/// Waits for a child at most `limit`; kills it and fails past that.
fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            kill_group(child);
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a command to its end (bounded), returning its status and output.
fn finish(mut cmd: Command, what: &str) -> (ExitStatus, String, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, COMMAND_LIMIT, what);
    (
        status,
        std::fs::read_to_string(out.path()).unwrap(),
        std::fs::read_to_string(err.path()).unwrap(),
    )
}

/// What the state file holds between two attempts (read-only, so the
/// write-ahead log a killed process left is not checkpointed by the test).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    /// The file holds a run.
    run: bool,
    /// `run running` events: a coordinator started or resumed the run (the
    /// first also records `run started…` just before).
    running: usize,
    /// `run completed|stopped|failed|rolled_back` events: sessions' ends.
    ends: usize,
    /// Events other than `run` and `lock` ones.
    others: usize,
    /// The run's status.
    status: Option<RunStatus>,
}

fn seen(db: &Path) -> Seen {
    if !db.exists() {
        return Seen::default();
    }
    let store = Store::open_read_only(db)
        .unwrap_or_else(|e| panic!("cannot read {} after a kill: {e}", db.display()));
    store
        .read(|tx| -> Result<Seen, cutover_store::StoreError> {
            let Some(run) = tx.latest_run()? else {
                return Ok(Seen::default());
            };
            let events = tx.events(run.id)?;
            Ok(Seen {
                run: true,
                status: Some(run.status),
                running: events
                    .iter()
                    .filter(|e| e.kind == "run" && e.message == "run running")
                    .count(),
                ends: events
                    .iter()
                    .filter(|e| {
                        e.kind == "run"
                            && matches!(
                                e.message.as_str(),
                                "run completed" | "run stopped" | "run failed" | "run rolled_back"
                            )
                    })
                    .count(),
                others: events
                    .iter()
                    .filter(|e| e.kind != "run" && e.kind != "lock")
                    .count(),
            })
        })
        .unwrap_or_else(|e| panic!("cannot read {} after a kill: {e}", db.display()))
}

/// The figures of kills.
#[derive(Debug, Default, Clone, Copy)]
struct Kills {
    /// Attempts killed before they ended.
    killed: usize,
    /// ... after which the state file held a run.
    landed: usize,
    /// ... whose own session start was recorded and not its end: each must
    /// be a crashed session.
    recorded: usize,
    /// ... that had recorded their session's end (killed on the way out).
    ended: usize,
    /// Commands the killed coordinators left running, killed by the test.
    orphans: usize,
    /// ... of those, the ones that recorded nothing but their start.
    recorded_only_start: usize,
}

impl Kills {
    fn add(&mut self, other: Kills) {
        self.killed += other.killed;
        self.landed += other.landed;
        self.recorded += other.recorded;
        self.ended += other.ended;
        self.orphans += other.orphans;
        self.recorded_only_start += other.recorded_only_start;
    }
}

/// Kill instants: below a bound that grows while kills land before an
/// attempt records anything new, and shrinks back when they do not.
struct Delays {
    min: u64,
    bound: u64,
    idle: usize,
}

impl Delays {
    fn new(min: u64) -> Delays {
        Delays {
            min,
            bound: min,
            idle: 0,
        }
    }

    fn next(&mut self, rng: &mut Rng) -> Duration {
        Duration::from_millis(rng.below(self.bound))
    }

    fn observed(&mut self, progressed: bool) {
        if progressed {
            self.idle = 0;
            self.bound = (self.bound * 9 / 10).max(self.min);
        } else {
            self.idle += 1;
            if self.idle >= 3 {
                self.idle = 0;
                self.bound = (self.bound * 3 / 2).min(MAX_DELAY_MS);
            }
        }
    }
}

/// Spawns `cmd`, kills its group after `delay`, and says what the kill did.
/// `None`: the command had ended (with that status) before the kill.
/// `over` is set when the kill came after the run had reached `goal`.
fn attempt(
    mut cmd: Command,
    delay: Duration,
    db: &Path,
    kills: &mut Kills,
    goal: RunStatus,
    over: &AtomicBool,
    what: &str,
) -> (Option<ExitStatus>, bool) {
    let before = seen(db);
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(delay);
    kill_group(&child);
    let status = wait_bounded(&mut child, Duration::from_secs(10), what);
    kills.orphans += kill_orphans();
    if status.signal() != Some(libc::SIGKILL) {
        // It had ended by itself before the kill.
        return (Some(status), true);
    }
    let after = seen(db);
    kills.killed += 1;
    if after.status == Some(goal) {
        over.store(true, Ordering::Relaxed);
    }
    if after.run {
        kills.landed += 1;
    }
    // Its session began when it created the run (`run started…`) or
    // recorded `run running`.
    let started = (after.run && !before.run) || after.running > before.running;
    assert!(
        after.running <= before.running + 1,
        "one attempt recorded `run running` {} times",
        after.running - before.running
    );
    if after.ends > before.ends {
        kills.ended += 1;
    } else if started {
        kills.recorded += 1;
        if after.others == before.others {
            kills.recorded_only_start += 1;
        }
    }
    (None, after.others > before.others)
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Journal entries `PREFIX NANOS` per name.
fn journal_entries(path: &Path, prefix: &str) -> BTreeMap<String, Vec<DateTime<Utc>>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut entries: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, ns)) = line.split_once(' ') else {
            panic!("{}: line {line:?}", path.display());
        };
        let Some(name) = name.strip_prefix(prefix) else {
            continue;
        };
        let at = DateTime::from_timestamp_nanos(ns.trim().parse::<i64>().unwrap());
        entries.entry(name.to_owned()).or_default().push(at);
    }
    entries
}

fn export_json(dir: &Path) -> serde_json::Value {
    let (status, out, err) = finish(
        cutover(dir, &["export", "crash.runbook", "--format", "json"]),
        "cutover export",
    );
    assert!(status.success(), "cutover export failed: {status}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Sessions of the export by how they ended.
fn session_ends(export: &serde_json::Value) -> BTreeMap<String, usize> {
    let mut ends = BTreeMap::new();
    for session in export["sessions"].as_array().unwrap() {
        *ends
            .entry(session["end"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    ends
}

/// Where the export's sessions and the event log disagree, for a failure's
/// message: every session start (`run started…`, `run running`) followed by
/// another with nothing but `lock` events between (a coordinator killed
/// before it recorded anything more), and the session the export shows for it.
fn session_evidence(export: &serde_json::Value) -> String {
    let events = export["events"].as_array().unwrap();
    let sessions = export["sessions"].as_array().unwrap();
    let is_start = |e: &serde_json::Value| {
        e["kind"] == "run"
            && e["message"]
                .as_str()
                .is_some_and(|m| m == "run running" || m.starts_with("run started"))
    };
    let mut text = String::new();
    let mut shown = 0;
    for (i, e) in events.iter().enumerate() {
        if e["message"] != "run running" {
            continue;
        }
        let Some(next) = events[i + 1..].iter().position(|n| n["kind"] != "lock") else {
            continue;
        };
        let next = &events[i + 1 + next];
        if !is_start(next) {
            continue;
        }
        shown += 1;
        if shown > 5 {
            continue;
        }
        let between: Vec<String> = events[i..]
            .iter()
            .take_while(|x| x["id"] != next["id"])
            .chain(std::iter::once(next))
            .map(|x| {
                format!(
                    "    #{} {} {}: {}",
                    x["id"], x["at"]["utc"], x["kind"], x["message"]
                )
            })
            .collect();
        let covering = sessions
            .iter()
            .rev()
            .find(|s| s["started_at"]["utc"].as_str() <= e["at"]["utc"].as_str());
        text.push_str(&format!(
            "  a session start with nothing after it but the next start:\n{}\n    export: {}\n",
            between.join("\n"),
            covering.map_or_else(String::new, |s| format!(
                "session #{} {} .. {} {} took_over={}",
                s["number"],
                s["started_at"]["utc"],
                s["last_record_at"]["utc"],
                s["end"],
                s["took_over"]
            ))
        ));
    }
    if shown > 5 {
        text.push_str(&format!("  ({} more)\n", shown - 5));
    }
    text
}

/// Files a copy leaves beside its destination while it works (with sizes).
fn leftovers(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["new/images", "new/db"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".cutover-") {
                let size = entry.metadata().map_or(0, |m| m.len());
                found.push(format!("{sub}/{name} ({size} bytes)"));
            }
        }
    }
    found.sort();
    found
}

/// Figures of one round.
struct Round {
    run: Kills,
    rollback: Kills,
    crashed_sessions: usize,
    /// What did not hold but let the round go on.
    problems: Vec<String>,
}

/// One complete run killed at random instants (at most `budget` kills),
/// checked, then a rollback killed `rollback_kills` times, checked.
fn round(number: usize, budget: usize, rollback_kills: usize, rng: &mut Rng) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let open: Vec<u16> = (0..3).map(|_| listener(stop.clone())).collect();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let dns = DnsLab::start(dir, &format!("www {TTL} IN A {OLD_A}\n"));
    let serial_at_start = dns.serial();
    let book = runbook(dns.addr, &open, closed_port());
    std::fs::write(dir.join("crash.runbook"), &book.text).unwrap();
    make_image(
        &dir.join("old/images/disk.img"),
        6 * MIB,
        &[(0, 64 << 10), (2 * MIB, 256 << 10), (5 * MIB + 123, 4096)],
        rng,
    );
    make_image(
        &dir.join("old/images/data.img"),
        3 * MIB,
        &[(4096, 12_000), (MIB + 8192, 128 << 10)],
        rng,
    );
    make_database(&dir.join("old/db/app.sqlite"));
    std::fs::create_dir_all(dir.join("new/images")).unwrap();
    std::fs::create_dir_all(dir.join("new/db")).unwrap();
    let disk_before = file_bytes(&dir.join("old/images/disk.img"));

    // Kill until `budget` attempts were killed or the run is complete;
    // bounded by the run's own length (its waits count from their first act).
    let db = dir.join(".cutover/crash.db");
    let mut run_kills = Kills::default();
    let mut delays = Delays::new(MIN_DELAY_MS);
    let started = Instant::now();
    let mut completed = false;
    let mut attempts = 0;
    while run_kills.killed < budget && attempts < budget * 3 && !completed {
        attempts += 1;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "round {number}: still not complete after 10 minutes of kills"
        );
        let delay = delays.next(rng);
        let over = AtomicBool::new(false);
        let (ended, progressed) = attempt(
            run_command(dir),
            delay,
            &db,
            &mut run_kills,
            RunStatus::Completed,
            &over,
            "cutover run",
        );
        delays.observed(progressed);
        if let Some(status) = ended {
            assert!(
                status.success(),
                "round {number}: a run attempt ended by itself with {status}"
            );
            completed = true;
        }
        completed |= over.load(Ordering::Relaxed);
    }
    let (status, out, err) = finish(run_command(dir), "the final resume");
    stop.store(true, Ordering::Relaxed);
    assert!(
        status.success(),
        "round {number}: the final resume did not complete: {status}\n{out}\n{err}"
    );

    // The run.
    let store = Store::open_read_only(&db).unwrap();
    let (run, steps, events) = store
        .read(|tx| -> Result<_, cutover_store::StoreError> {
            let run = tx.latest_run()?.unwrap();
            Ok((run.clone(), tx.steps(run.id)?, tx.events(run.id)?))
        })
        .unwrap();
    drop(store);
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(steps.len(), book.steps);
    for step in &steps {
        assert_eq!(
            step.status,
            StepStatus::Done,
            "round {number}: step {} is {:?}",
            step.name,
            step.status
        );
    }
    // No step acted after it was done.
    for step in &steps {
        let done_at = events
            .iter()
            .position(|e| e.step.as_deref() == Some(&step.name) && e.kind == "done");
        let Some(done_at) = done_at else {
            panic!("round {number}: step {} has no done event", step.name);
        };
        let late: Vec<&str> = events[done_at..]
            .iter()
            .filter(|e| {
                e.step.as_deref() == Some(&step.name)
                    && e.kind == "phase"
                    && e.message.starts_with("acting")
            })
            .map(|e| e.message.as_str())
            .collect();
        assert!(
            late.is_empty(),
            "round {number}: step {} acted after it was done: {late:?}",
            step.name
        );
    }
    // Each journaled action exactly once, before its verification.
    let journal = journal_entries(&dir.join("journal"), "");
    for name in &book.journaled {
        let step = steps.iter().find(|s| &s.name == name).unwrap();
        let verified: DateTime<Utc> = step.finished_at.unwrap();
        let entries = journal.get(name).cloned().unwrap_or_default();
        assert_eq!(
            entries.len(),
            1,
            "round {number}: step {name} acted {} times: {entries:?}",
            entries.len()
        );
        for at in entries {
            assert!(
                at <= verified,
                "round {number}: step {name} acted at {at}, after its verification at {verified}"
            );
        }
    }
    // The copies.
    for image in ["disk.img", "data.img"] {
        let source = file_bytes(&dir.join("old/images").join(image));
        let copy = file_bytes(&dir.join("new/images").join(image));
        assert!(
            source == copy,
            "round {number}: new/images/{image} differs from the source ({} vs {} bytes)",
            copy.len(),
            source.len()
        );
    }
    assert_ne!(
        disk_before,
        file_bytes(&dir.join("old/images/disk.img")),
        "round {number}: vm-writes did not change the image"
    );
    let (dump, sums) = database_content(&dir.join("old/db/app.sqlite"));
    let (copy_dump, copy_sums) = database_content(&dir.join("new/db/app.sqlite"));
    assert!(!sums.is_empty());
    assert_eq!(
        sums, copy_sums,
        "round {number}: the database copy's tables differ"
    );
    assert!(
        dump == copy_dump,
        "round {number}: the database copy's dump differs"
    );
    // Checked to the end of the round, then reported with the rest.
    let mut problems = Vec::new();
    let left = leftovers(dir);
    if !left.is_empty() {
        problems.push(format!(
            "round {number}: files the copies left beside their destinations after the run completed: {left:?}"
        ));
    }
    // DNS: the new value, the TTL restored; three updates, each made once.
    assert_eq!(
        dns.a("www"),
        (vec![NEW_A.to_owned()], Some(TTL)),
        "round {number}: www after the run"
    );
    let serial_after_run = dns.serial();
    assert_eq!(
        serial_after_run,
        serial_at_start + 3,
        "round {number}: the zone's serial went from {serial_at_start} to {serial_after_run}: not one update per DNS step"
    );
    let store = Store::open_existing(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    drop(store);
    let export = export_json(dir);
    let ends = session_ends(&export);
    let run_crashes = ends.get("crashed").copied().unwrap_or(0);
    if run_crashes != run_kills.recorded {
        problems.push(format!(
            "round {number}: after the run the export lists {run_crashes} crashed sessions ({ends:?}); \
             {} killed attempts recorded their session start ({} of them nothing else), \
             {} kills landed after the run was recorded, {} kills in all\n{}",
            run_kills.recorded,
            run_kills.recorded_only_start,
            run_kills.landed,
            run_kills.killed,
            session_evidence(&export)
        ));
    }

    // The rollback, killed at random instants, resumed until it exits 0.
    let rollback_started = Instant::now();
    let mut rollback_kills_seen = Kills::default();
    let mut rolled_back = false;
    let mut delays = Delays::new(MIN_ROLLBACK_DELAY_MS);
    for k in 0..rollback_kills {
        let args: &[&str] = if k == 0 {
            &["rollback", "crash.runbook", "--yes"]
        } else {
            &["rollback", "crash.runbook", "--yes", "--take-over"]
        };
        let over = AtomicBool::new(false);
        let (ended, progressed) = attempt(
            cutover(dir, args),
            delays.next(rng),
            &db,
            &mut rollback_kills_seen,
            RunStatus::RolledBack,
            &over,
            "cutover rollback",
        );
        delays.observed(progressed);
        if let Some(status) = ended {
            assert!(
                status.success(),
                "round {number}: a rollback ended by itself with {status}"
            );
            rolled_back = true;
            break;
        }
        if over.load(Ordering::Relaxed) {
            // Killed on its way out: the resume below finds nothing to do.
            break;
        }
    }
    let mut resumes = Vec::new();
    while !rolled_back {
        assert!(
            resumes.len() < 3,
            "round {number}: the rollback did not exit 0 in 3 resumes: {resumes:#?}"
        );
        let (status, out, err) = finish(
            cutover(dir, &["rollback", "crash.runbook", "--yes", "--take-over"]),
            "cutover rollback",
        );
        rolled_back = status.success();
        resumes.push(format!("{status}\n{out}\n{err}"));
    }
    let rollback_took = rollback_started.elapsed();
    let store = Store::open_read_only(&db).unwrap();
    let (run, steps) = store
        .read(|tx| -> Result<_, cutover_store::StoreError> {
            let run = tx.latest_run()?.unwrap();
            Ok((run.clone(), tx.steps(run.id)?))
        })
        .unwrap();
    drop(store);
    assert_eq!(
        run.status,
        RunStatus::RolledBack,
        "round {number}: the run is {:?} after the rollback",
        run.status
    );
    for step in &steps {
        assert_eq!(
            step.status,
            StepStatus::Undone,
            "round {number}: step {} is {:?} after the rollback",
            step.name,
            step.status
        );
    }
    let undos = journal_entries(&dir.join("undo-journal"), "undo-");
    for name in &book.undo_journaled {
        let step = steps.iter().find(|s| &s.name == name).unwrap();
        let undone: DateTime<Utc> = step.finished_at.unwrap();
        let entries = undos.get(name).cloned().unwrap_or_default();
        assert!(
            !entries.is_empty(),
            "round {number}: step {name} was not undone"
        );
        for at in entries {
            assert!(
                at <= undone,
                "round {number}: step {name}'s undo acted at {at}, after it was undone at {undone}"
            );
        }
    }
    assert_eq!(
        dns.a("www"),
        (vec![OLD_A.to_owned()], Some(TTL)),
        "round {number}: www after the rollback"
    );
    let serial = dns.serial();
    assert_eq!(
        serial,
        serial_after_run + 3,
        "round {number}: the zone's serial went from {serial_after_run} to {serial} in the rollback: not one update per DNS undo"
    );
    let store = Store::open_existing(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    drop(store);
    let export = export_json(dir);
    let ends = session_ends(&export);
    let crashes = ends.get("crashed").copied().unwrap_or(0);
    let expected = run_kills.recorded + rollback_kills_seen.recorded;
    if crashes != expected || ends.contains_key("crashed_not_resumed") {
        problems.push(format!(
            "round {number}: after the rollback the export lists {crashes} crashed sessions ({ends:?}); \
             {} run and {} rollback attempts were killed after recording their session start \
             ({} and {} of them recorded nothing else)\n{}",
            run_kills.recorded,
            rollback_kills_seen.recorded,
            run_kills.recorded_only_start,
            rollback_kills_seen.recorded_only_start,
            session_evidence(&export)
        ));
    }
    assert_eq!(
        ends.get("rolled_back").copied(),
        Some(1),
        "round {number}: {ends:?}"
    );
    assert_eq!(export["run"]["status"], "rolled_back");
    eprintln!(
        "crash test: round {number}: {} run kills ({} after the run was recorded, {} in a session that recorded its start and not its end, {} after its end), \
         {} rollback kills ({} in a session, {} after its end) in {:.1}s, {} crashed sessions, in {:.1}s",
        run_kills.killed,
        run_kills.landed,
        run_kills.recorded,
        run_kills.ended,
        rollback_kills_seen.killed,
        rollback_kills_seen.recorded,
        rollback_kills_seen.ended,
        rollback_took.as_secs_f64(),
        crashes,
        started.elapsed().as_secs_f64()
    );
    Round {
        run: run_kills,
        rollback: rollback_kills_seen,
        crashed_sessions: crashes,
        problems,
    }
}

#[test]
fn resume_after_sigkill_at_random_instants() {
    let kills = usize::try_from(env_number("CUTOVER_CRASH_KILLS", 100)).unwrap();
    let rollback_kills = usize::try_from(env_number("CUTOVER_CRASH_ROLLBACK_KILLS", 5)).unwrap();
    let seed = std::env::var("CUTOVER_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or(1).unsigned_abs() | 1);
    eprintln!(
        "crash test: {kills} kills, {rollback_kills} per rollback, seed {seed} (CUTOVER_CRASH_SEED={seed} replays it)"
    );
    let mut rng = Rng(seed);
    become_subreaper();
    let started = Instant::now();
    let mut run = Kills::default();
    let mut rollback = Kills::default();
    let mut sessions = 0;
    let mut problems = Vec::new();
    let mut rounds = 0;
    while run.killed < kills {
        rounds += 1;
        assert!(
            rounds <= MAX_ROUNDS,
            "{} kills in {MAX_ROUNDS} rounds, fewer than {kills}",
            run.killed
        );
        let r = round(rounds, kills - run.killed, rollback_kills, &mut rng);
        run.add(r.run);
        rollback.add(r.rollback);
        sessions += r.crashed_sessions;
        problems.extend(r.problems);
        if kills == 0 {
            break;
        }
    }
    eprintln!(
        "crash test: {} kills of `cutover run` in {rounds} round(s): {} landed after the run's start was recorded, \
         {} in a session that had recorded its start and not its end, {} after the session's end; \
         {} kills of `cutover rollback` ({} in a session, {} after its end); {} orphaned commands killed; \
         {sessions} crashed sessions in the exports (expected {}); seed {seed}; wall time {:.1}s",
        run.killed,
        run.landed,
        run.recorded,
        run.ended,
        rollback.killed,
        rollback.recorded,
        rollback.ended,
        run.orphans + rollback.orphans,
        run.recorded + rollback.recorded,
        started.elapsed().as_secs_f64()
    );
    assert!(run.killed >= kills);
    assert!(
        problems.is_empty(),
        "{} problem(s) (CUTOVER_CRASH_SEED={seed}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
