//! The sparse test image both image benches use (the copy engine's and
//! `cutover run`'s), rsync as the baseline, and the checks of a result.
//! Included by path from each bench.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const MIB: u64 = 1 << 20;
pub const BLOCK: u64 = 4096;

/// xorshift64 noise.
pub fn fill(state: &mut u64, out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Writes the source (4 MiB extents, about half holes) and the old copy with
/// 1 % of all 4 KiB blocks different; returns the number of changed blocks.
pub fn generate(source: &Path, old: &Path, size: u64) -> u64 {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let file = File::create(old).expect("old image");
    file.set_len(size).expect("size");
    let extent = 4 * MIB;
    let mut buffer = vec![0u8; extent as usize];
    for index in 0..size / extent {
        let mix = (index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 2;
        if mix == 0 {
            fill(&mut state, &mut buffer);
            file.write_all_at(&buffer, index * extent).expect("write");
        }
    }
    drop(file);
    reset_copy(old, source);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(source)
        .expect("source");
    let blocks = size / BLOCK;
    let changed = blocks / 100;
    let mut block = vec![0u8; BLOCK as usize];
    let mut picked = std::collections::BTreeSet::new();
    while (picked.len() as u64) < changed {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        picked.insert(state % blocks);
    }
    for index in picked {
        fill(&mut state, &mut block);
        file.write_all_at(&block, index * BLOCK).expect("write");
    }
    changed
}

pub fn reset_copy(from: &Path, to: &Path) {
    let _ = fs::remove_file(to);
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
    let _ = Command::new("sync").status();
}

pub fn rsync(source: &Path, dest: &Path, extra: &[&str]) -> (Duration, u64) {
    let started = Instant::now();
    let out = Command::new("rsync")
        .args(["--no-whole-file", "--inplace", "--stats"])
        .args(extra)
        .arg(source)
        .arg(dest)
        .output()
        .expect("rsync (apt-get install rsync)");
    let time = started.elapsed();
    assert!(
        out.status.success(),
        "rsync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = String::from_utf8_lossy(&out.stdout);
    let sent = stats
        .lines()
        .find_map(|l| l.strip_prefix("Total bytes sent: "))
        .map(|n| n.replace(',', "").trim().parse().unwrap_or(0))
        .unwrap_or(0);
    verify_equal(source, dest);
    (time, sent)
}

pub fn verify_equal(a: &Path, b: &Path) {
    let status = Command::new("cmp")
        .arg("-s")
        .arg(a)
        .arg(b)
        .status()
        .expect("cmp");
    assert!(
        status.success(),
        "{} and {} differ",
        a.display(),
        b.display()
    );
}

pub fn allocated(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

pub fn median(times: &[Duration]) -> f64 {
    let mut secs: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    secs[secs.len() / 2]
}
