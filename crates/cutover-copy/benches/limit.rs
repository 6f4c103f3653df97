//! `cargo bench -p cutover-copy --bench limit`: `limit RATE` on an unshaped
//! path. A first full copy (nothing to reuse, nothing to skip) from a local
//! file to an agent served over pipes, capped at 20 MB/s
//! (`CUTOVER_BENCH_LIMIT_MB`), 400 MB unless `CUTOVER_BENCH_MB` says
//! otherwise; the same copy uncapped first, to show the path is faster than
//! the cap. The limit caps bytes on the wire, so the bench counts what the
//! coordinator writes into the agent's pipe (framed, compressed where it
//! was) as it is written. Two images: dense noise (the wire carries the
//! data as it is) and a compressible one (a third noise, the rest text: the
//! wire carries less than the data). Prints the whole copy's wire rate
//! against the limit, the rate of each second, whether both hold within
//! ±10 %, and the data rate beside it. Files live under `CUTOVER_BENCH_DIR`
//! (default: the target's tmp folder) and are removed at the end.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover_copy::agent::{AgentClient, serve};
use cutover_copy::{CopyOptions, CopyReport, Endpoint, Location, copy_with};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Xorshift noise, every block different from every other and from zero;
/// with `compressible`, two thirds of each 4 KiB block are text instead.
fn generate(path: &Path, size: u64, compressible: bool) {
    let file = File::create(path).expect("source");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut chunk = vec![0u8; 4 << 20];
    let text = b"the quick brown fox jumps over the lazy dog; ";
    let mut at = 0;
    while at < size {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        if compressible {
            for block in chunk.chunks_exact_mut(4096) {
                for (i, byte) in block[1366..].iter_mut().enumerate() {
                    *byte = text[i % text.len()];
                }
            }
        }
        let n = (size - at).min(chunk.len() as u64) as usize;
        file.write_all_at(&chunk[..n], at).expect("write");
        at += n as u64;
    }
}

/// The agent's input pipe, counting the bytes written into it.
struct Counted {
    pipe: std::io::PipeWriter,
    bytes: Arc<AtomicU64>,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.pipe.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.pipe.flush()
    }
}

fn agent(root: &Path, wire: &Arc<AtomicU64>) -> Endpoint {
    let (request_reader, request_writer) = std::io::pipe().expect("pipe");
    let (response_reader, response_writer) = std::io::pipe().expect("pipe");
    let root = root.to_path_buf();
    std::thread::spawn(move || serve(&root, request_reader, response_writer));
    let counted = Counted {
        pipe: request_writer,
        bytes: Arc::clone(wire),
    };
    Endpoint::Agent(
        AgentClient::over("bench agent", Box::new(response_reader), Box::new(counted))
            .expect("agent"),
    )
}

/// One first full copy: its report, the bytes written into the agent's
/// pipe, and (time, wire bytes) about every 50 ms while it ran.
fn copy(dir: &Path, limit: Option<u64>) -> (CopyReport, u64, Vec<(Duration, u64)>) {
    let _ = fs::remove_file(dir.join("dest/copy.img"));
    let wire = Arc::new(AtomicU64::new(0));
    let (mut src, src_path) =
        Endpoint::connect(&Location::Local(dir.join("source.img"))).expect("source");
    let mut dst = agent(&dir.join("dest"), &wire);
    let handshake = wire.load(Ordering::Relaxed);
    let samples = Mutex::new(vec![(Duration::ZERO, 0)]);
    let done = std::sync::atomic::AtomicBool::new(false);
    let options = CopyOptions {
        limit,
        ..CopyOptions::default()
    };
    let started = Instant::now();
    let report = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let bytes = wire.load(Ordering::Relaxed) - handshake;
                samples
                    .lock()
                    .expect("samples")
                    .push((started.elapsed(), bytes));
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let report = copy_with(&mut src, &src_path, &mut dst, "copy.img", &options).expect("copy");
        done.store(true, Ordering::Relaxed);
        report
    });
    let wire_bytes = wire.load(Ordering::Relaxed) - handshake;
    (report, wire_bytes, samples.into_inner().expect("samples"))
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
    let limit = limit_mb * 1_000_000;
    println!(
        "limit bench: first full copy of {mb} MB, local file -> agent over pipes (unshaped), limit {limit_mb} MB/s on the wire; load average {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (name, compressible) in [("dense", false), ("compressible", true)] {
        generate(&dir.join("source.img"), size, compressible);
        let (free, free_wire, _) = copy(&dir, None);
        let free_secs = free.duration.as_secs_f64();
        println!(
            "{name}: uncapped {free_secs:.2} s, data {:.0} MB/s, wire {:.0} MB/s ({:.2} wire bytes per data byte)",
            free.bytes_sent as f64 / free_secs / 1e6,
            free_wire as f64 / free_secs / 1e6,
            free_wire as f64 / free.bytes_sent.max(1) as f64
        );

        let (capped, wire, samples) = copy(&dir, Some(limit));
        assert_eq!(
            fs::read(dir.join("source.img")).expect("source"),
            fs::read(dir.join("dest/copy.img")).expect("copy"),
            "the copy differs from the source"
        );
        let secs = capped.duration.as_secs_f64();
        let rate = wire as f64 / secs;
        println!(
            "{name}: limit {limit_mb} MB/s: {secs:.2} s, {:.0} MB on the wire, {:.2} MB/s = {:.3} x the limit ({}); data {:.0} MB at {:.2} MB/s",
            wire as f64 / 1e6,
            rate / 1e6,
            rate / limit as f64,
            within(rate, limit as f64),
            capped.bytes_sent as f64 / 1e6,
            capped.bytes_sent as f64 / secs / 1e6,
        );
        // The wire rate of each whole second but the last (partial) one.
        let at = |second: u64| {
            samples
                .iter()
                .rev()
                .find(|(t, _)| *t <= Duration::from_secs(second))
                .map(|&(t, bytes)| (t, bytes))
        };
        let mut per_second = Vec::new();
        for second in 1..secs as u64 {
            if let (Some((t0, b0)), Some((t1, b1))) = (at(second - 1), at(second))
                && t1 > t0
            {
                per_second.push((b1 - b0) as f64 / (t1 - t0).as_secs_f64());
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
            "{name}: wire rate per second ({} seconds): {:.2} .. {:.2} MB/s, {outside} outside ±10 % of the limit: {}",
            per_second.len(),
            low / 1e6,
            high / 1e6,
            per_second
                .iter()
                .map(|r| format!("{:.1}", r / 1e6))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let _ = fs::remove_dir_all(&dir);
}
