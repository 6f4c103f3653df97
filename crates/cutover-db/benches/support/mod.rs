//! What both replication benches share: the writer that keeps the source
//! busy during a sync, medians of the rounds, and the machine's load
//! beside every figure (other builds share the cores).

use std::io::Write;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A client session fed `writes` statements a second (half inserts into
/// `accounts`, half updates of its first `rows` rows) until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl Writer {
    /// Feeds `session` (a client reading statements from its stdin).
    pub fn start(mut session: Child, writes: u64, rows: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut stdin = session.stdin.take().unwrap();
            let start = Instant::now();
            let mut n: u64 = 0;
            while writes > 0 && !flag.load(Ordering::SeqCst) {
                let statement = if n.is_multiple_of(2) {
                    format!("INSERT INTO accounts (name, note) VALUES ('live {n}', 'x');\n")
                } else {
                    format!(
                        "UPDATE accounts SET balance = balance + 1 WHERE id = {};\n",
                        1 + (n * 7919) % rows
                    )
                };
                if stdin.write_all(statement.as_bytes()).is_err() {
                    break;
                }
                n += 1;
                let due = start + Duration::from_micros(n * 1_000_000 / writes);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            drop(stdin);
            let _ = session.wait();
            n
        });
        Writer { stop, thread }
    }

    /// Stops the writes (the freeze); the statements written, once the
    /// session has run them all.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The 1-minute load average, e.g. `load 3.2`.
pub fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("load {}", text.split(' ').next().unwrap_or("?"))
}

/// A whole-number setting from the environment.
pub fn number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Prints the rounds' figures and their medians: the dump and restore,
/// the sync's copy (with the ratio of their medians) and freeze to
/// verified.
pub fn summary(anchor: &str, mib: f64, dumps: &[f64], copies: &[f64], verified: &[f64]) {
    let (dump, copy) = (median(dumps), median(copies));
    let ratios: Vec<f64> = dumps.iter().zip(copies).map(|(d, c)| d / c).collect();
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "medians of {} rounds ({}): {anchor} {dump:.1} s ({:.1} MiB/s; rounds {}); the sync's copy {copy:.1} s ({:.1} MiB/s; rounds {}): {:.2}x the speed of {anchor} (per round {}); freeze -> verified {:.1} s (rounds {})",
        dumps.len(),
        load(),
        mib / dump,
        list(dumps),
        mib / copy,
        list(copies),
        dump / copy,
        ratios
            .iter()
            .map(|r| format!("{r:.2}x"))
            .collect::<Vec<_>>()
            .join(", "),
        median(verified),
        list(verified),
    );
}
