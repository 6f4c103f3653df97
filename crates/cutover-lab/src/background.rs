//! The lab as a background process, for `cutover lab up` / `cutover lab down`: `up` starts a
//! detached process (its own session, so closing the terminal or a Ctrl-C there does not stop
//! it) that serves the lab and writes the manifest once everything listens; `down` signals that
//! process and waits, bounded, until it is gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::error::LabError;
use crate::lab::{INTERNAL_DIR, MANIFEST_FILE, Manifest};
use crate::process::is_zombie;

/// The word in a lab process's command line that marks it as one.
pub const SERVE_MARKER: &str = "serve-internal";
/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(50);

/// The log of the background lab process.
pub fn log_file(dir: &Path) -> PathBuf {
    dir.join(INTERNAL_DIR).join("lab.log")
}

/// Whether `pid` is a running lab process (and not some other process that reuses the id).
pub fn is_lab_process(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            cmdline
                .split(|&b| b == 0)
                .any(|word| word == SERVE_MARKER.as_bytes())
        })
        .unwrap_or(false)
        && !is_zombie(pid)
}

/// The lab running in `dir`, if its process is alive.
pub fn running(dir: &Path) -> Option<Manifest> {
    let manifest = Manifest::read(dir).ok()?;
    is_lab_process(manifest.pid).then_some(manifest)
}

/// Starts `program args...` detached, logging to the lab's log file, and waits until it has
/// written a manifest naming itself (ready), exits (failed: the log says why) or `timeout`
/// passes (then it is stopped).
pub fn start_detached(
    program: &Path,
    args: &[String],
    dir: &Path,
    timeout: Duration,
) -> Result<Manifest, LabError> {
    if let Some(manifest) = running(dir) {
        return Err(LabError::Process(format!(
            "a lab is already running in {} (process {}); stop it with `cutover lab down --dir {}`",
            dir.display(),
            manifest.pid,
            dir.display()
        )));
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    match std::fs::remove_file(&manifest_path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(LabError::io(
                "cannot remove the stale manifest",
                &manifest_path,
                err,
            ));
        }
    }
    let log = log_file(dir);
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| LabError::io("cannot create", parent, err))?;
    }
    let log_out =
        std::fs::File::create(&log).map_err(|err| LabError::io("cannot create", &log, err))?;
    let log_err = log_out
        .try_clone()
        .map_err(|err| LabError::io("cannot open", &log, err))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_out)
        .stderr(log_err);
    new_session(&mut command);
    let mut child = command
        .spawn()
        .map_err(|err| LabError::io("cannot start the lab process", program, err))?;
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(manifest) = Manifest::read(dir)
            && manifest.pid == pid
        {
            return Ok(manifest);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(LabError::Process(format!(
                "the lab process exited ({status}) before it was ready:\n{}",
                log_text.trim_end()
            )));
        }
        if Instant::now() >= deadline {
            stop_child(&mut child);
            return Err(LabError::Process(format!(
                "the lab was not ready after {}s; its log is {}",
                timeout.as_secs(),
                log.display()
            )));
        }
        std::thread::sleep(POLL);
    }
}

fn new_session(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: pre_exec is unsafe because the closure runs in the forked
    // child before exec, where only async-signal-safe work is sound. This
    // one makes a single system call (setsid, a raw syscall in rustix) and
    // builds its error from the errno without allocating; it takes no lock
    // and touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
}

fn stop_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn signal(pid: u32, signal: Signal) -> Result<(), LabError> {
    let process = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| LabError::Process(format!("process id {pid} is out of range")))?;
    match rustix::process::kill_process(process, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(err) => Err(LabError::Process(format!(
            "cannot signal lab process {pid}: {}",
            std::io::Error::from(err)
        ))),
    }
}

/// How `cutover lab down` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The lab process stopped on SIGTERM.
    Stopped { pid: u32 },
    /// It ignored SIGTERM within the time given and was killed.
    Killed { pid: u32 },
    /// No lab was running there (a stale manifest was removed, if any).
    NotRunning,
}

/// Stops the lab running in `dir`: SIGTERM, then up to `timeout` for it to go, then SIGKILL.
pub fn stop(dir: &Path, timeout: Duration) -> Result<Stopped, LabError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = match Manifest::read(dir) {
        Ok(manifest) => manifest,
        Err(LabError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Stopped::NotRunning);
        }
        Err(err) => return Err(err),
    };
    let pid = manifest.pid;
    let outcome = if is_lab_process(pid) {
        signal(pid, Signal::TERM)?;
        let deadline = Instant::now() + timeout;
        while is_lab_process(pid) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if is_lab_process(pid) {
            signal(pid, Signal::KILL)?;
            let deadline = Instant::now() + Duration::from_secs(2);
            while is_lab_process(pid) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            Stopped::Killed { pid }
        } else {
            Stopped::Stopped { pid }
        }
    } else {
        Stopped::NotRunning
    };
    // A lab that was killed leaves its database servers behind.
    crate::databases::remove_leftovers(&dir.join(INTERNAL_DIR))?;
    match std::fs::remove_file(&manifest_path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(LabError::io("cannot remove", &manifest_path, err)),
    }
    Ok(outcome)
}
