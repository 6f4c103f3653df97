//! `cargo bench -p cutover-cli --bench copy_eta`: is a running copy's ETA
//! right? `cutover lab up` of a two-site runbook whose link is shaped to
//! 100 Mbit (`tc`, network namespaces), then `cutover run --format json` of
//! one `image.copy` of a dense (incompressible) image across it, long
//! enough to take over a minute (1 GiB unless `CUTOVER_BENCH_MIB` says
//! otherwise). Every progress event is stamped as it arrives; once the copy
//! (its act) has ended, each event's ETA is set against the time that was
//! actually left.
//!
//! Two cases: a first copy (no destination yet), and a copy over an old
//! copy whose first eighth is still equal (the rest changed): it begins
//! with a fast compare phase that must not count as transfer speed.
//! Prints per case the copy's time, the worst ETA error once 10 % of it
//! was done (by time, and by bytes), the error's percentiles, and the same
//! for the ETA a progress bar would show from bytes done and time taken
//! alone, for contrast. Needs network namespaces (root); elsewhere it says
//! so and stops.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const LINK: &str = "100Mbit";

fn cutover(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .output()
        .expect("cannot run cutover")
}

fn runbook(mib: u64) -> String {
    format!(
        "runbook eta-bench\n  link near -> far {LINK}\n\n\
         host source site near addr 127.0.0.10 via local hosts/source\n\
         host dest site far addr 127.0.0.20 via local hosts/dest\n\n\
         step copy\n  image.copy source:/srv/big.img -> dest:/srv/big.img size {mib}MiB\n"
    )
}

/// Writes `size` pseudo-random bytes (xorshift from `seed`) to `file`,
/// keeping its first `keep` bytes as they are.
fn noise(file: &Path, size: u64, keep: u64, seed: u64) {
    use std::os::unix::fs::FileExt;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(file)
        .unwrap();
    out.set_len(size).unwrap();
    let mut state = seed;
    let mut chunk = vec![0u8; 1 << 20];
    let mut at = keep;
    while at < size {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = (size - at).min(chunk.len() as u64) as usize;
        out.write_all_at(&chunk[..n], at).unwrap();
        at += n as u64;
    }
    out.sync_all().unwrap();
}

/// One progress event: when it arrived (seconds since the run began),
/// bytes done, the copy's ETA.
struct Report {
    at: f64,
    done: u64,
    total: u64,
    eta: Option<f64>,
}

struct Measured {
    mode: String,
    reports: Vec<Report>,
    act_start: f64,
    act_end: f64,
    summary: String,
}

fn one_case(mib: u64, equal_prefix: Option<u64>) -> Measured {
    let temp = tempfile::tempdir().unwrap();
    let source = temp.path().join("eta-bench.runbook");
    std::fs::write(&source, runbook(mib)).unwrap();
    let dir = temp.path().join("lab");
    let dir_text = dir.to_str().unwrap();
    let up = cutover(&[
        "lab",
        "up",
        source.to_str().unwrap(),
        "--dir",
        dir_text,
        "--fresh",
        "--stop-after",
        "15m",
    ]);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let network: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("network.json")).unwrap()).unwrap();
    let size = mib << 20;
    let image = dir.join("hosts/source/srv/big.img");
    noise(&image, size, 0, 0x9e37_79b9_7f4a_7c15);
    let dest = dir.join("hosts/dest/srv/big.img");
    let _ = std::fs::remove_file(&dest);
    if let Some(prefix) = equal_prefix {
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&image, &dest).unwrap();
        noise(&dest, size, prefix, 0x2545_f491_4f6c_dd1d);
    }
    let copy = dir.join("eta-bench.runbook");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args([
            "run",
            copy.to_str().unwrap(),
            "--t0",
            "now",
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reports = Vec::new();
    let (mut act_start, mut act_end, mut summary) = (None, None, String::new());
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let at = started.elapsed().as_secs_f64();
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match event["event"].as_str() {
            Some("phase") if event["phase"] == "act" => act_start = Some(at),
            Some("phase") if event["phase"] == "verify" => act_end = Some(at),
            Some("progress") if act_end.is_none() => reports.push(Report {
                at,
                done: event["done"].as_u64().unwrap_or(0),
                total: event["total"].as_u64().unwrap_or(0),
                eta: event["eta_ms"].as_u64().map(|ms| ms as f64 / 1000.0),
            }),
            Some("step_done" | "step_failed") => {
                summary = event["summary"].as_str().unwrap_or_default().to_string()
            }
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    use std::io::Read;
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    let _ = cutover(&["lab", "down", "--dir", dir_text]);
    assert!(status.success(), "run failed: {stderr}");
    Measured {
        mode: network["mode"].as_str().unwrap_or_default().to_string(),
        reports,
        act_start: act_start.expect("an act phase"),
        act_end: act_end.expect("a verify phase after the act"),
        summary,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Worst and percentiles of |ETA − actual| / actual over the reports
/// `counted` admits.
fn errors(
    m: &Measured,
    eta: impl Fn(&Report) -> Option<f64>,
    counted: impl Fn(&Report) -> bool,
) -> (usize, usize, Vec<f64>) {
    let (mut without, mut all) = (0, Vec::new());
    for r in m.reports.iter().filter(|r| counted(r)) {
        let actual = m.act_end - r.at;
        match eta(r) {
            Some(eta) if actual > 0.0 => all.push((eta - actual).abs() / actual),
            Some(_) => {}
            None => without += 1,
        }
    }
    all.sort_by(f64::total_cmp);
    (all.len(), without, all)
}

/// Where the worst error of `counted` reports was: seconds before the
/// copy's end, the ETA said and the time actually left.
fn worst_at(m: &Measured, counted: impl Fn(&Report) -> bool) -> String {
    let worst = m
        .reports
        .iter()
        .filter(|r| counted(r))
        .filter_map(|r| {
            let actual = m.act_end - r.at;
            let eta = r.eta?;
            (actual > 0.0).then_some(((eta - actual).abs() / actual, eta, actual))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match worst {
        Some((_, eta, actual)) => format!("ETA {eta:.2} s with {actual:.2} s left"),
        None => "no report".to_string(),
    }
}

fn describe(name: &str, (n, without, sorted): (usize, usize, Vec<f64>)) {
    let worst = sorted.last().copied().unwrap_or(f64::NAN);
    println!(
        "    {name}: {n} reports{}, worst {:.1} % ({}), p50 {:.1} %, p90 {:.1} %, p99 {:.1} %",
        if without > 0 {
            format!(" ({without} more without an ETA)")
        } else {
            String::new()
        },
        worst * 100.0,
        if worst <= 0.10 {
            "within ±10 %"
        } else {
            "OUTSIDE ±10 %"
        },
        percentile(&sorted, 0.5) * 100.0,
        percentile(&sorted, 0.9) * 100.0,
        percentile(&sorted, 0.99) * 100.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let mib: u64 = std::env::var("CUTOVER_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "copy ETA: image.copy of {mib} MiB (dense) over a link shaped to {LINK}; load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let cases = [
        ("first copy (no destination)", None),
        (
            "over an old copy, first eighth equal",
            Some((mib << 20) / 8 / (64 << 20) * (64 << 20)),
        ),
    ];
    for (name, prefix) in cases {
        let m = one_case(mib, prefix);
        if m.mode != "namespaces" {
            println!("  network namespaces cannot be made here: the link is not shaped");
            return;
        }
        let took = m.act_end - m.act_start;
        println!(
            "  {name}: copy {took:.1} s{}, {} progress reports; {}",
            if took >= 60.0 { "" } else { " (UNDER 60 s)" },
            m.reports.len(),
            m.summary
        );
        let by_time = |r: &Report| r.at - m.act_start >= 0.1 * took;
        let by_bytes = |r: &Report| r.total > 0 && r.done * 10 >= r.total;
        let naive = |r: &Report| {
            let elapsed = r.at - m.act_start;
            (r.done > 0).then(|| (r.total - r.done) as f64 * elapsed / r.done as f64)
        };
        if std::env::var_os("CUTOVER_BENCH_TRACE").is_some() {
            // About every 5 s: when, bytes done, the ETA and the time actually left.
            let mut next = 0.0;
            for r in m.reports.iter().filter(|r| r.at >= m.act_start) {
                if r.at >= next {
                    println!(
                        "    trace {:6.1} s: {:5.1} % done, ETA {:>6}, left {:6.1} s",
                        r.at - m.act_start,
                        r.done as f64 * 100.0 / r.total.max(1) as f64,
                        r.eta.map_or("-".to_string(), |e| format!("{e:.1} s")),
                        m.act_end - r.at
                    );
                    next = r.at + 5.0;
                }
            }
        }
        describe(
            "cutover's ETA, after 10 % of the time",
            errors(&m, |r| r.eta, by_time),
        );
        let last = m.reports.last().map_or(0.0, |r| m.act_end - r.at);
        println!(
            "    the worst: {}; the last report {last:.2} s before the copy's end; while over 5 s were left: {}",
            worst_at(&m, by_time),
            worst_at(&m, |r| by_time(r) && m.act_end - r.at > 5.0),
        );
        describe(
            "cutover's ETA, after 10 % of the time, while over 5 s were left",
            errors(&m, |r| r.eta, |r| by_time(r) && m.act_end - r.at > 5.0),
        );
        describe(
            "cutover's ETA, after 10 % of the bytes",
            errors(&m, |r| r.eta, by_bytes),
        );
        describe(
            "bytes-done ETA (as a bar guesses), after 10 % of the time",
            errors(&m, naive, by_time),
        );
        let _ = std::io::stdout().flush();
    }
}
