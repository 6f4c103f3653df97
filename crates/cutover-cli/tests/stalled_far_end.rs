//! A far end that stops answering fails the attempt, naming where it ran,
//! instead of hanging the run: an agent stopped (SIGSTOP) in the middle of
//! a copy, and an `exec` that outlives its step's `timeout`.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cutover_store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_cutover");
const MIB: u64 = 1 << 20;

fn random_at(path: &Path, offset: u64, len: u64) {
    let mut data = vec![0u8; len as usize];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    let file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .unwrap();
    file.write_all_at(&data, offset).unwrap();
}

fn cutover(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("USER", "tester")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Every event message and evidence summary of the run in `db`.
fn run_log(db: &Path) -> String {
    let store = Store::open_existing(db).unwrap();
    let run = store.latest_run().unwrap().unwrap();
    let mut text = String::new();
    for e in store.events(run.id).unwrap() {
        text.push_str(&format!("{} {}\n", e.kind, e.message));
    }
    for e in store.evidence(run.id).unwrap() {
        text.push_str(&format!("evidence {}\n", e.summary));
    }
    text
}

/// The processes whose command line holds every one of `words`.
fn processes_with(words: &[&str]) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten().take(100_000) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if words.iter().all(|w| cmdline.contains(w)) {
            found.push(pid);
        }
    }
    found
}

/// Kills a child run if a test ends early, so none is left waiting.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_agent_stopped_mid_copy_fails_the_copy_within_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("old")).unwrap();
    let far_root = d.join("far-files");
    fs::create_dir_all(&far_root).unwrap();
    random_at(&d.join("old/disk.img"), 0, 256 * MIB);
    random_at(&far_root.join("disk.img"), 0, MIB);
    fs::write(
        d.join("stall.runbook"),
        format!(
            "runbook stall\n\nhost old addr 127.0.0.10 via local old\n\
             host far-end addr 127.0.0.20 via agent \"{BIN} agent --stdio --root {}\"\n\n\
             step copy\n  image.copy old:/disk.img -> far-end:/disk.img\n",
            far_root.display()
        ),
    )
    .unwrap();
    let mut run = Reap(
        cutover(d)
            .args(["run", "stall.runbook"])
            .env("CUTOVER_AGENT_IDLE_TIMEOUT", "2")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Once the agent has staged some of what it receives, stop it.
    let staged = far_root.join(".disk.img.cutover-staged");
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::metadata(&staged).map(|m| m.len()).unwrap_or(0) < 8 * MIB {
        assert!(
            Instant::now() < deadline && run.0.try_wait().unwrap().is_none(),
            "the copy ended before 8 MiB were staged"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let root = far_root.display().to_string();
    let agents = processes_with(&["agent", "--stdio", &root]);
    assert!(!agents.is_empty(), "no agent process found");
    for &pid in &agents {
        // The pids are this test's agents (their command line holds this
        // test's temporary folder).
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::STOP);
        }
    }
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "the run still waits for the stopped agent after 15 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let waited = stopped.elapsed();
    assert_eq!(status.code(), Some(1), "the run did not fail");
    assert!(waited < Duration::from_secs(8), "took {waited:?} to notice");
    let mut stderr = String::new();
    if let Some(mut pipe) = run.0.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let log = run_log(&d.join(".cutover/stall.db"));
    assert!(
        log.contains("stopped answering (no data for 2 s)"),
        "log:\n{log}\nstderr:\n{stderr}"
    );
    // The message names the runbook host the agent serves.
    assert!(log.contains("agent on far-end"), "{log}");
    // The stopped agent was killed, not left behind.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<i32> = processes_with(&["agent", "--stdio", &root])
            .into_iter()
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| {
                        !s.rsplit_once(')')
                            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(false)
            })
            .collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for &pid in &left {
                // Cleans up after a failed assertion.
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            panic!("agents {left:?} outlived the failed copy");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_exec_over_its_timeout_fails_naming_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("web")).unwrap();
    fs::write(
        d.join("hang.runbook"),
        "runbook hang\n\nhost web addr 127.0.0.1 via local web\n\n\
         step slow\n  exec on web \"sleep 300\"\n  timeout 2s\n",
    )
    .unwrap();
    let started = Instant::now();
    let mut run = Reap(cutover(d).args(["run", "hang.runbook"]).spawn().unwrap());
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the run still waits for `sleep 300` after 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let log = run_log(&d.join(".cutover/hang.db"));
    assert!(
        log.contains("`sleep 300` on web did not finish within 2s"),
        "{log}"
    );
}
