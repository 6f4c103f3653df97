//! One pass per image.copy step, through the real binary and a real agent:
//! a run that acts takes the copy's own verification, and a run that finds
//! the step caught after its act (the act's result is not at hand) reads
//! both images again, and says so.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cutover_store::{Phase, Store};

const BIN: &str = env!("CARGO_BIN_EXE_cutover");
const MIB: u64 = 1 << 20;

fn random_file(path: &Path, len: u64) {
    let mut data = vec![0u8; len as usize];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    File::create(path).unwrap().write_all_at(&data, 0).unwrap();
}

fn runbook(d: &Path) {
    fs::write(
        d.join("pass.runbook"),
        format!(
            "runbook pass\n\nhost old addr 127.0.0.10 via local old\n\
             host far addr 127.0.0.20 via agent \"{BIN} agent --stdio --root {}\"\n\n\
             step copy\n  image.copy old:/disk.img -> far:/disk.img\n",
            d.join("new").display()
        ),
    )
    .unwrap();
}

fn run(d: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(d)
        .args(["run", "pass.runbook"])
        .env("USER", "tester")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Runs the runbook to its end: it succeeds and the copy equals the source.
fn run_to_the_end(d: &Path) {
    let out = run(d).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(d.join("new/disk.img")).unwrap(),
        fs::read(d.join("old/disk.img")).unwrap()
    );
}

fn evidence(d: &Path, phase: Phase) -> (String, serde_json::Value) {
    let store = Store::open_existing(&d.join(".cutover/pass.db")).unwrap();
    let run = store.latest_run().unwrap().unwrap().id;
    let record = store
        .latest_evidence(run, "copy", phase)
        .unwrap()
        .unwrap_or_else(|| panic!("no {phase:?} evidence"));
    (record.summary, record.data)
}

#[test]
fn a_run_that_acts_verifies_by_the_copys_own_digest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("old")).unwrap();
    fs::create_dir_all(d.join("new")).unwrap();
    random_file(&d.join("old/disk.img"), 8 * MIB);
    random_file(&d.join("new/disk.img"), 8 * MIB);
    runbook(d);
    run_to_the_end(d);
    let (_, acted) = evidence(d, Phase::Act);
    let (summary, verified) = evidence(d, Phase::Verify);
    assert_eq!(verified["verified_by"], "act", "{verified}");
    assert_eq!(verified["hash"], acted["hash"], "{verified}");
    assert!(summary.contains("not re-read"), "{summary}");
}

/// A stop request during the act lets the copy finish (it is not
/// interruptible) and stops the run before its verification; the next run
/// verifies without the act's result at hand, so it reads both images.
#[test]
fn a_step_resumed_after_its_act_is_verified_by_reading_both_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("old")).unwrap();
    fs::create_dir_all(d.join("new")).unwrap();
    random_file(&d.join("old/disk.img"), 256 * MIB);
    random_file(&d.join("new/disk.img"), MIB);
    runbook(d);

    let mut first = run(d).spawn().unwrap();
    let staged = d.join("new/.disk.img.cutover-staged");
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::metadata(&staged).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline && first.try_wait().unwrap().is_none(),
            "the copy ended before it staged anything"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    let stopped = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the stopped run did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!stopped.success(), "the first run was stopped");
    let (_, acted) = evidence(d, Phase::Act);
    assert_eq!(acted["outcome"], "copied", "{acted}");
    let store = Store::open_existing(&d.join(".cutover/pass.db")).unwrap();
    let id = store.latest_run().unwrap().unwrap().id;
    assert!(
        store
            .latest_evidence(id, "copy", Phase::Verify)
            .unwrap()
            .is_none(),
        "not verified before the stop"
    );
    drop(store);

    run_to_the_end(d);
    let (summary, verified) = evidence(d, Phase::Verify);
    assert_eq!(verified["verified_by"], "re-read", "{verified}");
    assert_eq!(verified["equal"], true, "{verified}");
    assert_eq!(verified["source_hash"], acted["hash"], "{verified}");
    assert!(summary.contains("re-read"), "{summary}");
}

/// `limit RATE`: the copy takes at least its data's time at the limit, its
/// evidence says so, and the plan estimates it at the limit.
#[test]
fn a_limited_copy_is_held_to_its_rate_and_planned_at_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("old")).unwrap();
    fs::create_dir_all(d.join("new")).unwrap();
    random_file(&d.join("old/disk.img"), 3_000_000);
    fs::write(
        d.join("pass.runbook"),
        format!(
            "runbook pass\n\nhost old addr 127.0.0.10 via local old\n\
             host far addr 127.0.0.20 via agent \"{BIN} agent --stdio --root {}\"\n\n\
             step copy\n  image.copy old:/disk.img -> far:/disk.img size 3MB limit 2MB/s\n",
            d.join("new").display()
        ),
    )
    .unwrap();
    let plan = Command::new(BIN)
        .current_dir(d)
        .args(["plan", "pass.runbook"])
        .output()
        .unwrap();
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan_text.contains("at its limit"), "{plan_text}");
    run_to_the_end(d);
    let (summary, acted) = evidence(d, Phase::Act);
    assert_eq!(acted["limit_bytes_per_sec"], 2_000_000, "{acted}");
    assert!(summary.contains("limit 2.0 MB/s"), "{summary}");
    let took = acted["duration"]["secs"].as_f64().unwrap()
        + acted["duration"]["nanos"].as_f64().unwrap() / 1e9;
    assert!(took >= 1.4, "3 MB at 2 MB/s took {took:.3} s");
}
