//! `cargo bench -p cutover-cli --bench image_run`: an image copy as a user
//! times it. `cutover run` of a one-step runbook (`image.copy` from a `via
//! local` host to a host behind a real `cutover agent` process) of a sparse
//! image (about half holes; 4 GiB unless `CUTOVER_BENCH_GIB` says otherwise)
//! over an old copy with 1 % of its 4 KiB blocks different, interleaved per
//! round with `rsync --inplace --no-whole-file` and the same with `-B 4096`,
//! each with a warm page cache and a cold one (`echo 3 >
//! /proc/sys/vm/drop_caches`, root only; `CUTOVER_BENCH_COLD=0` skips it),
//! and the time to read both images' data once from a cold cache.
//!
//! Prints per round and as medians: the whole run, the step (from the state
//! file), the copy's own time (its act evidence) and how the step verified;
//! the ratios to rsync, to reading both images, and of the step to the
//! copy. Every result is compared byte for byte with the source (rsync's
//! by `rsync` itself) and its allocation printed; cutover's must be sparse. Files live under
//! `CUTOVER_BENCH_DIR` (default: the target's tmp folder) and are removed
//! at the end (kept with `CUTOVER_BENCH_KEEP=1`, e.g. to profile a run of
//! `image.runbook` there). `CUTOVER_BENCH_ROUNDS` (default 3).

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../cutover-copy/benches/support/image.rs"]
mod image;
use image::{MIB, allocated, generate, median, reset_copy, rsync, verify_equal};

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Empties the page cache (after writing back what is dirty).
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Reads every data extent of `path` once (holes are not read).
fn read_data(path: &Path) -> u64 {
    let file = File::open(path).expect("image");
    let size = file.metadata().expect("size").len();
    let mut buffer = vec![0u8; 4 << 20];
    let mut read = 0;
    for (start, end) in cutover_copy::blocks::data_extents(&file, 0, size).expect("extents") {
        let mut at = start;
        while at < end {
            let n = (end - at).min(buffer.len() as u64) as usize;
            file.read_exact_at(&mut buffer[..n], at).expect("read");
            at += n as u64;
            read += n as u64;
        }
    }
    read
}

/// Reads both images' data at once, one thread each (as a copy does).
fn read_both(a: &Path, b: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let bytes = std::thread::scope(|scope| {
        let first = scope.spawn(|| read_data(a));
        let second = read_data(b);
        first.join().expect("reader") + second
    });
    (started.elapsed(), bytes)
}

/// Caches both images' data (and holes' metadata) before a warm run.
fn warm(a: &Path, b: &Path) {
    let _ = Command::new("sync").status();
    read_both(a, b);
}

struct Run {
    /// `cutover run`, process start to exit.
    run: f64,
    /// The step, from its start to its end in the state file.
    step: f64,
    /// The copy itself: the act's own duration.
    copy: f64,
    /// The check and verify phases' time (step minus act phase).
    around: f64,
    /// How the verification was made (`act` or `re-read`).
    verified_by: String,
    outcome: String,
    sent: u64,
}

fn secs(value: &serde_json::Value) -> f64 {
    value["secs"].as_f64().unwrap_or(0.0) + value["nanos"].as_f64().unwrap_or(0.0) / 1e9
}

fn cutover_run(dir: &Path) -> Run {
    let _ = fs::remove_dir_all(dir.join(".cutover"));
    let started = Instant::now();
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["run", "image.runbook"])
        .env("USER", "bench")
        .stdin(Stdio::null())
        .output()
        .expect("cutover run");
    let run = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "cutover run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let store = cutover_store::Store::open_existing(&dir.join(".cutover/image-bench.db"))
        .expect("state file");
    let id = store.latest_run().unwrap().expect("a run").id;
    let step = store
        .steps(id)
        .unwrap()
        .into_iter()
        .find(|s| s.name == "copy")
        .expect("the step");
    let at = |phase: cutover_store::Phase| {
        store
            .latest_evidence(id, "copy", phase)
            .unwrap()
            .unwrap_or_else(|| panic!("{phase:?} evidence"))
    };
    let act = at(cutover_store::Phase::Act);
    let verify = at(cutover_store::Phase::Verify);
    let span = |from: Option<chrono::DateTime<chrono::Utc>>,
                to: Option<chrono::DateTime<chrono::Utc>>| {
        (to.expect("end") - from.expect("start"))
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6
    };
    let events = store.events(id).unwrap();
    let phase_at = |message: &str| {
        events
            .iter()
            .find(|e| e.step.as_deref() == Some("copy") && e.message.starts_with(message))
            .map(|e| e.at)
    };
    let step_secs = span(step.started_at, step.finished_at);
    let act_phase = span(phase_at("acting"), phase_at("acted"));
    Run {
        run,
        step: step_secs,
        copy: secs(&act.data["duration"]),
        around: step_secs - act_phase,
        verified_by: verify.data["verified_by"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
        outcome: act.data["outcome"].as_str().unwrap_or("?").to_string(),
        sent: act.data["bytes_sent"].as_u64().unwrap_or(0),
    }
}

/// Before each timed run: the old copy back in place, the cache as asked.
fn prepare(old: &Path, source: &Path, dest: &Path, cold: bool) {
    reset_copy(old, dest);
    if cold {
        drop_caches();
    } else {
        warm(source, dest);
    }
}

/// A cutover result: byte-identical to the source, and sparse (holes stay holes).
fn check_result(source: &Path, dest: &Path) {
    verify_equal(source, dest);
    let (s, d) = (allocated(source), allocated(dest));
    assert!(
        d <= s + 16 * MIB,
        "the result is not sparse: {} MiB allocated, the source {} MiB",
        d / MIB,
        s / MIB
    );
}

#[derive(Default)]
struct Series {
    run: Vec<Duration>,
    step: Vec<Duration>,
    copy: Vec<Duration>,
    rsync: Vec<Duration>,
    rsync4k: Vec<Duration>,
}

fn d(secs: f64) -> Duration {
    Duration::from_secs_f64(secs.max(0.0))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let gib = env_number("CUTOVER_BENCH_GIB", 4);
    let rounds = env_number("CUTOVER_BENCH_ROUNDS", 3) as usize;
    let base = std::env::var("CUTOVER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let dir = base.join("cutover-image-run-bench");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("src")).expect("bench folder");
    fs::create_dir_all(dir.join("dst")).expect("bench folder");
    let cold_asked = env_number("CUTOVER_BENCH_COLD", 1) == 1;
    let cold = cold_asked && drop_caches();
    let size = gib << 30;
    println!(
        "image_run bench: cutover run of one image.copy, {gib} GiB sparse image, 1 % of 4 KiB blocks changed, {rounds} rounds, in {}",
        dir.display()
    );
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average {} (shared with other work while this ran)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if cold_asked && !cold {
        println!("the page cache cannot be dropped here (not root): warm rounds only");
    }

    let source = dir.join("src/disk.img");
    let dest = dir.join("dst/disk.img");
    let old = dir.join("old.img");
    let started = Instant::now();
    let changed = generate(&source, &old, size);
    println!(
        "generated in {:.1} s: source {} MiB allocated of {} MiB; {changed} blocks changed",
        started.elapsed().as_secs_f64(),
        allocated(&source) / MIB,
        size / MIB,
    );
    fs::write(
        dir.join("image.runbook"),
        format!(
            "runbook image-bench\n\n\
             host old addr 127.0.0.10 via local src\n\
             host new addr 127.0.0.20 via agent \"{BIN} agent --stdio --root {}\"\n\n\
             step copy\n  image.copy old:/disk.img -> new:/disk.img\n",
            dir.join("dst").display()
        ),
    )
    .expect("runbook");

    let caches: &[bool] = if cold { &[false, true] } else { &[false] };
    let mut series = [Series::default(), Series::default()];
    let mut read_once = Vec::new();
    let mut read_bytes = 0;
    for round in 1..=rounds {
        for &is_cold in caches {
            let name = if is_cold { "cold" } else { "warm" };
            let s = &mut series[usize::from(is_cold)];

            prepare(&old, &source, &dest, is_cold);
            let r = cutover_run(&dir);
            check_result(&source, &dest);
            println!(
                "round {round} {name}: cutover run {:.2} s, step {:.2} s, copy {:.2} s, check+verify {:.3} s (verified by {}), {}, sent {} KiB, dest allocated {} MiB",
                r.run,
                r.step,
                r.copy,
                r.around,
                r.verified_by,
                r.outcome,
                r.sent >> 10,
                allocated(&dest) / MIB
            );
            s.run.push(d(r.run));
            s.step.push(d(r.step));
            s.copy.push(d(r.copy));

            prepare(&old, &source, &dest, is_cold);
            let (time, sent) = rsync(&source, &dest, &[]);
            println!(
                "round {round} {name}: rsync --inplace --no-whole-file {:.2} s, sent {} KiB, dest allocated {} MiB",
                time.as_secs_f64(),
                sent >> 10,
                allocated(&dest) / MIB
            );
            s.rsync.push(time);

            prepare(&old, &source, &dest, is_cold);
            let (time, sent) = rsync(&source, &dest, &["-B", "4096"]);
            println!(
                "round {round} {name}: rsync --inplace --no-whole-file -B 4096 {:.2} s, sent {} KiB, dest allocated {} MiB",
                time.as_secs_f64(),
                sent >> 10,
                allocated(&dest) / MIB
            );
            s.rsync4k.push(time);
        }
        if cold {
            reset_copy(&old, &dest);
            drop_caches();
            let (time, bytes) = read_both(&source, &dest);
            println!(
                "round {round}: reading both images' data once (cold, two threads) {:.2} s ({} MiB)",
                time.as_secs_f64(),
                bytes / MIB
            );
            read_once.push(time);
            read_bytes = bytes;
        }
    }

    for &is_cold in caches {
        let s = &series[usize::from(is_cold)];
        let (run, step, copy) = (median(&s.run), median(&s.step), median(&s.copy));
        let (r, r4) = (median(&s.rsync), median(&s.rsync4k));
        println!(
            "\n== {} page cache (medians of {rounds}) ==",
            if is_cold { "cold" } else { "warm" }
        );
        println!(
            "cutover run {run:.2} s | step {step:.2} s | copy {copy:.2} s | rsync --inplace --no-whole-file {r:.2} s | with -B 4096 {r4:.2} s"
        );
        println!(
            "rsync / cutover run = {:.1}x | rsync -B 4096 / cutover run = {:.1}x | step / copy = {:.3} | run / copy = {:.3}",
            r / run,
            r4 / run,
            step / copy,
            run / copy
        );
        if is_cold {
            let floor = median(&read_once);
            println!(
                "reading both images' data once {floor:.2} s ({} MiB) | cutover run / read once = {:.2} | copy / read once = {:.2}",
                read_bytes / MIB,
                run / floor,
                copy / floor
            );
        }
    }
    println!(
        "sparse: source allocated {} MiB, destination allocated {} MiB",
        allocated(&source) / MIB,
        allocated(&dest) / MIB
    );
    if env_number("CUTOVER_BENCH_KEEP", 0) == 0 {
        let _ = fs::remove_dir_all(&dir);
    }
}
