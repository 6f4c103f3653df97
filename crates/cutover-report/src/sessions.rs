//! Crashes and resumes, read back from the event log. The engine logs
//! `run` events when a run starts (`run started by …`), whenever a
//! coordinator starts or resumes it (`run running`) and when it ends
//! (`run stopped|failed|completed|rolled_back`). A `run running` that
//! follows neither a fresh start nor an end means the previous coordinator
//! vanished without a word: a crash. The steps whose last transition was
//! a `phase` event were caught mid-flight.

use crate::moment::Moment;
use crate::read::Snapshot;
use chrono::{DateTime, Utc};
use cutover_store::{Phase, RunStatus};
use serde::Serialize;
use std::collections::BTreeMap;

/// One coordinator's stretch of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// 1 for the first start, 2 for the first resume, …
    pub number: usize,
    pub started_at: Moment,
    /// The last thing this session recorded.
    pub last_record_at: Moment,
    pub end: SessionEnd,
    /// A stale lock of a dead coordinator taken over when this session began.
    pub took_over: Option<String>,
    /// Steps left in flight when this session ended (a crash or a stop).
    pub caught_mid_flight: Vec<CaughtStep>,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    Completed,
    Stopped,
    Failed,
    RolledBack,
    /// Ended without recording an end, and a later session resumed.
    Crashed,
    /// No end recorded and no live coordinator holds the run: it crashed
    /// and has not been resumed yet.
    CrashedNotResumed,
    /// Still running (a live coordinator holds the run).
    Running,
}

impl SessionEnd {
    pub fn is_crash(self) -> bool {
        matches!(self, SessionEnd::Crashed | SessionEnd::CrashedNotResumed)
    }

    pub fn describe(self) -> &'static str {
        match self {
            SessionEnd::Completed => "completion",
            SessionEnd::Stopped => "the stop",
            SessionEnd::Failed => "the failure",
            SessionEnd::RolledBack => "the rollback",
            SessionEnd::Crashed | SessionEnd::CrashedNotResumed => "the crash",
            SessionEnd::Running => "now",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SessionEnd::Completed => "completed",
            SessionEnd::Stopped => "stopped",
            SessionEnd::Failed => "failed",
            SessionEnd::RolledBack => "rolled back",
            SessionEnd::Crashed => "CRASHED (no end recorded; resumed later)",
            SessionEnd::CrashedNotResumed => "CRASHED (no end recorded; not resumed yet)",
            SessionEnd::Running => "running",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaughtStep {
    pub step: String,
    /// The phase it was in, when the log says.
    pub phase: Option<Phase>,
}

struct Open {
    started_at: DateTime<Utc>,
    last: DateTime<Utc>,
    /// Nothing but run and lock events since the start.
    fresh: bool,
    /// Opened by `run started`, whose own `run running` is still to come.
    awaiting_running: bool,
    /// The process that opened it, when the log says (`data.pid`).
    pid: Option<u64>,
    took_over: Option<String>,
}

pub(crate) fn sessions(snapshot: &Snapshot, at: &dyn Fn(DateTime<Utc>) -> Moment) -> Vec<Session> {
    let mut done = Vec::new();
    let mut open: Option<Open> = None;
    let mut pending_take_over: Option<String> = None;
    // The last transition of each step: is it in flight, and in which phase?
    let mut in_flight: BTreeMap<&str, Option<Phase>> = BTreeMap::new();
    let close = |open: Open,
                 end: SessionEnd,
                 at_time: DateTime<Utc>,
                 in_flight: &BTreeMap<&str, Option<Phase>>,
                 done: &mut Vec<Session>| {
        done.push(Session {
            number: done.len() + 1,
            started_at: at(open.started_at),
            last_record_at: at(at_time),
            end,
            took_over: open.took_over,
            caught_mid_flight: in_flight
                .iter()
                .map(|(step, phase)| CaughtStep {
                    step: (*step).to_owned(),
                    phase: *phase,
                })
                .collect(),
        });
    };
    for event in &snapshot.events {
        match (event.kind.as_str(), event.message.as_str()) {
            ("run", message) if message.starts_with("run started") || message == "run running" => {
                let pid = event.data.as_ref().and_then(|d| d["pid"].as_u64());
                if let Some(current) = open.take() {
                    // A new run logs `run started`, then its own `run
                    // running`: one session. Any other `run running` is a
                    // new coordinator, and the open session crashed.
                    let same_process = match (current.pid, pid) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    };
                    if current.fresh
                        && current.awaiting_running
                        && message == "run running"
                        && same_process
                    {
                        open = Some(Open {
                            took_over: current.took_over.or(pending_take_over.take()),
                            awaiting_running: false,
                            ..current
                        });
                        continue;
                    }
                    let last = current.last;
                    close(current, SessionEnd::Crashed, last, &in_flight, &mut done);
                }
                open = Some(Open {
                    started_at: event.at,
                    last: event.at,
                    fresh: true,
                    awaiting_running: message.starts_with("run started"),
                    pid,
                    took_over: pending_take_over.take(),
                });
            }
            ("run", message) => {
                let end = match message.strip_prefix("run ") {
                    Some("completed") => SessionEnd::Completed,
                    Some("stopped") => SessionEnd::Stopped,
                    Some("failed") => SessionEnd::Failed,
                    Some("rolled_back") => SessionEnd::RolledBack,
                    _ => continue,
                };
                if let Some(current) = open.take() {
                    close(current, end, event.at, &in_flight, &mut done);
                }
            }
            ("lock", message) => pending_take_over = Some(message.to_owned()),
            (kind, message) => {
                if let Some(current) = open.as_mut() {
                    current.last = event.at;
                    current.fresh = false;
                }
                let Some(step) = event.step.as_deref() else {
                    continue;
                };
                match kind {
                    "phase" => {
                        in_flight.insert(step, phase_of(message));
                    }
                    "done" | "failed" | "undone" | "blocked" => {
                        in_flight.remove(step);
                    }
                    "deviation" if message.contains("skipped") => {
                        in_flight.remove(step);
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(current) = open {
        let alive = snapshot
            .lock
            .as_ref()
            .is_some_and(|holder| !holder.is_stale());
        let end = if snapshot.run.status == RunStatus::Running && alive {
            SessionEnd::Running
        } else {
            SessionEnd::CrashedNotResumed
        };
        let last = current.last;
        close(current, end, last, &in_flight, &mut done);
        if end == SessionEnd::Running
            && let Some(session) = done.last_mut()
        {
            session.caught_mid_flight.clear();
        }
    }
    done
}

/// The phase a `phase` event's message announces (`acting (attempt 1 of 2)`,
/// `acted: …`, `undoing: …`).
fn phase_of(message: &str) -> Option<Phase> {
    if message.starts_with("acting") {
        Some(Phase::Act)
    } else if message.starts_with("acted") {
        Some(Phase::Verify)
    } else if message.starts_with("undoing") {
        Some(Phase::Undo)
    } else {
        None
    }
}
