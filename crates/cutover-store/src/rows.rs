//! The one place rows of the state file become records: the queries the
//! read methods of [`Store`](crate::Store) and of a
//! [`ReadTransaction`](crate::ReadTransaction) share, and the mapping of
//! each table's row.

use crate::{
    Confirmation, EventRecord, EvidenceRecord, LockHolder, Phase, RunRecord, RunStatus, StepRecord,
    StepStatus,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The most recent run in the file.
pub(crate) fn latest_run(c: &Connection) -> rusqlite::Result<Option<RunRecord>> {
    c.query_row(
        "SELECT id, runbook_name, runbook_path, content_hash, operator, t0, started_at, finished_at, status
         FROM runs ORDER BY id DESC LIMIT 1",
        [],
        run_row,
    )
    .optional()
}

/// Steps of a run in runbook order, each with its latest evidence summary.
pub(crate) fn steps(c: &Connection, run: i64) -> rusqlite::Result<Vec<StepRecord>> {
    c.prepare_cached(
        "SELECT s.name, s.position, s.definition, s.status, s.phase, s.attempts, s.planned_start,
                s.started_at, s.first_act_at, s.finished_at,
                (SELECT e.summary FROM evidence e WHERE e.run_id = s.run_id AND e.step = s.name
                 ORDER BY e.id DESC LIMIT 1)
         FROM steps s WHERE s.run_id = ?1 ORDER BY s.position",
    )?
    .query_map([run], step_row)?
    .collect()
}

/// One step of a run, by its key.
pub(crate) fn step(c: &Connection, run: i64, name: &str) -> rusqlite::Result<Option<StepRecord>> {
    c.prepare_cached(
        "SELECT s.name, s.position, s.definition, s.status, s.phase, s.attempts, s.planned_start,
                s.started_at, s.first_act_at, s.finished_at,
                (SELECT e.summary FROM evidence e WHERE e.run_id = s.run_id AND e.step = s.name
                 ORDER BY e.id DESC LIMIT 1)
         FROM steps s WHERE s.run_id = ?1 AND s.name = ?2",
    )?
    .query_row(params![run, name], step_row)
    .optional()
}

/// The event log of a run, oldest first.
pub(crate) fn events(c: &Connection, run: i64) -> rusqlite::Result<Vec<EventRecord>> {
    c.prepare("SELECT id, at, step, kind, message, data FROM events WHERE run_id = ?1 ORDER BY id")?
        .query_map([run], event_row)?
        .collect()
}

/// All evidence of a run, oldest first.
pub(crate) fn evidence(c: &Connection, run: i64) -> rusqlite::Result<Vec<EvidenceRecord>> {
    c.prepare(
        "SELECT id, at, step, phase, attempt, summary, data FROM evidence WHERE run_id = ?1 ORDER BY id",
    )?
    .query_map([run], evidence_row)?
    .collect()
}

/// The latest evidence of one step in one phase.
pub(crate) fn latest_evidence(
    c: &Connection,
    run: i64,
    step: &str,
    phase: Phase,
) -> rusqlite::Result<Option<EvidenceRecord>> {
    c.prepare_cached(
        "SELECT id, at, step, phase, attempt, summary, data FROM evidence
         WHERE run_id = ?1 AND step = ?2 AND phase = ?3 ORDER BY id DESC LIMIT 1",
    )?
    .query_row(params![run, step, phase.as_str()], evidence_row)
    .optional()
}

/// Every confirmation of a run, oldest first.
pub(crate) fn confirmations(c: &Connection, run: i64) -> rusqlite::Result<Vec<Confirmation>> {
    c.prepare(
        "SELECT step, user, note, at, ahead FROM confirmations WHERE run_id = ?1 ORDER BY id",
    )?
    .query_map([run], confirmation_row)?
    .collect()
}

/// The latest confirmation of one step.
pub(crate) fn latest_confirmation(
    c: &Connection,
    run: i64,
    step: &str,
) -> rusqlite::Result<Option<Confirmation>> {
    c.prepare_cached(
        "SELECT step, user, note, at, ahead FROM confirmations WHERE run_id = ?1 AND step = ?2
         ORDER BY id DESC LIMIT 1",
    )?
    .query_row(params![run, step], confirmation_row)
    .optional()
}

/// The holder of the coordinator lock, if any.
pub(crate) fn lock_holder(c: &Connection) -> rusqlite::Result<Option<LockHolder>> {
    c.query_row(
        "SELECT user, host, pid, since, start_time, boot_id FROM lock WHERE id = 1",
        [],
        lock_row,
    )
    .optional()
}

fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        runbook_name: r.get(1)?,
        runbook_path: r.get(2)?,
        content_hash: r.get(3)?,
        operator: r.get(4)?,
        t0: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        status: parse_col(r, 8, RunStatus::parse)?,
    })
}

fn step_row(r: &Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        name: r.get(0)?,
        position: r.get(1)?,
        definition: r.get(2)?,
        status: parse_col(r, 3, StepStatus::parse)?,
        phase: match r.get::<_, Option<String>>(4)? {
            Some(text) => Some(Phase::parse(&text).ok_or_else(|| bad_value(4, &text))?),
            None => None,
        },
        attempts: r.get(5)?,
        planned_start: r.get(6)?,
        started_at: r.get(7)?,
        first_act_at: r.get(8)?,
        finished_at: r.get(9)?,
        last_evidence: r.get(10)?,
    })
}

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        id: r.get(0)?,
        at: r.get(1)?,
        step: r.get(2)?,
        kind: r.get(3)?,
        message: r.get(4)?,
        data: parse_json(r, 5)?,
    })
}

fn evidence_row(r: &Row<'_>) -> rusqlite::Result<EvidenceRecord> {
    Ok(EvidenceRecord {
        id: r.get(0)?,
        at: r.get(1)?,
        step: r.get(2)?,
        phase: parse_col(r, 3, Phase::parse)?,
        attempt: r.get(4)?,
        summary: r.get(5)?,
        data: parse_json(r, 6)?.unwrap_or(serde_json::Value::Null),
    })
}

fn confirmation_row(r: &Row<'_>) -> rusqlite::Result<Confirmation> {
    Ok(Confirmation {
        step: r.get(0)?,
        user: r.get(1)?,
        note: r.get(2)?,
        at: r.get(3)?,
        ahead: r.get(4)?,
    })
}

fn lock_row(r: &Row<'_>) -> rusqlite::Result<LockHolder> {
    Ok(LockHolder {
        user: r.get(0)?,
        host: r.get(1)?,
        pid: r.get(2)?,
        since: r.get(3)?,
        start_time: r.get(4)?,
        boot_id: r.get(5)?,
    })
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

/// The events of a run after event `after`, oldest first (the log is
/// append-only: what a reader saw before is still there, unchanged).
pub(crate) fn events_after(
    c: &Connection,
    run: i64,
    after: i64,
) -> rusqlite::Result<Vec<EventRecord>> {
    c.prepare_cached(
        "SELECT id, at, step, kind, message, data FROM events WHERE run_id = ?1 AND id > ?2 ORDER BY id",
    )?
    .query_map([run, after], event_row)?
    .collect()
}

/// The evidence of a run after row `after`, oldest first (evidence is only
/// ever inserted).
pub(crate) fn evidence_after(
    c: &Connection,
    run: i64,
    after: i64,
) -> rusqlite::Result<Vec<EvidenceRecord>> {
    c.prepare_cached(
        "SELECT id, at, step, phase, attempt, summary, data FROM evidence
         WHERE run_id = ?1 AND id > ?2 ORDER BY id",
    )?
    .query_map([run, after], evidence_row)?
    .collect()
}

/// The confirmations of a run after row `after`, oldest first, each with
/// its row id (confirmations are only ever inserted).
pub(crate) fn confirmations_after(
    c: &Connection,
    run: i64,
    after: i64,
) -> rusqlite::Result<Vec<(i64, Confirmation)>> {
    c.prepare_cached(
        "SELECT step, user, note, at, ahead, id FROM confirmations
         WHERE run_id = ?1 AND id > ?2 ORDER BY id",
    )?
    .query_map([run, after], |r| Ok((r.get(5)?, confirmation_row(r)?)))?
    .collect()
}

/// How many steps a run has.
pub(crate) fn step_count(c: &Connection, run: i64) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT count(*) FROM steps WHERE run_id = ?1")?
        .query_row([run], |r| r.get(0))
}

/// Steps of a run in runbook order, without their latest evidence summary
/// (`last_evidence` is None): for a reader that keeps the evidence and
/// knows each step's latest itself. Much cheaper than [`steps`] on a big run.
pub(crate) fn steps_without_evidence(
    c: &Connection,
    run: i64,
) -> rusqlite::Result<Vec<StepRecord>> {
    c.prepare_cached(
        "SELECT name, position, definition, status, phase, attempts, planned_start,
                started_at, first_act_at, finished_at, NULL
         FROM steps WHERE run_id = ?1 ORDER BY position",
    )?
    .query_map([run], step_row)?
    .collect()
}
