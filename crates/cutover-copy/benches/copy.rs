//! `cargo bench -p cutover-copy --bench copy`: cutover's delta copy against
//! rsync on a sparse disk image, in interleaved rounds.
//!
//! Generates a sparse image (about half holes; 4 GiB unless
//! `CUTOVER_BENCH_GIB` says otherwise) and an old copy of it with 1 % of its
//! 4 KiB blocks different, then per round times: cutover (coordinator in this
//! process, the destination served by an agent child over a pipe, the same
//! code as `cutover agent --stdio`), `rsync --no-whole-file --inplace` and
//! `rsync --no-whole-file --inplace -B 4096`, resetting the destination
//! before each run. Then the unchanged case and a shifted-data case.
//! Files live under `CUTOVER_BENCH_DIR` (default: the target's tmp folder).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "support/image.rs"]
mod image;
use image::{BLOCK, MIB, allocated, fill, generate, median, reset_copy, rsync, verify_equal};

use cutover_copy::{CopyOptions, CopyReport, Endpoint, Location, Outcome, copy_with};

/// Counts heap bytes so the bench can report the peak.
struct CountingAllocator;

static HEAP_NOW: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only adds counting.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = HEAP_NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        HEAP_NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--agent-serve") {
        // This binary doubles as the agent child: serve, then leave the peak heap in a file.
        let root = PathBuf::from(&args[at + 1]);
        let result = cutover_copy::agent::serve_stdio(&root);
        let _ = fs::write(
            root.join("agent-heap-peak"),
            HEAP_PEAK.load(Ordering::Relaxed).to_string(),
        );
        std::process::exit(if result.is_ok() { 0 } else { 2 });
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let gib: u64 = std::env::var("CUTOVER_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let rounds: usize = std::env::var("CUTOVER_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let base = std::env::var("CUTOVER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let dir = base.join("cutover-copy-bench");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("bench folder");
    let size = gib << 30;
    println!(
        "cutover-copy bench: {gib} GiB image, {rounds} rounds, in {}",
        dir.display()
    );
    println!(
        "machine: {} cores (shared with other work while this ran)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let source = dir.join("source.img");
    let old = dir.join("old.img");
    let dest = dir.join("dest.img");
    let started = Instant::now();
    let changed = generate(&source, &old, size);
    println!(
        "generated in {:.1} s: source {} MiB allocated of {} MiB; {} blocks ({} MiB) changed",
        started.elapsed().as_secs_f64(),
        allocated(&source) / MIB,
        size / MIB,
        changed,
        changed * BLOCK / MIB
    );

    let mut cutover_times = Vec::new();
    let mut rsync_times = Vec::new();
    let mut rsync4k_times = Vec::new();
    let mut cutover_report = None;
    let (mut rsync_sent, mut rsync4k_sent) = (0, 0);
    let mut agent_peak = 0;
    for round in 1..=rounds {
        reset_copy(&old, &dest);
        let (time, report, peak) = cutover(&source, &dir);
        verify_equal(&source, &dest);
        agent_peak = agent_peak.max(peak);
        println!(
            "  cutover: {:.2} s, sent {} B, wire out {} B / in {} B, dest allocated {} MiB",
            time.as_secs_f64(),
            report.bytes_sent,
            report.wire_bytes_out,
            report.wire_bytes_in,
            allocated(&dest) / MIB
        );
        cutover_times.push(time);
        cutover_report = Some(report);

        reset_copy(&old, &dest);
        let (time, sent) = rsync(&source, &dest, &[]);
        println!(
            "  rsync --no-whole-file --inplace: {:.2} s, sent {sent} B",
            time.as_secs_f64()
        );
        rsync_times.push(time);
        rsync_sent = sent;

        reset_copy(&old, &dest);
        let (time, sent) = rsync(&source, &dest, &["-B", "4096"]);
        println!(
            "  rsync --no-whole-file --inplace -B 4096: {:.2} s, sent {sent} B",
            time.as_secs_f64()
        );
        rsync4k_times.push(time);
        rsync4k_sent = sent;
        println!(
            "round {round}: rsync/cutover = {:.1}x, rsync-B4096/cutover = {:.1}x",
            rsync_times[round - 1].as_secs_f64() / cutover_times[round - 1].as_secs_f64(),
            rsync4k_times[round - 1].as_secs_f64() / cutover_times[round - 1].as_secs_f64()
        );
    }
    let report = cutover_report.expect("at least one round");
    let (c, r, r4) = (
        median(&cutover_times),
        median(&rsync_times),
        median(&rsync4k_times),
    );
    println!("\n== 1 % of 4 KiB blocks changed in place ==");
    println!(
        "median cutover {c:.2} s | rsync default {r:.2} s ({:.1}x) | rsync -B 4096 {r4:.2} s ({:.1}x)",
        r / c,
        r4 / c
    );
    println!(
        "bytes sent: cutover {} (data) / {} (all protocol bytes out) | rsync default {rsync_sent} | rsync -B 4096 {rsync4k_sent} | changed {}",
        report.bytes_sent,
        report.wire_bytes_out,
        changed * BLOCK
    );
    println!(
        "cutover sent / changed bytes = {:.3}",
        report.bytes_sent as f64 / (changed * BLOCK) as f64
    );
    println!(
        "peak heap: coordinator {} MiB, agent {} MiB; coordinator peak RSS (incl. mapped file pages) {} MiB",
        HEAP_PEAK.load(Ordering::Relaxed) / MIB as usize,
        agent_peak / MIB as usize,
        peak_rss_kib() / 1024
    );
    println!(
        "sparse: source allocated {} MiB, destination allocated {} MiB",
        allocated(&source) / MIB,
        allocated(&dest) / MIB
    );

    println!("\n== unchanged image ==");
    reset_copy(&source, &dest);
    let mut unchanged = Vec::new();
    for _ in 0..rounds {
        let (time, report, _) = cutover(&source, &dir);
        assert_eq!(report.outcome, Outcome::AlreadyEqual);
        unchanged.push(time);
    }
    let mut read_both = Vec::new();
    for _ in 0..rounds {
        read_both.push(hash_both(&source, &dest));
    }
    let (u, floor) = (median(&unchanged), median(&read_both));
    println!(
        "median cutover {u:.2} s | blake3 of both files on two threads {floor:.2} s | ratio {:.2}",
        u / floor
    );

    println!("\n== shifted data (100 bytes inserted at 1 MiB) ==");
    let shifted = dir.join("shifted.img");
    shift(&source, &shifted, MIB, 100);
    reset_copy(&source, &dest);
    let started = Instant::now();
    let report = run_cutover(&shifted, &dir).0;
    let time = started.elapsed();
    verify_equal(&shifted, &dest);
    println!(
        "cutover {:.2} s, sent {} B ({} delta stretches), dest allocated {} MiB",
        time.as_secs_f64(),
        report.bytes_sent,
        report.delta_stretches,
        allocated(&dest) / MIB
    );
    reset_copy(&source, &dest);
    let (time, sent) = rsync(&shifted, &dest, &[]);
    println!(
        "rsync --no-whole-file --inplace {:.2} s, sent {sent} B",
        time.as_secs_f64()
    );
    println!(
        "peak heap after all cases: coordinator {} MiB",
        HEAP_PEAK.load(Ordering::Relaxed) / MIB as usize
    );
    let _ = fs::remove_dir_all(&dir);
}

fn run_cutover(source: &Path, dir: &Path) -> (CopyReport, usize) {
    let exe = std::env::current_exe().expect("bench binary");
    let agent = Location::Agent {
        command: vec![
            exe.display().to_string(),
            "--agent-serve".into(),
            dir.display().to_string(),
        ],
        path: "dest.img".into(),
    };
    let (mut src, src_path) =
        Endpoint::connect(&Location::Local(source.to_path_buf())).expect("source");
    let (mut dst, dst_path) = Endpoint::connect(&agent).expect("agent");
    let report = copy_with(
        &mut src,
        &src_path,
        &mut dst,
        &dst_path,
        &CopyOptions::default(),
    )
    .expect("cutover copy");
    drop(dst);
    let peak = fs::read_to_string(dir.join("agent-heap-peak"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (report, peak)
}

fn cutover(source: &Path, dir: &Path) -> (Duration, CopyReport, usize) {
    let started = Instant::now();
    let (report, peak) = run_cutover(source, dir);
    (started.elapsed(), report, peak)
}

fn hash_both(a: &Path, b: &Path) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| blake3::Hasher::new().update_mmap(a).map(|h| h.finalize()));
        let second = blake3::Hasher::new().update_mmap(b).map(|h| h.finalize());
        let _ = first.join();
        let _ = second;
    });
    started.elapsed()
}

/// Writes `from` with `len` bytes inserted at `at`, keeping zero blocks as holes.
fn shift(from: &Path, to: &Path, at: u64, len: usize) {
    let input = File::open(from).expect("source");
    let size = input.metadata().expect("size").len();
    let output = File::create(to).expect("shifted");
    output.set_len(size + len as u64).expect("size");
    let mut state = 77u64;
    let mut inserted = vec![0u8; len];
    fill(&mut state, &mut inserted);
    let mut stream = Vec::with_capacity(8 * MIB as usize);
    let mut read_at = 0;
    let mut write_at = 0;
    let mut chunk = vec![0u8; 4 * MIB as usize];
    while read_at < size {
        let n = (size - read_at).min(chunk.len() as u64) as usize;
        input.read_exact_at(&mut chunk[..n], read_at).expect("read");
        if read_at <= at && at < read_at + n as u64 {
            let split = (at - read_at) as usize;
            stream.extend_from_slice(&chunk[..split]);
            stream.extend_from_slice(&inserted);
            stream.extend_from_slice(&chunk[split..n]);
        } else {
            stream.extend_from_slice(&chunk[..n]);
        }
        read_at += n as u64;
        let whole = stream.len() / BLOCK as usize * BLOCK as usize;
        write_blocks(&output, write_at, &stream[..whole]);
        write_at += whole as u64;
        stream.drain(..whole);
    }
    write_blocks(&output, write_at, &stream);
}

fn write_blocks(file: &File, at: u64, data: &[u8]) {
    for (i, block) in data.chunks(BLOCK as usize).enumerate() {
        if block.iter().any(|b| *b != 0) {
            file.write_all_at(block, at + i as u64 * BLOCK)
                .expect("write");
        }
    }
}

fn peak_rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}
