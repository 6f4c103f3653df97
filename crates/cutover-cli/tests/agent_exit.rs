//! No orphaned agents: `cutover agent --stdio` exits once its stdin closes,
//! whether the coordinator closed it or died (killed mid-copy, its pipes
//! closed by the kernel).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cutover_copy::protocol::{PROTOCOL_VERSION, Request, Response, read_answer, write_frame};

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// The live processes whose command line holds `needle` (zombies, which
/// have exited, are not live).
fn live_processes_with(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// Waits (at most `limit`) until no live process holds `needle`.
fn gone_within(needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if live_processes_with(needle).is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_idle_agent_exits_when_its_stdin_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Command::new(BIN)
        .args(["agent", "--stdio", "--root"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = agent.stdin.take().unwrap();
    let hello = Request::Hello {
        version: PROTOCOL_VERSION,
    };
    write_frame(&mut stdin, &hello.encode()).unwrap();
    stdin.flush().unwrap();
    let answer = read_answer(agent.stdout.as_mut().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        Response::decode(&answer).unwrap(),
        Response::Hello {
            version: PROTOCOL_VERSION
        }
    );
    // Its stdout stays open here: only the end of its input tells it.
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = agent.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            agent.kill().unwrap();
            panic!("the agent was still running 10 s after its stdin closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

/// A 64 MiB file of random bytes.
fn random_file(path: &Path) {
    let mut data = vec![0u8; 64 << 20];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    fs::write(path, data).unwrap();
}

#[test]
fn the_agent_of_a_coordinator_killed_mid_copy_exits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("old")).unwrap();
    // The agent's root names it among the processes of this machine.
    let root = d.join("far-root-of-the-orphan-test");
    fs::create_dir_all(&root).unwrap();
    random_file(&d.join("old/disk.img"));
    let needle = format!("--root {}", root.display());
    fs::write(
        d.join("orphan.runbook"),
        format!(
            "runbook orphan\n\nhost old addr 127.0.0.10 via local old\n\
             host far addr 127.0.0.20 via agent \"{BIN} agent --stdio {needle}\"\n\n\
             step copy\n  image.copy old:/disk.img -> far:/disk.img\n"
        ),
    )
    .unwrap();
    let mut coordinator = Command::new(BIN)
        .current_dir(d)
        .args(["run", "orphan.runbook"])
        .env("USER", "tester")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the coordinator once its agent has started writing the copy.
    let partial = root.join(".disk.img.cutover-partial");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !partial.exists() || live_processes_with(&needle).is_empty() {
        assert!(
            Instant::now() < deadline && coordinator.try_wait().unwrap().is_none(),
            "the copy ended before the agent started writing"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let agents = live_processes_with(&needle);
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    assert!(
        gone_within(&needle, Duration::from_secs(15)),
        "agent {agents:?} still runs 15 s after its coordinator was killed"
    );
}
