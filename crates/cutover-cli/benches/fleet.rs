//! A fleet cutover at scale, timed as the coordinator sees it: `cutover run`
//! of a generated runbook of 2,500, 5,000 and 10,000 steps over one host per
//! five steps, in 20 groups, with a `wait` per host and a fan-in step per
//! group (after every step of its hosts). Then, at 10,000 steps: the resume
//! of the completed run (every done step re-checked), and `/api/run` of
//! `cutover serve` on that state file.
//!
//! Prints wall times, the growth per doubling, and the `/api/run` median.
//! Beside each wall time, the CPU time of the run (user + system, its
//! commands included), which moves less when the machine is busy.
//! `cargo bench -p cutover-cli --bench fleet` (`CUTOVER_BENCH_MAX_STEPS`
//! caps the largest size).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GROUPS: usize = 20;

/// Runs of each size.
const ROUNDS: usize = 5;

/// The runbook: per host a closed-port check, a wait, a command, a second
/// check and a final command; per group one step after all its hosts.
fn fleet(steps: usize, closed_port: u16) -> String {
    let hosts = steps / 5;
    let mut out = String::new();
    let _ = writeln!(out, "runbook fleet\n");
    for h in 0..hosts {
        let _ = writeln!(
            out,
            "host h{h} addr 127.{}.{}.{} via local .",
            1 + h / 62_500,
            (h / 250) % 250,
            h % 250 + 1
        );
    }
    let _ = writeln!(out);
    for g in 0..GROUPS {
        let members: Vec<String> = (0..hosts)
            .filter(|h| h % GROUPS == g)
            .map(|h| format!("h{h}"))
            .collect();
        let _ = writeln!(out, "group g{g} {}", members.join(", "));
    }
    let _ = writeln!(out);
    for h in 0..hosts {
        let _ = writeln!(out, "step closed-{h}\n  port.closed h{h}:{closed_port}\n");
        let _ = writeln!(out, "step pause-{h} after closed-{h}\n  wait 0s\n");
        let _ = writeln!(
            out,
            "step mark-{h} after pause-{h}\n  exec on h{h} \"true\"\n"
        );
        let _ = writeln!(
            out,
            "step recheck-{h} after mark-{h}\n  port.closed h{h}:{closed_port}\n"
        );
        let _ = writeln!(out, "step done-{h} after recheck-{h}\n  wait 0s\n");
    }
    for g in 0..GROUPS {
        let after: Vec<String> = (0..hosts)
            .filter(|h| h % GROUPS == g)
            .map(|h| format!("done-{h}"))
            .collect();
        let _ = writeln!(
            out,
            "step group-{g} after {}\n  port.closed g{g}:{closed_port}\n",
            after.join(", ")
        );
    }
    out
}

fn cutover(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// User + system time of this process's waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: rustix has no getrusage. `rusage` is a C struct of integers,
    // for which all-zero bytes are a valid value; getrusage(2) writes only
    // into the one struct it is given, which lives on this frame.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// One `cutover run`: its wall time and CPU time.
fn timed_run(dir: &Path) -> (Duration, Duration) {
    let cpu_before = children_cpu();
    let started = Instant::now();
    let out = cutover(dir)
        .args(["run", "fleet.runbook", "--parallel", "8"])
        .output()
        .expect("cutover run starts");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, children_cpu() - cpu_before)
}

/// One GET of `/api/run`: the time to the whole body.
fn api_run(address: &str) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).expect("serve answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /api/run HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = Vec::new();
    stream.read_to_end(&mut body).unwrap();
    assert!(
        body.starts_with(b"HTTP/1.1 200"),
        "api/run answered {:?}",
        String::from_utf8_lossy(&body[..body.len().min(200)])
    );
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let max: usize = std::env::var("CUTOVER_BENCH_MAX_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut sizes = vec![2_500, 5_000, 10_000];
    sizes.retain(|s| *s <= max);
    // Rounds interleaved over the sizes, the median per size: one run on
    // this machine moves by a fifth from minute to minute.
    let texts: Vec<(usize, String)> = sizes
        .iter()
        .map(|&steps| (steps, fleet(steps, closed_port)))
        .collect();
    let mut times: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); sizes.len()];
    let mut dir_of_largest = None;
    for _round in 0..ROUNDS {
        for (i, (steps, text)) in texts.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("fleet.runbook"), text).unwrap();
            times[i].push(timed_run(dir.path()));
            dir_of_largest = Some((*steps, dir));
        }
    }
    let mut last: Option<(usize, Duration, Duration)> = None;
    for ((steps, text), runs) in texts.iter().zip(times) {
        let total = text.matches("\nstep ").count();
        let took = median(runs.iter().map(|r| r.0).collect());
        let cpu = median(runs.iter().map(|r| r.1).collect());
        let growth = last.map_or_else(String::new, |(n, t, c)| {
            format!(
                ", {:.2}x the time of {n} steps (goal <= 2.2x per doubling; CPU {:.2}x)",
                took.as_secs_f64() / t.as_secs_f64(),
                cpu.as_secs_f64() / c.as_secs_f64()
            )
        });
        println!(
            "fleet: {total} steps, {} hosts: cutover run {:.2}s, CPU {:.2}s (medians of {ROUNDS}){growth}",
            steps / 5,
            took.as_secs_f64(),
            cpu.as_secs_f64()
        );
        last = Some((*steps, took, cpu));
    }
    let Some((steps, dir)) = dir_of_largest else {
        return;
    };
    let (resume, _) = timed_run(dir.path());
    println!(
        "fleet: resume of the completed {steps}-step run {:.2}s (goal < 5 s)",
        resume.as_secs_f64()
    );

    let mut server = cutover(dir.path())
        .args([
            "serve",
            "fleet.runbook",
            "--listen",
            "127.0.0.1:0",
            "--exit-after",
            "300",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .rsplit_once("http://")
        .map(|(_, a)| a.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let _warm = api_run(&address);
    let times: Vec<Duration> = (0..5).map(|_| api_run(&address)).collect();
    println!(
        "fleet: /api/run at {steps} steps: median {:.0} ms of 5 (goal < 300 ms)",
        median(times).as_secs_f64() * 1e3
    );
    let _ = server.kill();
    let _ = server.wait();
}
