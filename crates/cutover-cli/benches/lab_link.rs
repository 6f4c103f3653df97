//! Plan fidelity over a shaped lab link: `cutover lab up` of a two-site runbook whose link is
//! 100Mbit, one `image.copy` of a 200 MiB image of dense (incompressible, hole-free) data from
//! a host of one site to a host of the other, run by `cutover run`; then the copy step's time
//! against size ÷ bandwidth (16.8 s) and the plan's estimate. Each round is a fresh lab and a
//! fresh destination, so every byte crosses the link.
//!
//! Prints, per round, the copy's time (its act, from its evidence) and its ratio to size ÷
//! bandwidth, whether it is within ±15 %, the whole step's time (with its check and verify)
//! and the bytes sent; then the same copy on an unshaped loopback lab, for contrast.
//! Needs network namespaces (root); elsewhere it says so and measures only loopback.
//! `cargo bench -p cutover-cli --bench lab_link` (`CUTOVER_BENCH_ROUNDS`, default 2;
//! `CUTOVER_BENCH_MIB`, default 200).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const LINK_BITS: u64 = 100_000_000;

fn cutover(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .output()
        .expect("cannot run cutover")
}

fn runbook(mib: u64) -> String {
    format!(
        "runbook link-bench\n  link near -> far 100Mbit\n\n\
         host source site near addr 127.0.0.10 via local hosts/source\n\
         host dest site far addr 127.0.0.20 via local hosts/dest\n\n\
         step copy\n  image.copy source:/srv/big.img -> dest:/srv/big.img size {mib}MiB\n"
    )
}

/// Overwrites the lab's sparse image with dense pseudo-random bytes (xorshift), so the copy
/// sends all of it: no holes, no zero blocks, nothing to reuse.
fn densify(file: &Path, size: u64) {
    use std::io::Write;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
}

struct Measured {
    mode: String,
    step_secs: f64,
    /// The copy itself (the act), as its evidence says.
    act_secs: f64,
    run_secs: f64,
    sent: u64,
    planned: Option<f64>,
}

fn one_round(mib: u64, extra: &[&str]) -> Measured {
    let temp = tempfile::tempdir().unwrap();
    let source = temp.path().join("link-bench.runbook");
    std::fs::write(&source, runbook(mib)).unwrap();
    let dir = temp.path().join("lab");
    let dir_text = dir.to_str().unwrap();
    let mut args = vec![
        "lab",
        "up",
        source.to_str().unwrap(),
        "--dir",
        dir_text,
        "--fresh",
        "--stop-after",
        "10m",
    ];
    args.extend_from_slice(extra);
    let up = cutover(&args);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let network: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("network.json")).unwrap()).unwrap();
    densify(&dir.join("hosts/source/srv/big.img"), mib << 20);
    let copy = dir.join("link-bench.runbook");
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["run", copy.to_str().unwrap(), "--t0", "now"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let run_secs = started.elapsed().as_secs_f64();
    let export = cutover(&["export", copy.to_str().unwrap(), "--format", "json"]);
    let _ = cutover(&["lab", "down", "--dir", dir_text]);
    assert!(
        run.status.success(),
        "run: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let export: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    let step = &export["steps"][0];
    let instant = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v["utc"].as_str().unwrap()).unwrap()
    };
    let act = step["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["phase"] == "act")
        .expect("the copy's act evidence");
    Measured {
        mode: network["mode"].as_str().unwrap_or_default().to_string(),
        step_secs: (instant(&step["actual"]["end"]) - instant(&step["actual"]["start"]))
            .num_milliseconds() as f64
            / 1000.0,
        act_secs: act["data"]["duration"]["secs"].as_f64().unwrap_or(0.0)
            + act["data"]["duration"]["nanos"].as_f64().unwrap_or(0.0) / 1e9,
        run_secs,
        sent: act["data"]["bytes_sent"].as_u64().unwrap_or(0),
        planned: step["planned"]["duration_s"].as_f64(),
    }
}

fn main() {
    let rounds: usize = std::env::var("CUTOVER_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mib: u64 = std::env::var("CUTOVER_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ideal = (mib << 20) as f64 * 8.0 / LINK_BITS as f64;
    println!(
        "lab link: image.copy of {mib} MiB (dense) over a link shaped to 100 Mbit; size / bandwidth = {ideal:.2} s"
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let m = one_round(mib, &[]);
        if m.mode != "namespaces" {
            println!("  network namespaces cannot be made here: the link is not shaped");
            break;
        }
        let ratio = m.act_secs / ideal;
        ratios.push(ratio);
        println!(
            "  round {round}: copy {:.2} s ({:.3} x size/bandwidth, {}); step with check and verify {:.2} s, run {:.2} s; {:.1} MiB sent; planned {} s",
            m.act_secs,
            ratio,
            if (ratio - 1.0).abs() <= 0.15 {
                "within ±15 %"
            } else {
                "OUTSIDE ±15 %"
            },
            m.step_secs,
            m.run_secs,
            m.sent as f64 / 1048576.0,
            m.planned.map_or("?".to_string(), |p| format!("{p:.1}")),
        );
    }
    if !ratios.is_empty() {
        ratios.sort_by(f64::total_cmp);
        println!(
            "  median copy {:.3} x size/bandwidth ({:.2} s)",
            ratios[ratios.len() / 2],
            ratios[ratios.len() / 2] * ideal
        );
    }
    let unshaped = one_round(mib, &["--loopback"]);
    println!(
        "  unshaped (loopback lab, `via local` copy): copy {:.2} s, step {:.2} s, {:.1} MiB sent",
        unshaped.act_secs,
        unshaped.step_secs,
        unshaped.sent as f64 / 1048576.0
    );
}
