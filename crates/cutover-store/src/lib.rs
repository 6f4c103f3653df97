//! The state store: one SQLite file per run of a runbook.
//!
//! A cutover must never lose track of what has been done, whatever happens
//! to the process running it. Every transition of every step is committed
//! here before the engine moves on: the intent to act before a side effect
//! starts, the outcome after it. The schema (documented in `docs/engine.md`)
//! has four tables the report and the dashboard read — `runs`, `steps`,
//! `events` (append-only) and `evidence` — plus `confirmations` of manual
//! steps and the coordinator `lock`. Rows become records in one place
//! (`rows.rs`), for the engine's [`Store`] and for the report's and the
//! dashboard's [`ReadOnlyStore`] ([`Store::open_read_only`]), which reads a
//! run in one transaction and never creates, migrates, locks or writes.
//!
//! Durability: WAL with `synchronous=FULL`. A commit is in the WAL file and
//! fsynced before `commit` returns, so it survives `kill -9` (which only
//! needs the data handed to the OS) and also a power loss or kernel crash
//! (which needs the fsync) — the lost-laptop-lid case. The price is one
//! fsync per transition, well inside the engine's per-step budget.

mod gate;
mod lock;
mod open;
mod plan;
mod read_only;
mod rows;
mod schema;

pub use gate::{GateConfirmed, GateRefusal};
pub use lock::{GoneReason, Liveness, LockHolder, LockState, current_user, set_operator};
pub use plan::{PlannedSpan, ReviewedPlanRef, RunPlan};
pub use read_only::{ReadOnlyStore, ReadTransaction};
pub use schema::CURRENT_VERSION;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What can go wrong with a state file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state file {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state file {0} does not exist (no run has started with it)")]
    Missing(PathBuf),
    #[error(
        "state file {path} has schema version {found}, newer than this cutover understands ({supported})"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A read-only open found another schema version than this build's: it
    /// cannot migrate the file, and will not misread it.
    #[error("state file {path} has schema version {found}; this cutover reads version {supported}")]
    Version {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot create the folder for state file {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is there but its pages do not hold together (`PRAGMA
    /// quick_check` found problems, or SQLite reported corruption while
    /// opening it). Nothing is written to it.
    #[error(
        "state file {path} is damaged ({}); do not run against it: restore it from a backup, or keep it aside and read what it still holds with `cutover export` (which only reads)",
        problems_text(.problems)
    )]
    Damaged {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// The file at the state path is not a cutover state file: empty, not
    /// SQLite, or an SQLite database without cutover's schema. It is never
    /// taken for a fresh run.
    #[error(
        "{path} is not a cutover state file ({reason}); refusing to use it: move it away or choose another state file"
    )]
    NotAStateFile { path: PathBuf, reason: String },
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Creating a new state file (under a temporary name, then moved into
    /// place) failed.
    #[error("cannot create state file {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// [`Store::confirm_gate`] refused: the message says why.
    #[error("step `{step}` was not confirmed: {refusal}")]
    GateRefused {
        step: String,
        refusal: Box<GateRefusal>,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The problems of a damaged file, as one line: the first three and how
/// many more.
fn problems_text(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(3)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > 3 {
        text.push_str(&format!("; and {} more", problems.len() - 3));
    }
    if text.is_empty() {
        text.push_str("integrity check failed");
    }
    text
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The status of a step in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// A phase has started and not finished (see [`StepRecord::phase`]).
    Running,
    /// Verified (or found already satisfied).
    Done,
    /// The last attempt failed; its evidence is kept.
    Failed,
    /// Skipped on purpose: a deviation from the runbook.
    Skipped,
    /// Rolled back by its `undo`.
    Undone,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Undone => "undone",
        }
    }
    fn parse(text: &str) -> Option<StepStatus> {
        Some(match text {
            "pending" => StepStatus::Pending,
            "running" => StepStatus::Running,
            "done" => StepStatus::Done,
            "failed" => StepStatus::Failed,
            "skipped" => StepStatus::Skipped,
            "undone" => StepStatus::Undone,
            _ => return None,
        })
    }
}

/// The phase of a step: what the engine is (or was) doing with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Check,
    Act,
    Verify,
    Undo,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Check => "check",
            Phase::Act => "act",
            Phase::Verify => "verify",
            Phase::Undo => "undo",
        }
    }
    fn parse(text: &str) -> Option<Phase> {
        Some(match text {
            "check" => Phase::Check,
            "act" => Phase::Act,
            "verify" => Phase::Verify,
            "undo" => Phase::Undo,
            _ => return None,
        })
    }
}

/// Status of a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Stopped on request or by a crash; `cutover run` resumes it.
    Stopped,
    Failed,
    Completed,
    RolledBack,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
            RunStatus::Completed => "completed",
            RunStatus::RolledBack => "rolled_back",
        }
    }
    fn parse(text: &str) -> Option<RunStatus> {
        Some(match text {
            "running" => RunStatus::Running,
            "stopped" => RunStatus::Stopped,
            "failed" => RunStatus::Failed,
            "completed" => RunStatus::Completed,
            "rolled_back" => RunStatus::RolledBack,
            _ => return None,
        })
    }
}

/// One row of `runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub runbook_name: String,
    pub runbook_path: String,
    /// blake3 of the runbook's source text(s) when the run started (or when
    /// a changed runbook was accepted).
    pub content_hash: String,
    pub operator: String,
    /// T0 of this run: the window start, or the `--t0` given at its start.
    pub t0: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
}

/// One row of `steps`.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub name: String,
    /// Source order in the runbook.
    pub position: i64,
    /// The step's canonical text, compared on resume to find changed steps.
    pub definition: String,
    pub status: StepStatus,
    /// The phase in progress (status running) or last entered.
    pub phase: Option<Phase>,
    /// Act attempts made so far.
    pub attempts: i64,
    pub planned_start: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    /// When the first act of the current attempt series started (waits
    /// count their duration from here, so a resume does not restart them).
    pub first_act_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Summary of the latest evidence.
    pub last_evidence: Option<String>,
}

/// One row of the append-only `events` log.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub step: Option<String>,
    /// e.g. `phase`, `done`, `failed`, `skipped`, `deviation`, `output`, `drift`, `lock`.
    pub kind: String,
    pub message: String,
    pub data: Option<serde_json::Value>,
}

/// One row of `evidence`: what a check, act or verification observed.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub step: String,
    pub phase: Phase,
    pub attempt: i64,
    pub summary: String,
    pub data: serde_json::Value,
}

/// A manual step confirmed by a person.
#[derive(Debug, Clone, Serialize)]
pub struct Confirmation {
    pub step: String,
    pub user: String,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
    /// Given ahead: recorded before the gate waited for it (see
    /// [`Store::confirm_gate`]), not in answer to a waiting gate.
    pub ahead: bool,
}

/// A step as registered when a run starts.
#[derive(Debug, Clone)]
pub struct NewStep {
    pub name: String,
    pub definition: String,
    pub planned_start: Option<DateTime<Utc>>,
}

/// A run as registered when it starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub runbook_name: String,
    pub runbook_path: String,
    pub content_hash: String,
    pub operator: String,
    pub t0: Option<DateTime<Utc>>,
    pub steps: Vec<NewStep>,
}

/// One committed transition of a step: the new status and phase, an event,
/// and optionally evidence — written in one transaction.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub step: &'a str,
    pub status: StepStatus,
    pub phase: Option<Phase>,
    /// Counts one more act attempt (set when entering the act phase).
    pub new_attempt: bool,
    pub event_kind: &'a str,
    pub message: String,
    pub evidence: Option<(Phase, String, serde_json::Value)>,
}

/// An open state file.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

impl Store {
    /// Opens (creating if needed, with its folder) a state file, migrating
    /// its schema forward.
    ///
    /// A new file is built under a temporary name in the same folder,
    /// migrated, fsynced and then moved into place without replacing
    /// anything, so a crash never leaves an empty or half-made file at
    /// `path`; when another process creates it meanwhile, its file is
    /// opened. An existing file is checked first (see
    /// [`Store::open_existing`]).
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: path.to_owned(),
                source,
            })?;
        }
        open::open_or_create(path)
    }

    /// Opens a state file that must already exist (status, confirm,
    /// rollback). The file is refused when it is not a cutover state file
    /// ([`StoreError::NotAStateFile`]: empty, not SQLite, or SQLite without
    /// cutover's schema) or when a bounded `PRAGMA quick_check` finds it
    /// damaged ([`StoreError::Damaged`]); only then is it migrated.
    pub fn open_existing(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        open::open_checked(path)
    }

    /// Opens an existing state file read-only, for a report or the
    /// dashboard: nothing is created, migrated, locked or written, and the
    /// engine may go on writing meanwhile (WAL lets readers and one writer
    /// coexist). The file must have this build's schema version. Read it
    /// with [`ReadOnlyStore::read`], in one transaction.
    pub fn open_read_only(path: &Path) -> Result<ReadOnlyStore> {
        ReadOnlyStore::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        f(&self.conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// `PRAGMA integrity_check`: `ok` or the problems found.
    pub fn integrity_check(&self) -> Result<String> {
        self.sql(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
    }

    /// Registers a new run and its steps (all pending); returns its id.
    pub fn create_run(&self, run: &NewRun) -> Result<i64> {
        self.create_planned_run(run, None)
    }

    /// [`Store::create_run`] with the plan the run is judged against,
    /// written in the same transaction.
    pub fn create_planned_run(&self, run: &NewRun, planned: Option<&RunPlan>) -> Result<i64> {
        self.sql(|c| {
            let tx = write_transaction(c)?;
            tx.execute(
                "INSERT INTO runs (runbook_name, runbook_path, content_hash, operator, t0, started_at, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running')",
                params![run.runbook_name, run.runbook_path, run.content_hash, run.operator, run.t0, now()],
            )?;
            let id = tx.last_insert_rowid();
            for (position, step) in run.steps.iter().enumerate() {
                insert_step(&tx, id, position, step)?;
            }
            if let Some(planned) = planned {
                plan::insert(&tx, id, planned)?;
            }
            tx.execute(
                "INSERT INTO events (run_id, at, step, kind, message, data) VALUES (?1, ?2, NULL, 'run', ?3, ?4)",
                params![id, now(), format!("run started by {}", run.operator), coordinator_data()],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    /// The most recent run in this file.
    pub fn latest_run(&self) -> Result<Option<RunRecord>> {
        self.sql(rows::latest_run)
    }

    /// The plan a run is judged against, when it recorded one.
    pub fn run_plan(&self, run: i64) -> Result<Option<RunPlan>> {
        self.sql(|c| plan::read(c, run))
    }

    /// Sets a run's status (and its finish time when it is final).
    pub fn set_run_status(&self, run: i64, status: RunStatus) -> Result<()> {
        let finished = matches!(status, RunStatus::Completed | RunStatus::RolledBack).then(now);
        self.sql(|c| {
            let tx = write_transaction(c)?;
            tx.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
                params![run, status.as_str(), finished],
            )?;
            tx.execute(
                "INSERT INTO events (run_id, at, step, kind, message, data) VALUES (?1, ?2, NULL, 'run', ?3, ?4)",
                params![run, now(), format!("run {}", status.as_str()), coordinator_data()],
            )?;
            tx.commit()
        })
    }

    /// Accepts a changed runbook: new hash, changed steps reset to pending
    /// (their old results were for another definition), added steps
    /// inserted, removed steps deleted — and the change logged.
    pub fn accept_changed_runbook(
        &self,
        run: i64,
        content_hash: &str,
        steps: &[NewStep],
        message: &str,
    ) -> Result<()> {
        self.sql(|c| {
            let tx = write_transaction(c)?;
            tx.execute(
                "UPDATE runs SET content_hash = ?2 WHERE id = ?1",
                params![run, content_hash],
            )?;
            let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
            let existing: Vec<String> = {
                let mut stmt = tx.prepare("SELECT name FROM steps WHERE run_id = ?1")?;
                stmt.query_map([run], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            for old in &existing {
                if !names.contains(&old.as_str()) {
                    tx.execute(
                        "DELETE FROM steps WHERE run_id = ?1 AND name = ?2",
                        params![run, old],
                    )?;
                }
            }
            for (position, step) in steps.iter().enumerate() {
                let updated = tx.execute(
                    "UPDATE steps SET position = ?3, planned_start = ?5,
                       status = CASE WHEN definition = ?4 THEN status ELSE 'pending' END,
                       phase = CASE WHEN definition = ?4 THEN phase ELSE NULL END,
                       first_act_at = CASE WHEN definition = ?4 THEN first_act_at ELSE NULL END,
                       definition = ?4
                     WHERE run_id = ?1 AND name = ?2",
                    params![run, step.name, position as i64, step.definition, step.planned_start],
                )?;
                if updated == 0 {
                    insert_step(&tx, run, position, step)?;
                }
            }
            tx.execute(
                "INSERT INTO events (run_id, at, step, kind, message) VALUES (?1, ?2, NULL, 'changed', ?3)",
                params![run, now(), message],
            )?;
            tx.commit()
        })
    }

    /// Steps of a run in runbook order.
    pub fn steps(&self, run: i64) -> Result<Vec<StepRecord>> {
        self.sql(|c| rows::steps(c, run))
    }

    /// One step of a run, read by its key (what a running step reads
    /// about itself; cheap however many steps the run has).
    pub fn step(&self, run: i64, name: &str) -> Result<Option<StepRecord>> {
        self.sql(|c| rows::step(c, run, name))
    }

    /// Commits one transition of a step (status, phase, event, evidence) in
    /// one transaction.
    pub fn transition(&self, run: i64, t: &Transition<'_>) -> Result<()> {
        let at = now();
        self.sql(|c| {
            let tx = write_transaction(c)?;
            let changed = tx
                .prepare_cached(
                    "UPDATE steps SET status = ?3, phase = ?4,
                       attempts = attempts + ?5,
                       started_at = CASE WHEN ?3 IN ('running', 'done') THEN coalesce(started_at, ?6) ELSE started_at END,
                       first_act_at = CASE WHEN ?4 = 'act' AND ?3 = 'running' THEN coalesce(first_act_at, ?6)
                                           WHEN ?3 = 'pending' THEN NULL ELSE first_act_at END,
                       finished_at = CASE WHEN ?3 IN ('done', 'failed', 'skipped', 'undone') THEN ?6
                                          WHEN ?3 = 'pending' THEN NULL ELSE finished_at END
                     WHERE run_id = ?1 AND name = ?2",
                )?
                .execute(params![
                    run,
                    t.step,
                    t.status.as_str(),
                    t.phase.map(Phase::as_str),
                    i64::from(t.new_attempt),
                    at
                ])?;
            if changed == 0 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
            tx.prepare_cached(
                "INSERT INTO events (run_id, at, step, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![run, at, t.step, t.event_kind, t.message])?;
            if let Some((phase, summary, data)) = &t.evidence {
                tx.prepare_cached(
                    "INSERT INTO evidence (run_id, at, step, phase, attempt, summary, data)
                     VALUES (?1, ?2, ?3, ?4, (SELECT attempts FROM steps WHERE run_id = ?1 AND name = ?3), ?5, ?6)",
                )?
                .execute(params![run, at, t.step, phase.as_str(), summary, data.to_string()])?;
            }
            tx.commit()
        })
    }

    /// Appends an event that changes no step (output, messages, deviations).
    pub fn append_event(
        &self,
        run: i64,
        step: Option<&str>,
        kind: &str,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<()> {
        self.sql(|c| {
            c.prepare_cached(
                "INSERT INTO events (run_id, at, step, kind, message, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![run, now(), step, kind, message, data.map(|d| d.to_string())])
            .map(drop)
        })
    }

    /// The event log of a run, oldest first.
    pub fn events(&self, run: i64) -> Result<Vec<EventRecord>> {
        self.sql(|c| rows::events(c, run))
    }

    /// All evidence of a run, oldest first.
    pub fn evidence(&self, run: i64) -> Result<Vec<EvidenceRecord>> {
        self.sql(|c| rows::evidence(c, run))
    }

    /// The latest evidence of one step in one phase (e.g. what `dns.ttl`'s
    /// verification observed, read by a later `dns.switch`).
    pub fn latest_evidence(
        &self,
        run: i64,
        step: &str,
        phase: Phase,
    ) -> Result<Option<EvidenceRecord>> {
        self.sql(|c| rows::latest_evidence(c, run, step, phase))
    }

    /// Records that a person confirmed a manual step, in answer to the
    /// gate waiting for it: the engine's own prompt, shown only while the
    /// gate waits (recorded with `ahead` = false). A confirmation from
    /// another terminal goes through [`Store::confirm_gate`], which checks
    /// that the gate is waiting.
    pub fn confirm(&self, run: i64, step: &str, user: &str, note: Option<&str>) -> Result<()> {
        self.sql(|c| {
            let tx = write_transaction(c)?;
            let known: i64 = tx.query_row(
                "SELECT count(*) FROM steps WHERE run_id = ?1 AND name = ?2",
                params![run, step],
                |r| r.get(0),
            )?;
            if known == 0 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
            let at = now();
            tx.execute(
                "INSERT INTO confirmations (run_id, step, user, note, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run, step, user, note, at],
            )?;
            let message = match note {
                Some(note) => format!("confirmed by {user}: {note}"),
                None => format!("confirmed by {user}"),
            };
            tx.execute(
                "INSERT INTO events (run_id, at, step, kind, message) VALUES (?1, ?2, ?3, 'confirmed', ?4)",
                params![run, at, step, message],
            )?;
            tx.commit()
        })
        .map_err(|e| match e {
            StoreError::Sqlite {
                source: rusqlite::Error::QueryReturnedNoRows,
                ..
            } => StoreError::Invalid(format!("the run has no step named `{step}`")),
            other => other,
        })
    }

    /// The latest confirmation of a manual step, if any.
    pub fn confirmation(&self, run: i64, step: &str) -> Result<Option<Confirmation>> {
        self.sql(|c| rows::latest_confirmation(c, run, step))
    }
}

/// The data of a `run` event: which process wrote it, so a reader of the
/// log tells a coordinator's own start from the next one's resume (a crash
/// in between).
fn coordinator_data() -> String {
    serde_json::json!({ "pid": std::process::id() }).to_string()
}

/// A write transaction that takes the write lock at its start, so that a
/// concurrent writer (`cutover confirm` beside a running `cutover run`)
/// waits for the busy timeout instead of failing on a stale read snapshot.
fn write_transaction(c: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
}

fn insert_step(tx: &Connection, run: i64, position: usize, step: &NewStep) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO steps (run_id, name, position, definition, status, attempts, planned_start)
         VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5)",
        params![
            run,
            step.name,
            position as i64,
            step.definition,
            step.planned_start
        ],
    )
    .map(drop)
}

#[cfg(test)]
mod tests;
