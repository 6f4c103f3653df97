//! What the live dashboard shows of a run: [`LiveState`], the answer to
//! `/api/run`, and [`Source`], which keeps that answer until the state file
//! or the runbook changes. The state file is only ever read, so the
//! dashboard never blocks or changes the run the engine is writing. The web
//! server itself is the `cutover-dashboard` crate, so that exports do not
//! compile a web stack.

use crate::gantt::LiveChart;
use crate::model::{ByStep, PlannedRunbook, Report, current_phase};
use crate::read::{LiveSnapshot, ReadError, Snapshot};
use chrono::{DateTime, Utc};
use cutover_lang::Runbook;
use cutover_store::{LockHolder, StepStatus};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// How many of the latest events `/api/run` sends (what the page shows);
/// `cutover export` has them all.
pub const LATEST_EVENTS: usize = 30;

/// What the dashboard shows: a state file, and the runbook when known.
///
/// It keeps its last answer and gives it again (with the clock-dependent
/// parts made anew: `now`, countdowns, the chart's "now" line and running
/// bars) until the state file changes (SQLite's `PRAGMA data_version` on a
/// kept read-only connection, and the file's identity), the runbook's files
/// change, or the coordinator holding the run dies. The parsed runbook and
/// its plan are kept until the runbook's files change.
#[derive(Debug)]
pub struct Source {
    pub state: PathBuf,
    origin: Origin,
    cache: Mutex<Cache>,
}

#[derive(Debug)]
enum Origin {
    /// Given as a model (no file): used as it is.
    Given(Arc<PlannedRunbook>),
    /// The runbook file given on the command line: read again when it, or
    /// a file it includes, changes.
    File(PathBuf),
    /// Found beside the state file from the path the run recorded (see
    /// [`crate::find_runbook`]), looked for again when a candidate changes.
    Found,
}

#[derive(Debug, Default)]
struct Cache {
    watch: Option<Watch>,
    runbook: Option<LoadedRunbook>,
    answer: Option<Answer>,
    /// The snapshot last read, of the file it was read from: read again
    /// incrementally while the file is the same.
    live: Option<(FileId, LiveSnapshot)>,
}

impl Source {
    /// `runbook`, when given, is used as it is for as long as the dashboard
    /// serves; without it the runbook is found beside the state file (see
    /// [`crate::find_runbook`]) and read again when its files change.
    pub fn new(state: PathBuf, runbook: Option<Runbook>) -> Source {
        let origin = match runbook {
            Some(r) => Origin::Given(Arc::new(PlannedRunbook::new(r))),
            None => Origin::Found,
        };
        Source {
            state,
            origin,
            cache: Mutex::default(),
        }
    }

    /// The runbook at `file`, read now and again whenever it or a file it
    /// includes changes; while it has errors, the last version read
    /// without errors is shown.
    pub fn with_runbook_file(state: PathBuf, file: PathBuf) -> Source {
        let loaded = load_runbook_file(&file, Vec::new(), None);
        Source {
            state,
            origin: Origin::File(file),
            cache: Mutex::new(Cache {
                runbook: Some(loaded),
                ..Cache::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The body of `/api/run` at `now`: the JSON of [`LiveState`].
    pub fn api_run_json(&self, now: DateTime<Utc>) -> Result<Vec<u8>, ReadError> {
        let mut cache = self.lock();
        let cache = &mut *cache;
        // Asked before the state is read: a change committed meanwhile is
        // read again on the next request.
        let version = Watch::version(&mut cache.watch, &self.state);
        let runbook_fresh = match &self.origin {
            Origin::Given(_) => true,
            Origin::File(_) | Origin::Found => {
                cache.runbook.as_ref().is_some_and(LoadedRunbook::is_fresh)
            }
        };
        if let (Some(answer), Some(version)) = (&cache.answer, version)
            && answer.version == Some(version)
            && runbook_fresh
            && answer.stale == answer.lock.as_ref().map(LockHolder::is_stale)
        {
            return Ok(answer.body(now));
        }
        cache.answer = None;
        // The kept snapshot is read on only while the path names the file
        // it was read from (and its data version can be told).
        let file = version.map(|v| v.file);
        let live = match (cache.live.take(), file) {
            (Some((kept, live)), Some(file)) if kept == file => live,
            _ => LiveSnapshot::new(self.state.clone()),
        };
        let (_, live) = cache
            .live
            .insert((file.unwrap_or(FileId { dev: 0, ino: 0 }), live));
        let snapshot = match live.refresh() {
            Ok(snapshot) => snapshot,
            Err(err) => {
                cache.live = None;
                return Err(err);
            }
        };
        let planned = self.runbook(&mut cache.runbook, snapshot);
        let answer = Answer::new(snapshot, planned.as_deref(), version);
        if file.is_none() {
            cache.live = None;
        }
        let body = answer.body(now);
        if answer.version.is_some() {
            cache.answer = Some(answer);
        }
        Ok(body)
    }

    /// The runbook for `snapshot`'s run: as given, or read again when its
    /// files changed since they were last read.
    fn runbook(
        &self,
        kept: &mut Option<LoadedRunbook>,
        snapshot: &Snapshot,
    ) -> Option<Arc<PlannedRunbook>> {
        let current = kept.as_ref().is_some_and(LoadedRunbook::is_fresh);
        match &self.origin {
            Origin::Given(planned) => return Some(Arc::clone(planned)),
            Origin::File(file) => {
                if !current {
                    let previous = kept.take().and_then(|r| r.planned);
                    let mut loaded = load_runbook_file(file, Vec::new(), None);
                    loaded.planned = loaded.planned.or(previous);
                    *kept = Some(loaded);
                }
            }
            Origin::Found => {
                let recorded = &snapshot.run.runbook_path;
                let same_run = kept
                    .as_ref()
                    .is_some_and(|r| r.recorded.as_deref() == Some(recorded.as_str()));
                if !(current && same_run) {
                    let previous = kept.take().filter(|_| same_run).and_then(|r| r.planned);
                    let mut found = find_runbook_file(&self.state, snapshot);
                    found.planned = found.planned.or(previous);
                    *kept = Some(found);
                }
            }
        }
        kept.as_ref().and_then(|r| r.planned.clone())
    }
}

/// The JSON of `/api/run`.
#[derive(Debug, Serialize)]
pub struct LiveState {
    /// The server's clock, for elapsed times and countdowns.
    pub now: DateTime<Utc>,
    /// The report of the run, with only the latest [`LATEST_EVENTS`]
    /// entries of its event log.
    pub report: Report,
    /// The planned-vs-actual chart with a "now" line.
    pub gantt_svg: String,
    /// Who holds the run (`user@host (pid N) since …`), if anyone.
    pub coordinator: Option<String>,
    /// Countdowns running steps started and that have not run out.
    pub countdowns: Vec<Countdown>,
}

/// A countdown a step logged (a `wait`, an old TTL expiring).
#[derive(Debug, Clone, Serialize)]
pub struct Countdown {
    pub step: String,
    /// What is counted down, as the step kind says it.
    pub label: String,
    pub until: DateTime<Utc>,
    pub left_s: i64,
}

/// The state at `now` (what `/api/run` answers).
pub fn live_state(snapshot: &Snapshot, runbook: Option<&Runbook>, now: DateTime<Utc>) -> LiveState {
    let planned = runbook.map(|r| PlannedRunbook::new(r.clone()));
    let report = Report::build_latest_events(snapshot, planned.as_ref(), LATEST_EVENTS);
    LiveState {
        now,
        gantt_svg: crate::gantt::svg(&report, Some(now)),
        coordinator: snapshot.lock.as_ref().map(ToString::to_string),
        countdowns: running_countdowns(&countdowns(snapshot), now),
        report,
    }
}

/// The latest `countdown` event of each running step's current phase
/// (whether or not it has run out).
fn countdowns(snapshot: &Snapshot) -> Vec<Countdown> {
    let by_step = ByStep::new(snapshot);
    snapshot
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Running)
        .filter_map(|s| {
            let events = current_phase(by_step.events(&s.name));
            let data = events
                .iter()
                .rev()
                .find(|e| e.kind == "countdown")?
                .data
                .as_ref()?;
            let until: DateTime<Utc> = serde_json::from_value(data.get("until")?.clone()).ok()?;
            Some(Countdown {
                step: s.name.clone(),
                label: data
                    .get("label")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                until,
                left_s: 0,
            })
        })
        .collect()
}

/// Those of `countdowns` with time left at `now`.
fn running_countdowns(countdowns: &[Countdown], now: DateTime<Utc>) -> Vec<Countdown> {
    countdowns
        .iter()
        .filter(|c| c.until > now)
        .map(|c| Countdown {
            left_s: (c.until - now).num_seconds(),
            ..c.clone()
        })
        .collect()
}

/// What an answer is of: the state file (its identity and SQLite's data
/// version on the kept connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StateVersion {
    file: FileId,
    data_version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Unknown elsewhere: every request reads the state file again.
    #[cfg(not(unix))]
    fn of(_path: &Path) -> Option<FileId> {
        None
    }
}

/// A read-only connection kept open on the state file, only to ask SQLite
/// whether anyone committed since the last request (`PRAGMA
/// data_version`). It reads no rows: the snapshot is read through the
/// store.
struct Watch {
    file: FileId,
    conn: rusqlite::Connection,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("file", &self.file).finish()
    }
}

impl Watch {
    /// The version of the state file now; None when it cannot be told (no
    /// file, not a database): then nothing is kept.
    fn version(watch: &mut Option<Watch>, path: &Path) -> Option<StateVersion> {
        let Some(file) = FileId::of(path) else {
            *watch = None;
            return None;
        };
        if watch.as_ref().is_none_or(|w| w.file != file) {
            // A new file at the path (the run was created, or the file
            // replaced): a new connection, and the answer is read anew.
            *watch = None;
            let conn = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ok()?;
            conn.busy_timeout(std::time::Duration::from_secs(5)).ok()?;
            *watch = Some(Watch { file, conn });
        }
        let w = watch.as_ref()?;
        match w
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
        {
            Ok(data_version) => Some(StateVersion { file, data_version }),
            Err(_) => {
                *watch = None;
                None
            }
        }
    }
}

/// What a file was when it was read: a change of any part is a change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    id: Option<FileId>,
}

impl FileStamp {
    /// Never the stamp of a file: what was read is to be read again.
    const CHANGED: FileStamp = FileStamp {
        len: u64::MAX,
        modified: None,
        id: None,
    };

    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            id: FileId::of(path),
        })
    }
}

/// A runbook as last read, and the files it was read from (or looked for).
#[derive(Debug)]
struct LoadedRunbook {
    planned: Option<Arc<PlannedRunbook>>,
    stamps: Vec<(PathBuf, Option<FileStamp>)>,
    /// The runbook path the run recorded, when it was looked for from it.
    recorded: Option<String>,
}

impl LoadedRunbook {
    /// Whether none of its files changed since (an empty list never is).
    fn is_fresh(&self) -> bool {
        !self.stamps.is_empty()
            && self
                .stamps
                .iter()
                .all(|(path, stamp)| FileStamp::of(path) == *stamp)
    }
}

/// Reads the runbook at `path`; `stamps` holds what was looked at before.
/// The stamps are taken before reading, so a change made while it is read
/// is seen on the next request.
fn load_runbook_file(
    path: &Path,
    mut stamps: Vec<(PathBuf, Option<FileStamp>)>,
    name: Option<&str>,
) -> LoadedRunbook {
    let root = FileStamp::of(path);
    let loaded = cutover_lang::load_file(path);
    stamps.push((path.to_owned(), root));
    for file in loaded.sources.files.iter().skip(1) {
        // An included file's stamp is taken after it was read: when its
        // text is no longer what was parsed, it is read again next time.
        let unchanged = std::fs::read_to_string(&file.path).ok().as_ref() == Some(&file.text);
        let stamp = FileStamp::of(&file.path).filter(|_| unchanged);
        stamps.push((file.path.clone(), Some(stamp.unwrap_or(FileStamp::CHANGED))));
    }
    let planned = loaded
        .runbook
        .filter(|r| name.is_none_or(|n| r.name == n))
        .map(|r| Arc::new(PlannedRunbook::new(r)));
    LoadedRunbook {
        planned,
        stamps,
        recorded: None,
    }
}

/// [`crate::find_runbook`], remembering every candidate looked at.
fn find_runbook_file(state: &Path, snapshot: &Snapshot) -> LoadedRunbook {
    let mut stamps = Vec::new();
    for path in crate::runbook_candidates(state, &snapshot.run.runbook_path) {
        if path.is_file() {
            let loaded = load_runbook_file(
                &path,
                std::mem::take(&mut stamps),
                Some(&snapshot.run.runbook_name),
            );
            if loaded.planned.is_some() {
                return LoadedRunbook {
                    recorded: Some(snapshot.run.runbook_path.clone()),
                    ..loaded
                };
            }
            stamps = loaded.stamps;
        } else {
            let stamp = FileStamp::of(&path);
            stamps.push((path, stamp));
        }
    }
    LoadedRunbook {
        planned: None,
        stamps,
        recorded: Some(snapshot.run.runbook_path.clone()),
    }
}

/// An answer kept until the state changes: the report serialised once,
/// and what the clock-dependent parts are drawn from.
#[derive(Debug)]
struct Answer {
    version: Option<StateVersion>,
    lock: Option<LockHolder>,
    /// Whether the lock's holder was gone when the report was built (the
    /// last session shows as crashed then).
    stale: Option<bool>,
    report: Report,
    report_json: Vec<u8>,
    chart: LiveChart,
    coordinator_json: String,
    countdowns: Vec<Countdown>,
}

impl Answer {
    fn new(
        snapshot: &Snapshot,
        runbook: Option<&PlannedRunbook>,
        version: Option<StateVersion>,
    ) -> Answer {
        let stale = snapshot.lock.as_ref().map(LockHolder::is_stale);
        let report = Report::build_latest_events(snapshot, runbook, LATEST_EVENTS);
        let report_json = serde_json::to_vec(&report).unwrap_or_default();
        let coordinator = snapshot.lock.as_ref().map(ToString::to_string);
        Answer {
            version,
            stale,
            chart: LiveChart::new(&report),
            coordinator_json: serde_json::to_string(&coordinator).unwrap_or_default(),
            countdowns: countdowns(snapshot),
            lock: snapshot.lock.clone(),
            report_json,
            report,
        }
    }

    /// The JSON of [`LiveState`] at `now`, field for field.
    fn body(&self, now: DateTime<Utc>) -> Vec<u8> {
        let chart = self.chart.json_at(&self.report, now);
        let now_json = serde_json::to_string(&now).unwrap_or_default();
        let countdowns =
            serde_json::to_string(&running_countdowns(&self.countdowns, now)).unwrap_or_default();
        let mut out = Vec::with_capacity(self.report_json.len() + chart.len() + 256);
        out.extend_from_slice(b"{\"now\":");
        out.extend_from_slice(now_json.as_bytes());
        out.extend_from_slice(b",\"report\":");
        out.extend_from_slice(&self.report_json);
        out.extend_from_slice(b",\"gantt_svg\":");
        out.extend_from_slice(chart.as_bytes());
        out.extend_from_slice(b",\"coordinator\":");
        out.extend_from_slice(self.coordinator_json.as_bytes());
        out.extend_from_slice(b",\"countdowns\":");
        out.extend_from_slice(countdowns.as_bytes());
        out.push(b'}');
        out
    }
}
