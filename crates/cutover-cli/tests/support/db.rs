//! What the `db.sync` interop tests share: running `cutover` in a lab's
//! folder with a password in its environment, bounded waits, SIGKILL of a
//! run's process group, a writer at a steady rate, and the search for
//! passwords in everything the runs left.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// No command of a test may take longer.
pub const LIMIT: Duration = Duration::from_secs(600);

/// `cutover` in `dir`, with `env` set, on `runbook`.
pub struct Cutover {
    pub dir: PathBuf,
    pub env: (&'static str, &'static str),
    pub runbook: &'static str,
}

impl Cutover {
    /// A command in its own process group (so a kill takes all of it).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.current_dir(&self.dir)
            .args(args)
            .env(self.env.0, self.env.1)
            .stdin(Stdio::null())
            .process_group(0);
        cmd
    }

    /// Runs a cutover command to its end (bounded); status, stdout,
    /// stderr, both also added to `outputs`.
    pub fn finish(&self, args: &[&str], outputs: &mut String) -> (ExitStatus, String, String) {
        self.finish_command(self.command(args), outputs)
    }

    /// [`Cutover::finish`] of a [`Cutover::command`] changed by the caller
    /// (another environment).
    pub fn finish_command(
        &self,
        mut command: Command,
        outputs: &mut String,
    ) -> (ExitStatus, String, String) {
        let out = tempfile::NamedTempFile::new().unwrap();
        let err = tempfile::NamedTempFile::new().unwrap();
        let mut child = command
            .stdout(out.reopen().unwrap())
            .stderr(err.reopen().unwrap())
            .spawn()
            .unwrap();
        let status = wait_bounded(&mut child, LIMIT);
        let out = std::fs::read_to_string(out.path()).unwrap();
        let err = std::fs::read_to_string(err.path()).unwrap();
        outputs.push_str(&out);
        outputs.push_str(&err);
        (status, out, err)
    }

    /// `run` stops at preflight (exit 2, nothing run, no state file) and
    /// `plan --probe` reports the same, each of `expected` in both (the
    /// probe's findings are wrapped to the terminal's width).
    pub fn assert_preflight_refuses(&self, expected: &[String], outputs: &mut String) {
        let (status, _, err) = self.finish(&["run", self.runbook], outputs);
        assert_eq!(status.code(), Some(2), "{err}");
        for line in expected {
            assert!(err.contains(line.as_str()), "{line}\n{err}");
        }
        assert!(err.contains("nothing was run"), "{err}");
        let stem = Path::new(self.runbook).file_stem().unwrap();
        let state = self.dir.join(".cutover").join(stem).with_extension("db");
        assert!(!state.exists(), "preflight failures write no state");
        let (_, _, err) = self.finish(&["plan", self.runbook, "--probe"], outputs);
        let flat = |text: &str| {
            text.split_whitespace()
                .filter(|word| *word != "│")
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(err.contains("could not probe: preflight: step "), "{err}");
        for line in expected {
            assert!(flat(&err).contains(&flat(line)), "{line}\n{err}");
        }
    }

    /// `cutover run RUNBOOK --take-over` in the background, logging to
    /// `log`.
    pub fn spawn_run(&self, log: &Path) -> Child {
        let file = std::fs::File::create(log).unwrap();
        self.command(&["run", self.runbook, "--take-over"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap()
    }
}

pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            kill_group(child);
            let _ = child.wait();
            panic!("a cutover command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn kill_group(child: &Child) {
    let group = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
}

/// Polls `ready` every 20 ms until it holds (bounded); a timeout shows
/// `log` (a run's).
pub fn wait_for(what: &str, limit: Duration, log: &Path, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what}: not within {limit:?}; the run's log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes statement `n` (from `statement`) at about `per_second` a second
/// into a client session's stdin until stopped; counts the statements
/// sent.
pub struct Writer {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(
        mut session: Child,
        per_second: u64,
        statement: impl Fn(u64) -> String + Send + 'static,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let mut stdin = session.stdin.take().unwrap();
            let start = Instant::now();
            let mut n: u64 = 0;
            while !stop2.load(Ordering::SeqCst) {
                if stdin.write_all(statement(n).as_bytes()).is_err() {
                    break;
                }
                n += 1;
                sent2.store(n, Ordering::SeqCst);
                let due = start + Duration::from_micros(n * 1_000_000 / per_second);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = session.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = session.kill();
            let _ = session.wait();
        });
        Writer {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Stops writing and waits until every statement sent was run.
    pub fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// No password in `outputs` nor in any file of `dir/.cutover` (the state
/// file and its companions).
pub fn assert_no_password(dir: &Path, outputs: &str, passwords: &[&str]) {
    let mut texts = vec![("outputs", outputs.to_owned())];
    for entry in std::fs::read_dir(dir.join(".cutover")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        texts.push(("state file", String::from_utf8_lossy(&bytes).into_owned()));
    }
    for (what, text) in texts {
        for password in passwords {
            assert!(!text.contains(password), "a password is in the {what}");
        }
    }
}
