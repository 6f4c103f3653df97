//! `cargo bench -p cutover-copy --bench limit`: `limit RATE` on an unshaped
//! path. A first full copy of dense data (nothing to reuse, nothing to
//! skip) from a local file to an agent served over pipes, capped at
//! 20 MB/s (`CUTOVER_BENCH_LIMIT_MB`), 400 MB unless `CUTOVER_BENCH_MB`
//! says otherwise; the same copy uncapped first, to show the path is
//! faster than the cap. Prints the whole copy's rate against the limit and
//! the rate of each second (from the progress reports), and whether both
//! hold within ±10 %. Files live under `CUTOVER_BENCH_DIR` (default: the
//! target's tmp folder) and are removed at the end.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cutover_copy::agent::{AgentClient, serve};
use cutover_copy::{CopyOptions, CopyReport, Endpoint, Location, Progress, copy_with};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Dense xorshift noise: every block differs from every other and from zero.
fn dense(path: &Path, size: u64) {
    let file = File::create(path).expect("source");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut chunk = vec![0u8; 4 << 20];
    let mut at = 0;
    while at < size {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = (size - at).min(chunk.len() as u64) as usize;
        file.write_all_at(&chunk[..n], at).expect("write");
        at += n as u64;
    }
}

fn agent(root: &Path) -> Endpoint {
    let (request_reader, request_writer) = std::io::pipe().expect("pipe");
    let (response_reader, response_writer) = std::io::pipe().expect("pipe");
    let root = root.to_path_buf();
    std::thread::spawn(move || serve(&root, request_reader, response_writer));
    Endpoint::Agent(
        AgentClient::over(
            "bench agent",
            Box::new(response_reader),
            Box::new(request_writer),
        )
        .expect("agent"),
    )
}

/// One first full copy; the bytes sent as seen at each progress report.
fn copy(dir: &Path, limit: Option<u64>) -> (CopyReport, Vec<(Duration, u64)>) {
    let _ = fs::remove_file(dir.join("dest/copy.img"));
    let started = Instant::now();
    let samples = Mutex::new(Vec::new());
    let record = |p: Progress| {
        samples
            .lock()
            .expect("samples")
            .push((started.elapsed(), p.sent));
    };
    let options = CopyOptions {
        progress: Some(&record),
        limit,
        ..CopyOptions::default()
    };
    let (mut src, src_path) =
        Endpoint::connect(&Location::Local(dir.join("source.img"))).expect("source");
    let mut dst = agent(&dir.join("dest"));
    let report = copy_with(&mut src, &src_path, &mut dst, "copy.img", &options).expect("copy");
    (report, samples.into_inner().expect("samples"))
}

fn within(rate: f64, limit: f64) -> &'static str {
    if (rate / limit - 1.0).abs() <= 0.10 {
        "within ±10 %"
    } else {
        "OUTSIDE ±10 %"
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let mb = env_number("CUTOVER_BENCH_MB", 400);
    let limit_mb = env_number("CUTOVER_BENCH_LIMIT_MB", 20);
    let base = std::env::var("CUTOVER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let dir = base.join("cutover-limit-bench");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("dest")).expect("bench folder");
    let size = mb * 1_000_000;
    dense(&dir.join("source.img"), size);
    let limit = limit_mb * 1_000_000;
    println!(
        "limit bench: first full copy of {mb} MB of dense data, local file -> agent over pipes (unshaped), limit {limit_mb} MB/s; load average {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let (free, _) = copy(&dir, None);
    println!(
        "uncapped: {:.2} s, {:.0} MB/s",
        free.duration.as_secs_f64(),
        free.bytes_sent as f64 / free.duration.as_secs_f64() / 1e6
    );

    let (capped, samples) = copy(&dir, Some(limit));
    assert_eq!(
        fs::read(dir.join("source.img")).expect("source"),
        fs::read(dir.join("dest/copy.img")).expect("copy"),
        "the copy differs from the source"
    );
    let secs = capped.duration.as_secs_f64();
    let rate = capped.bytes_sent as f64 / secs;
    println!(
        "limit {limit_mb} MB/s: {secs:.2} s, {:.0} MB sent, {:.2} MB/s = {:.3} x the limit ({})",
        capped.bytes_sent as f64 / 1e6,
        rate / 1e6,
        rate / limit as f64,
        within(rate, limit as f64)
    );
    // The rate of each whole second: the sent count at the last report in it.
    let mut per_second = Vec::new();
    let mut last = (Duration::ZERO, 0u64);
    for second in 1..=secs as u64 {
        let at = Duration::from_secs(second);
        let Some(&(t, sent)) = samples.iter().rev().find(|(t, _)| *t <= at) else {
            continue;
        };
        if t > last.0 && t - last.0 >= Duration::from_millis(500) {
            per_second.push((sent - last.1) as f64 / (t - last.0).as_secs_f64());
            last = (t, sent);
        }
    }
    let outside = per_second
        .iter()
        .filter(|r| within(**r, limit as f64) != "within ±10 %")
        .count();
    let (low, high) = per_second
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "per second ({} samples): {:.2} .. {:.2} MB/s, {outside} outside ±10 % of the limit",
        per_second.len(),
        low / 1e6,
        high / 1e6
    );
    let _ = fs::remove_dir_all(&dir);
}
