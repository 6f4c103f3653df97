//! The coordinator lock: one `cutover run` (or rollback) per state file.
//! The holder (user, host, pid, since, and from schema version 2 the
//! process's start time and the host's boot id) is a row in the state file
//! itself, so it travels with the file and is visible to `cutover status`.
//!
//! A pid alone does not name a process for long: after a reboot, or once
//! pids wrap, another process may have it, and a lock judged by `kill(pid,
//! 0)` alone would then look held forever. So a holder on this host is
//! gone when the boot id differs (the host rebooted since), when its pid is
//! not alive, or when the pid is alive but its start time differs (another
//! process has the pid). A lock written by a version-1 cutover has no start
//! time or boot id and keeps the old rule: gone when the pid is not alive.

use crate::{Result, Store, StoreError, rows};
use chrono::{DateTime, Utc};
use rusqlite::{ErrorCode, OptionalExtension, params};
use serde::Serialize;

/// Who holds (or wants) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub since: DateTime<Utc>,
    /// The process's start time, in clock ticks since boot (field 22 of
    /// `/proc/PID/stat`, as text); `None` in a lock written by a version-1
    /// cutover, or where `/proc` cannot tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// The boot id of the holder's host (`/proc/sys/kernel/random/boot_id`)
    /// when the lock was taken; `None` as for `start_time`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// Whether the holder of a lock is still there, as far as this host can
/// tell (see [`LockHolder::liveness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Its process runs on this host (for a version-1 lock: its pid is
    /// alive).
    Alive,
    /// It is on another host: it cannot be checked from here, and is
    /// treated as alive.
    OtherHost,
    /// Its process is gone: the lock is stale.
    Gone(GoneReason),
}

/// Why the holder of a lock is known to be gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GoneReason {
    /// The host has rebooted since the lock was taken (another boot id).
    Rebooted,
    /// No process has its pid.
    Exited,
    /// A process has its pid but started at another time: the pid was
    /// reused.
    PidReused,
}

impl std::fmt::Display for GoneReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GoneReason::Rebooted => "the host has rebooted since it took the lock",
            GoneReason::Exited => "its process has exited",
            GoneReason::PidReused => "its process has exited and its pid is now another process's",
        })
    }
}

impl LockHolder {
    /// This process, now.
    pub fn current() -> LockHolder {
        let pid = std::process::id();
        LockHolder {
            user: current_user(),
            host: current_host(),
            pid,
            since: Utc::now(),
            start_time: process_start_time(pid),
            boot_id: current_boot_id(),
        }
    }

    /// Whether the holder is still there: checked on this host by boot id,
    /// pid and process start time (see the module doc); a holder on
    /// another host cannot be checked.
    pub fn liveness(&self) -> Liveness {
        if self.host != current_host() {
            return Liveness::OtherHost;
        }
        if let (Some(then), Some(now)) = (&self.boot_id, current_boot_id())
            && *then != now
        {
            return Liveness::Gone(GoneReason::Rebooted);
        }
        if !process_alive(self.pid) {
            return Liveness::Gone(GoneReason::Exited);
        }
        match (&self.start_time, process_start_time(self.pid)) {
            (Some(then), Some(now)) if *then != now => Liveness::Gone(GoneReason::PidReused),
            _ => Liveness::Alive,
        }
    }

    /// A holder on this host whose process is gone: its lock is stale and
    /// may be taken over (see [`LockHolder::liveness`] for why). `cutover
    /// status` can say the coordinator is dead when this holds. A holder
    /// on another host is never stale.
    pub fn is_stale(&self) -> bool {
        matches!(self.liveness(), Liveness::Gone(_))
    }

    /// Whether `other` names the same process: same host and pid, and the
    /// same start time and boot id where both are known.
    pub fn is_same_process(&self, other: &LockHolder) -> bool {
        let agree = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.host == other.host
            && self.pid == other.pid
            && agree(&self.start_time, &other.start_time)
            && agree(&self.boot_id, &other.boot_id)
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}) since {}",
            self.user,
            self.host,
            self.pid,
            self.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// The result of trying to take the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// Taken (it was free, or stale and taking over was allowed).
    Acquired { took_over: Option<LockHolder> },
    /// Held by a live process (or one on another host).
    Held(LockHolder),
    /// Held by a process on this host that is gone; may be taken over with
    /// confirmation.
    Stale(LockHolder),
}

/// How many times taking the lock is tried when the file stays busy.
const BUSY_ATTEMPTS: usize = 3;

impl Store {
    /// Tries to take the coordinator lock for `me`. A stale lock is taken
    /// over only when `take_over_stale` is set; the take-over is logged.
    ///
    /// When another process keeps the file busy past the busy timeout
    /// (it is driving the run), the holder it wrote is read (readers are
    /// never blocked) and returned as [`LockState::Held`] (or `Stale`)
    /// rather than a "database is locked" error.
    pub fn acquire_lock(&self, me: &LockHolder, take_over_stale: bool) -> Result<LockState> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_acquire_lock(me, take_over_stale) {
                Err(StoreError::Sqlite { source, .. })
                    if is_busy(&source) && attempt < BUSY_ATTEMPTS =>
                {
                    // A stale holder to take over needs the write: try again.
                    if let Some(holder) = self.lock_holder()?
                        && !holder.is_same_process(me)
                    {
                        if !holder.is_stale() {
                            return Ok(LockState::Held(holder));
                        }
                        if !take_over_stale {
                            return Ok(LockState::Stale(holder));
                        }
                    }
                }
                other => return other,
            }
        }
    }

    fn try_acquire_lock(&self, me: &LockHolder, take_over_stale: bool) -> Result<LockState> {
        self.sql(|c| {
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let holder = rows::lock_holder(&tx)?;
            let took_over = match holder {
                Some(h) if h.is_same_process(me) => None,
                Some(h) if !h.is_stale() => return Ok(LockState::Held(h)),
                Some(h) if !take_over_stale => return Ok(LockState::Stale(h)),
                Some(h) => Some(h),
                None => None,
            };
            tx.execute(
                "INSERT OR REPLACE INTO lock (id, user, host, pid, since, start_time, boot_id)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
                params![me.user, me.host, me.pid, me.since, me.start_time, me.boot_id],
            )?;
            if let Some(old) = &took_over {
                let run: Option<i64> = tx
                    .query_row("SELECT max(id) FROM runs", [], |r| r.get(0))
                    .optional()?
                    .flatten();
                if let Some(run) = run {
                    let why = match old.liveness() {
                        Liveness::Gone(reason) => format!(" ({reason})"),
                        _ => String::new(),
                    };
                    tx.execute(
                        "INSERT INTO events (run_id, at, step, kind, message) VALUES (?1, ?2, NULL, 'lock', ?3)",
                        params![run, Utc::now(), format!("stale lock of {old} taken over by {me}{why}")],
                    )?;
                }
            }
            tx.commit()?;
            Ok(LockState::Acquired { took_over })
        })
    }

    /// Releases the lock if `me` holds it.
    pub fn release_lock(&self, me: &LockHolder) -> Result<()> {
        self.sql(|c| {
            c.execute(
                "DELETE FROM lock WHERE host = ?1 AND pid = ?2
                   AND (start_time IS NULL OR ?3 IS NULL OR start_time = ?3)",
                params![me.host, me.pid, me.start_time],
            )
            .map(drop)
        })
    }

    /// The current holder, if any.
    pub fn lock_holder(&self) -> Result<Option<LockHolder>> {
        self.sql(rows::lock_holder)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// The operator this process records (runs, confirmations, the lock):
/// the name given to [`set_operator`], else the login name (`USER`,
/// `LOGNAME`, `USERNAME`, else the password database's entry for the
/// effective user id), else `unknown`.
pub fn current_user() -> String {
    if let Some(name) = OPERATOR.get() {
        return name.clone();
    }
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .or_else(passwd_name)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The name `--operator` gave, for the whole process.
static OPERATOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names the operator [`current_user`] returns from now on (`--operator
/// NAME`); set once, before anything is recorded. Refused when empty, when
/// it holds a control character, or when already set to another name.
pub fn set_operator(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "operator \"{}\": give a name, without control characters",
            name.escape_debug()
        )));
    }
    match OPERATOR.get_or_init(|| name.to_owned()) {
        set if set == name => Ok(()),
        set => Err(StoreError::Invalid(format!(
            "operator \"{}\": this process records `{set}` already",
            name.escape_debug()
        ))),
    }
}

/// The user name of the effective user id in the password database
/// (`getpwuid_r`), for a process started without `USER` (cron, systemd,
/// `env -i`).
fn passwd_name() -> Option<String> {
    let uid = rustix::process::geteuid().as_raw();
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: `passwd` is a plain C struct of integers and pointers, for
        // which all-zero bytes (null pointers) are a valid value; it is only
        // read after getpwuid_r has filled it in.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: rustix has no password database lookup. getpwuid_r is the
        // thread-safe form: it writes only to `entry`, to `found` and to at
        // most `buf.len()` bytes of `buf`, all of which live on this frame
        // (or in `buf`) for the whole call.
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut entry, buf.as_mut_ptr(), buf.len(), &mut found) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || found.is_null() || entry.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success (rc 0, `found` not null) pw_name points to a
        // NUL-terminated string inside `buf`, which is neither changed nor
        // freed while `name` is used.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
        return Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty());
    }
}

pub(crate) fn current_host() -> String {
    // The node name of uname(2) is what gethostname(2) returns.
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        "unknown".to_owned()
    } else {
        name
    }
}

fn process_alive(pid: u32) -> bool {
    // 0 and negative pids name process groups, not a process.
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // Signal 0 only checks that the process exists; nothing is sent.
    matches!(
        rustix::process::test_kill_process(pid),
        Ok(()) | Err(rustix::io::Errno::PERM)
    )
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`, clock
/// ticks since boot), or `None` where `/proc` cannot tell.
pub(crate) fn process_start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    start_time_of_stat(&stat)
}

/// Field 22 of a `/proc/PID/stat` line. Field 2, the command name in
/// parentheses, may hold spaces and parentheses itself, so the fields are
/// counted from the last `)`: field 3 is the first after it.
fn start_time_of_stat(stat: &str) -> Option<String> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let field = rest.split_whitespace().nth(22 - 3)?;
    field
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| field.to_owned())
}

/// This host's boot id, or `None` where the kernel does not tell it.
pub(crate) fn current_boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_counted_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(start_time_of_stat(stat).as_deref(), Some("987654"));
        assert_eq!(start_time_of_stat("4242 (short) S 1"), None);
        assert_eq!(start_time_of_stat("no parenthesis"), None);
        let me = process_start_time(std::process::id());
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(me.is_some());
            assert_eq!(me, process_start_time(std::process::id()), "stable");
        }
    }
}
