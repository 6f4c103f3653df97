//! Reads a state file without changing it: a read-only SQLite connection
//! against the schema documented in `docs/engine.md`. A report or the
//! dashboard must never migrate, lock or write a run's state, and may read
//! it while the engine writes (WAL lets readers and one writer coexist).

use chrono::{DateTime, Utc};
use cutover_store::{
    CURRENT_VERSION, Confirmation, EventRecord, EvidenceRecord, LockHolder, Phase, RunRecord,
    RunStatus, StepRecord, StepStatus,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What can go wrong reading a state file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("state file {0} does not exist (no run has started with it)")]
    Missing(PathBuf),
    #[error("state file {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state file {path} has schema version {found}; this cutover reads version {supported}")]
    Version {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("state file {0} holds no run yet")]
    NoRun(PathBuf),
}

/// Everything a state file says about its latest run, read in one
/// transaction so the parts agree with each other.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub run: RunRecord,
    pub steps: Vec<StepRecord>,
    pub events: Vec<EventRecord>,
    pub evidence: Vec<EvidenceRecord>,
    pub confirmations: Vec<Confirmation>,
    /// The coordinator holding the run, if any.
    pub lock: Option<LockHolder>,
}

/// Reads the latest run of the state file at `path`.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, ReadError> {
    if !path.exists() {
        return Err(ReadError::Missing(path.to_owned()));
    }
    let sqlite = |source| ReadError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite)?;
    if version != CURRENT_VERSION {
        return Err(ReadError::Version {
            path: path.to_owned(),
            found: version,
            supported: CURRENT_VERSION,
        });
    }
    let tx = conn.unchecked_transaction().map_err(sqlite)?;
    let run = latest_run(&tx)
        .map_err(sqlite)?
        .ok_or_else(|| ReadError::NoRun(path.to_owned()))?;
    let snapshot = Snapshot {
        steps: steps(&tx, run.id).map_err(sqlite)?,
        events: events(&tx, run.id).map_err(sqlite)?,
        evidence: evidence(&tx, run.id).map_err(sqlite)?,
        confirmations: confirmations(&tx, run.id).map_err(sqlite)?,
        lock: lock(&tx).map_err(sqlite)?,
        run,
    };
    tx.finish().map_err(sqlite)?;
    Ok(snapshot)
}

fn bad_value(col: usize, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("unknown value `{text}`").into(),
    )
}

fn parse_col<T>(r: &Row<'_>, col: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = r.get(col)?;
    parse(&text).ok_or_else(|| bad_value(col, &text))
}

fn parse_json(r: &Row<'_>, col: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    match r.get::<_, Option<String>>(col)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

fn run_status(text: &str) -> Option<RunStatus> {
    [
        RunStatus::Running,
        RunStatus::Stopped,
        RunStatus::Failed,
        RunStatus::Completed,
        RunStatus::RolledBack,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
}

fn step_status(text: &str) -> Option<StepStatus> {
    [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Done,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Undone,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
}

fn phase(text: &str) -> Option<Phase> {
    [Phase::Check, Phase::Act, Phase::Verify, Phase::Undo]
        .into_iter()
        .find(|p| p.as_str() == text)
}

fn latest_run(c: &Connection) -> rusqlite::Result<Option<RunRecord>> {
    c.query_row(
        "SELECT id, runbook_name, runbook_path, content_hash, operator, t0, started_at, finished_at, status
         FROM runs ORDER BY id DESC LIMIT 1",
        [],
        |r| {
            Ok(RunRecord {
                id: r.get(0)?,
                runbook_name: r.get(1)?,
                runbook_path: r.get(2)?,
                content_hash: r.get(3)?,
                operator: r.get(4)?,
                t0: r.get(5)?,
                started_at: r.get(6)?,
                finished_at: r.get(7)?,
                status: parse_col(r, 8, run_status)?,
            })
        },
    )
    .optional()
}

fn steps(c: &Connection, run: i64) -> rusqlite::Result<Vec<StepRecord>> {
    let mut stmt = c.prepare(
        "SELECT s.name, s.position, s.definition, s.status, s.phase, s.attempts, s.planned_start,
                s.started_at, s.first_act_at, s.finished_at,
                (SELECT e.summary FROM evidence e WHERE e.run_id = s.run_id AND e.step = s.name
                 ORDER BY e.id DESC LIMIT 1)
         FROM steps s WHERE s.run_id = ?1 ORDER BY s.position",
    )?;
    stmt.query_map([run], |r| {
        Ok(StepRecord {
            name: r.get(0)?,
            position: r.get(1)?,
            definition: r.get(2)?,
            status: parse_col(r, 3, step_status)?,
            phase: match r.get::<_, Option<String>>(4)? {
                Some(text) => Some(phase(&text).ok_or_else(|| bad_value(4, &text))?),
                None => None,
            },
            attempts: r.get(5)?,
            planned_start: r.get(6)?,
            started_at: r.get(7)?,
            first_act_at: r.get(8)?,
            finished_at: r.get(9)?,
            last_evidence: r.get(10)?,
        })
    })?
    .collect()
}

fn events(c: &Connection, run: i64) -> rusqlite::Result<Vec<EventRecord>> {
    let mut stmt = c.prepare(
        "SELECT id, at, step, kind, message, data FROM events WHERE run_id = ?1 ORDER BY id",
    )?;
    stmt.query_map([run], |r| {
        Ok(EventRecord {
            id: r.get(0)?,
            at: r.get(1)?,
            step: r.get(2)?,
            kind: r.get(3)?,
            message: r.get(4)?,
            data: parse_json(r, 5)?,
        })
    })?
    .collect()
}

fn evidence(c: &Connection, run: i64) -> rusqlite::Result<Vec<EvidenceRecord>> {
    let mut stmt = c.prepare(
        "SELECT id, at, step, phase, attempt, summary, data FROM evidence WHERE run_id = ?1 ORDER BY id",
    )?;
    stmt.query_map([run], |r| {
        Ok(EvidenceRecord {
            id: r.get(0)?,
            at: r.get(1)?,
            step: r.get(2)?,
            phase: parse_col(r, 3, phase)?,
            attempt: r.get(4)?,
            summary: r.get(5)?,
            data: parse_json(r, 6)?.unwrap_or(serde_json::Value::Null),
        })
    })?
    .collect()
}

fn confirmations(c: &Connection, run: i64) -> rusqlite::Result<Vec<Confirmation>> {
    let mut stmt =
        c.prepare("SELECT step, user, note, at FROM confirmations WHERE run_id = ?1 ORDER BY id")?;
    stmt.query_map([run], |r| {
        Ok(Confirmation {
            step: r.get(0)?,
            user: r.get(1)?,
            note: r.get(2)?,
            at: r.get(3)?,
        })
    })?
    .collect()
}

fn lock(c: &Connection) -> rusqlite::Result<Option<LockHolder>> {
    c.query_row(
        "SELECT user, host, pid, since FROM lock WHERE id = 1",
        [],
        |r| {
            Ok(LockHolder {
                user: r.get(0)?,
                host: r.get(1)?,
                pid: r.get(2)?,
                since: r.get::<_, DateTime<Utc>>(3)?,
            })
        },
    )
    .optional()
}
