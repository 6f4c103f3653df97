//! The coordinator lock: one `cutover run` (or rollback) per state file.
//! The holder (user, host, pid, since) is a row in the state file itself,
//! so it travels with the file and is visible to `cutover status`.

use crate::{Result, Store, rows};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// Who holds (or wants) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub since: DateTime<Utc>,
}

impl LockHolder {
    /// This process, now.
    pub fn current() -> LockHolder {
        LockHolder {
            user: current_user(),
            host: current_host(),
            pid: std::process::id(),
            since: Utc::now(),
        }
    }

    /// A holder on this host whose process is gone: its lock is stale.
    /// (A holder on another host cannot be checked from here.)
    pub fn is_stale(&self) -> bool {
        self.host == current_host() && !process_alive(self.pid)
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
    /// Held by a live process.
    Held(LockHolder),
    /// Held by a dead process on this host; may be taken over with confirmation.
    Stale(LockHolder),
}

impl Store {
    /// Tries to take the coordinator lock for `me`. A stale lock is taken
    /// over only when `take_over_stale` is set; the take-over is logged.
    pub fn acquire_lock(&self, me: &LockHolder, take_over_stale: bool) -> Result<LockState> {
        self.sql(|c| {
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let holder = rows::lock_holder(&tx)?;
            let took_over = match holder {
                Some(h) if h.host == me.host && h.pid == me.pid => None,
                Some(h) if !h.is_stale() => return Ok(LockState::Held(h)),
                Some(h) if !take_over_stale => return Ok(LockState::Stale(h)),
                Some(h) => Some(h),
                None => None,
            };
            tx.execute(
                "INSERT OR REPLACE INTO lock (id, user, host, pid, since) VALUES (1, ?1, ?2, ?3, ?4)",
                params![me.user, me.host, me.pid, me.since],
            )?;
            if let Some(old) = &took_over {
                let run: Option<i64> = tx
                    .query_row("SELECT max(id) FROM runs", [], |r| r.get(0))
                    .optional()?
                    .flatten();
                if let Some(run) = run {
                    tx.execute(
                        "INSERT INTO events (run_id, at, step, kind, message) VALUES (?1, ?2, NULL, 'lock', ?3)",
                        params![run, Utc::now(), format!("stale lock of {old} taken over by {me}")],
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
                "DELETE FROM lock WHERE host = ?1 AND pid = ?2",
                params![me.host, me.pid],
            )
            .map(drop)
        })
    }

    /// The current holder, if any.
    pub fn lock_holder(&self) -> Result<Option<LockHolder>> {
        self.sql(rows::lock_holder)
    }
}

/// The login name of whoever runs this process.
pub fn current_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn current_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
