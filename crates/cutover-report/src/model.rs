//! The report of one run: what every export format and the dashboard show.
//! Built from a [`Snapshot`] of the state file and, when it can be read,
//! the runbook (for the planned timeline and the kinds of the steps). It
//! serializes as the JSON export, whose schema `docs/export-format.md`
//! documents.

use crate::moment::{Moment, utc};
use crate::read::Snapshot;
use crate::sessions::{Session, sessions};
use chrono::{DateTime, Utc};
use cutover_lang::{Runbook, StepId};
use cutover_store::{EventRecord, EvidenceRecord, Phase, RunStatus, StepRecord, StepStatus};
use serde::Serialize;
use std::collections::HashMap;

/// The schema identifier of the JSON export.
pub const SCHEMA: &str = "cutover-report/1";

/// A step starting more than this after its planned start is late.
pub const LATE_TOLERANCE_S: i64 = 30;
/// A step taking more than this (and more than 10 % of its planned
/// duration) over its planned duration overran.
pub const OVERRUN_TOLERANCE_S: i64 = 30;

/// The whole post-mortem of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub run: RunSummary,
    pub steps: Vec<StepReport>,
    pub deviations: Vec<Deviation>,
    pub confirmations: Vec<ConfirmationReport>,
    /// Each time a coordinator ran the run: the first start and every resume.
    pub sessions: Vec<Session>,
    /// The event log, oldest first, without `progress` events.
    pub events: Vec<EventReport>,
    /// What the report could not know, and where its figures come from.
    pub notes: Vec<String>,
}

/// The header: which runbook, when, by whom, and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: i64,
    pub runbook: String,
    pub title: Option<String>,
    pub runbook_path: String,
    /// blake3 of the runbook text when the run started (or when a changed
    /// runbook was accepted).
    pub content_hash: String,
    pub operator: String,
    /// T-offsets are counted from here: the run's T0, else the window's
    /// start, else the run's start.
    pub t0: DateTime<Utc>,
    pub t0_basis: &'static str,
    pub window: Option<WindowReport>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    /// One line: the status with step counts, crashes and resumes.
    pub outcome: String,
    pub counts: Counts,
    /// The plan the run recorded at its start and is judged against (a
    /// reviewed plan, a rehearsal's); `None`: planned from the runbook.
    pub plan: Option<RecordedPlan>,
}

/// The plan a run recorded when it started.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedPlan {
    /// A rehearsal: its plan re-based at the run's start.
    pub rehearsal: bool,
    /// Where planned offsets count from.
    pub origin: DateTime<Utc>,
    /// The reviewed plan (`run --plan`) it held to.
    pub reviewed: Option<cutover_store::ReviewedPlanRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub length_s: i64,
}

/// Steps by status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub running: usize,
    pub pending: usize,
    pub undone: usize,
}

/// A planned or actual stretch of time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Span {
    pub start: Option<Moment>,
    pub end: Option<Moment>,
    /// Milliseconds, written as seconds (`duration_s`: `120`, `3.19`).
    #[serde(rename = "duration_s", serialize_with = "secs")]
    pub duration_ms: Option<i64>,
}

/// Milliseconds as JSON seconds, as the plan writes them.
fn secs<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    ms.map(cutover_plan::units_fmt::json_secs).serialize(s)
}

/// The planned side also says where its duration comes from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Planned {
    #[serde(flatten)]
    pub span: Span,
    /// `declared`, `estimated`, `guess`, `unknown` (the planner's
    /// provenance), or `stored` (only the start, recorded when the run began).
    pub source: &'static str,
}

/// One step: plan, what happened, and what was observed.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    /// The kind keyword (e.g. `dns.switch`).
    pub kind: String,
    /// The step's canonical text as the run recorded it.
    pub definition: String,
    pub status: StepStatus,
    pub phase: Option<Phase>,
    pub attempts: i64,
    pub planned: Planned,
    pub actual: Span,
    /// Actual start minus planned start (positive: later than planned),
    /// milliseconds written as seconds.
    #[serde(rename = "start_delta_s", serialize_with = "secs")]
    pub start_delta_ms: Option<i64>,
    /// Actual duration minus planned duration, milliseconds written as
    /// seconds.
    #[serde(rename = "duration_delta_s", serialize_with = "secs")]
    pub duration_delta_ms: Option<i64>,
    /// Seconds of the actual span when no coordinator ran (from a crash or
    /// a stop to the resume): left out of `actual.duration_s`.
    pub stopped_s: i64,
    pub evidence: Vec<EvidenceReport>,
    /// The latest message of a running step (dashboard).
    pub last_message: Option<String>,
    /// The latest progress a running step logged in its current phase.
    pub progress: Option<Progress>,
    /// A manual gate waiting for its confirmation: its instructions. Set
    /// for a step running its act whose latest event is the `gate` event
    /// the engine logs when the gate starts waiting (the rule of `cutover
    /// status`); absent from the JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for_confirmation: Option<String>,
}

/// `progress` events: `{"done": N, "total": N|null, "unit": "bytes"}`.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub at: DateTime<Utc>,
    pub done: u64,
    pub total: Option<u64>,
    pub unit: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvidenceReport {
    pub at: Moment,
    pub phase: Phase,
    pub attempt: i64,
    pub summary: String,
    pub data: serde_json::Value,
}

/// Something that did not go as the runbook planned.
#[derive(Debug, Clone, Serialize)]
pub struct Deviation {
    pub step: Option<String>,
    pub kind: DeviationKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviationKind {
    /// Started more than [`LATE_TOLERANCE_S`] after its planned start.
    Late,
    /// Took longer than planned (see [`OVERRUN_TOLERANCE_S`]).
    Overrun,
    /// Needed more than one attempt.
    Retried,
    Skipped,
    Failed,
    /// Run although a step it depends on was skipped, or not run because of one.
    Forced,
    Blocked,
    /// Was done, but its check no longer held on a resume.
    Drift,
    /// Caught mid-flight by a crash or a stop.
    Interrupted,
    /// The runbook changed during the run.
    RunbookChanged,
    /// A DNS switch did not wait for the old TTL to expire (`--no-ttl-wait`):
    /// caches could still serve the old value.
    TtlWaitSkipped,
}

impl DeviationKind {
    pub fn label(self) -> &'static str {
        match self {
            DeviationKind::Late => "late",
            DeviationKind::Overrun => "overrun",
            DeviationKind::Retried => "retried",
            DeviationKind::Skipped => "skipped",
            DeviationKind::Failed => "failed",
            DeviationKind::Forced => "forced",
            DeviationKind::Blocked => "blocked",
            DeviationKind::Drift => "drift",
            DeviationKind::Interrupted => "interrupted",
            DeviationKind::RunbookChanged => "runbook changed",
            DeviationKind::TtlWaitSkipped => "TTL wait skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfirmationReport {
    pub step: String,
    pub user: String,
    pub at: Moment,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventReport {
    pub id: i64,
    pub at: Moment,
    pub step: Option<String>,
    pub kind: String,
    pub message: String,
    pub data: Option<serde_json::Value>,
}

/// A runbook with what the report needs of it computed once: its plan and
/// its steps by name. The dashboard keeps one across polls (the runbook
/// changes only when its file does); [`Report::build`] makes one per call.
#[derive(Debug)]
pub struct PlannedRunbook {
    runbook: Runbook,
    plan: cutover_plan::Plan,
    steps: HashMap<String, StepId>,
}

impl PlannedRunbook {
    pub fn new(runbook: Runbook) -> PlannedRunbook {
        let plan = cutover_plan::plan(&runbook, None);
        let steps = step_index(&runbook);
        PlannedRunbook {
            runbook,
            plan,
            steps,
        }
    }

    pub fn runbook(&self) -> &Runbook {
        &self.runbook
    }

    fn planning(&self) -> Planning<'_> {
        Planning {
            runbook: &self.runbook,
            plan: &self.plan,
            steps: &self.steps,
        }
    }
}

fn step_index(runbook: &Runbook) -> HashMap<String, StepId> {
    runbook
        .steps
        .iter()
        .enumerate()
        .rev() // the first of two steps of one name wins, as in `step_by_name`
        .map(|(i, s)| (s.name.clone(), StepId(i)))
        .collect()
}

/// A runbook, its plan and its steps by name, borrowed for one build.
#[derive(Clone, Copy)]
struct Planning<'a> {
    runbook: &'a Runbook,
    plan: &'a cutover_plan::Plan,
    steps: &'a HashMap<String, StepId>,
}

impl Report {
    /// Builds the report of the run in `snapshot`. `runbook`, when given,
    /// supplies the planned timeline (from the planner) and step kinds.
    pub fn build(snapshot: &Snapshot, runbook: Option<&Runbook>) -> Report {
        match runbook {
            Some(runbook) => {
                let plan = cutover_plan::plan(runbook, None);
                let steps = step_index(runbook);
                let planning = Planning {
                    runbook,
                    plan: &plan,
                    steps: &steps,
                };
                Report::build_with(snapshot, Some(planning), None)
            }
            None => Report::build_with(snapshot, None, None),
        }
    }

    /// [`Report::build`] with a runbook planned beforehand.
    pub fn build_planned(snapshot: &Snapshot, runbook: Option<&PlannedRunbook>) -> Report {
        Report::build_with(snapshot, runbook.map(PlannedRunbook::planning), None)
    }

    /// The report with only the latest `events` entries of the event log
    /// (what the dashboard shows of it).
    pub(crate) fn build_latest_events(
        snapshot: &Snapshot,
        runbook: Option<&PlannedRunbook>,
        events: usize,
    ) -> Report {
        Report::build_with(
            snapshot,
            runbook.map(PlannedRunbook::planning),
            Some(events),
        )
    }

    fn build_with(
        snapshot: &Snapshot,
        planning: Option<Planning<'_>>,
        latest_events: Option<usize>,
    ) -> Report {
        let run = &snapshot.run;
        let runbook = planning.map(|p| p.runbook);
        let plan = planning.map(|p| p.plan);
        let (t0, t0_basis) = match (run.t0, plan.and_then(|p| p.t0)) {
            (Some(t0), _) => (t0, "the run's T0"),
            (None, Some(t0)) => (t0, "the runbook's window"),
            (None, None) => (run.started_at, "the start of the run (no window, no --t0)"),
        };
        let at = |utc: DateTime<Utc>| Moment {
            utc,
            offset_s: (utc - t0).num_seconds(),
        };
        let mut notes = Vec::new();
        match (&snapshot.plan, runbook) {
            (Some(recorded), _) => notes.push(recorded_plan_note(recorded)),
            (None, Some(r)) => notes.push(format!(
                "planned times come from the planner on the runbook `{}` as read now; the run recorded hash {}",
                r.name,
                short_hash(&run.content_hash)
            )),
            (None, None) => notes.push(
                "the runbook could not be read: planned starts are those recorded when the run began, planned ends are unknown"
                    .to_owned(),
            ),
        }

        let sessions = sessions(snapshot, &at);
        let by_step = ByStep::new(snapshot);
        let mut deviations = Vec::new();
        let mut steps = Vec::new();
        for record in &snapshot.steps {
            let mut step = step_report(record, &by_step, planning, snapshot.plan.as_ref(), &at, t0);
            leave_out_stopped_time(&mut step, &sessions);
            step_deviations(&step, by_step.events(&record.name), &mut deviations);
            steps.push(step);
        }
        for session in &sessions {
            for caught in &session.caught_mid_flight {
                deviations.push(Deviation {
                    step: Some(caught.step.clone()),
                    kind: DeviationKind::Interrupted,
                    detail: format!(
                        "caught {} by {} of session {}",
                        caught.phase.map_or("mid-flight".to_owned(), |p| format!(
                            "in phase {}",
                            p.as_str()
                        )),
                        session.end.describe(),
                        session.number
                    ),
                });
            }
        }
        for event in &snapshot.events {
            let kind = match event.kind.as_str() {
                "drift" => DeviationKind::Drift,
                "blocked" => DeviationKind::Blocked,
                "changed" => DeviationKind::RunbookChanged,
                "deviation" if event.message.contains("--force") => DeviationKind::Forced,
                _ => continue,
            };
            deviations.push(Deviation {
                step: event.step.clone(),
                kind,
                detail: event.message.clone(),
            });
        }

        let confirmations = snapshot
            .confirmations
            .iter()
            .map(|c| ConfirmationReport {
                step: c.step.clone(),
                user: c.user.clone(),
                at: at(c.at),
                note: c.note.clone(),
            })
            .collect();
        // Progress is left out of the log: one event a second per running
        // copy would bury the rest, and the act's evidence says what each
        // copy moved and how long it took.
        let event_report = |e: &EventRecord| EventReport {
            id: e.id,
            at: at(e.at),
            step: e.step.clone(),
            kind: e.kind.clone(),
            message: e.message.clone(),
            data: e.data.as_ref().map(crate::facts::tidy),
        };
        let logged = snapshot.events.iter().filter(|e| e.kind != "progress");
        let events = match latest_events {
            None => logged.map(event_report).collect(),
            Some(n) => {
                let mut latest: Vec<EventReport> = logged.rev().take(n).map(event_report).collect();
                latest.reverse();
                latest
            }
        };
        let counts = counts(&snapshot.steps);
        let outcome = outcome(run.status, &counts, &sessions);
        Report {
            schema: SCHEMA,
            run: RunSummary {
                id: run.id,
                runbook: run.runbook_name.clone(),
                title: runbook.and_then(|r| r.title.clone()),
                runbook_path: run.runbook_path.clone(),
                content_hash: run.content_hash.clone(),
                operator: run.operator.clone(),
                t0,
                t0_basis,
                window: runbook.and_then(|r| r.window).map(|w| {
                    let length_s = i64::try_from(w.length.as_secs()).unwrap_or(i64::MAX);
                    WindowReport {
                        start: w.start,
                        end: w.start
                            + chrono::TimeDelta::try_seconds(length_s)
                                .unwrap_or(chrono::TimeDelta::MAX),
                        length_s,
                    }
                }),
                started_at: run.started_at,
                finished_at: run.finished_at,
                status: run.status,
                outcome,
                counts,
                plan: snapshot.plan.as_ref().map(|p| RecordedPlan {
                    rehearsal: p.rehearsal,
                    origin: p.origin,
                    reviewed: p.reviewed.clone(),
                }),
            },
            steps,
            deviations,
            confirmations,
            sessions,
            events,
            notes,
        }
    }

    pub fn step(&self, name: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// A run's events and evidence grouped by step, each group in log order.
/// Built once per report, so that what a step shows costs what that step
/// logged, not a scan of the whole run's log (a run of 10,000 steps logs
/// some 50,000 events).
pub(crate) struct ByStep<'a> {
    events: HashMap<&'a str, Vec<&'a EventRecord>>,
    evidence: HashMap<&'a str, Vec<&'a EvidenceRecord>>,
}

impl<'a> ByStep<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot) -> ByStep<'a> {
        let mut events: HashMap<&str, Vec<&EventRecord>> = HashMap::new();
        for event in &snapshot.events {
            if let Some(step) = event.step.as_deref() {
                events.entry(step).or_default().push(event);
            }
        }
        let mut evidence: HashMap<&str, Vec<&EvidenceRecord>> = HashMap::new();
        for e in &snapshot.evidence {
            evidence.entry(e.step.as_str()).or_default().push(e);
        }
        ByStep { events, evidence }
    }

    /// The events of `step`, oldest first.
    pub(crate) fn events(&self, step: &str) -> &[&'a EventRecord] {
        self.events.get(step).map_or(&[], Vec::as_slice)
    }

    /// The evidence of `step`, oldest first.
    pub(crate) fn evidence(&self, step: &str) -> &[&'a EvidenceRecord] {
        self.evidence.get(step).map_or(&[], Vec::as_slice)
    }
}

/// The first 16 hex digits of a hash, enough to tell runbooks apart.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

fn step_report(
    record: &StepRecord,
    by_step: &ByStep<'_>,
    planning: Option<Planning<'_>>,
    recorded: Option<&cutover_store::RunPlan>,
    at: &dyn Fn(DateTime<Utc>) -> Moment,
    t0: DateTime<Utc>,
) -> StepReport {
    let found = planning.and_then(|p| Some((p, *p.steps.get(record.name.as_str())?)));
    let kind = match found {
        Some((p, id)) => p.runbook.step(id).action.kind.keyword().to_owned(),
        None => kind_from_definition(&record.definition),
    };
    let recorded_span = recorded.and_then(|plan| {
        let span = plan.steps.iter().find(|s| s.name == record.name)?;
        Some((plan.origin, span))
    });
    let planned = match (recorded_span, found) {
        (Some((origin, span)), _) => {
            let offset = |ms: i64| {
                at(origin
                    + chrono::TimeDelta::try_milliseconds(ms).unwrap_or(chrono::TimeDelta::zero()))
            };
            Planned {
                span: Span {
                    start: Some(offset(span.start_ms)),
                    end: Some(offset(span.end_ms)),
                    duration_ms: Some(span.end_ms - span.start_ms),
                },
                source: recorded_source(&span.source),
            }
        }
        (None, Some((planning, id))) => {
            let p = planning.plan.step(id);
            let offset = |ms: i64| {
                at(t0
                    + chrono::TimeDelta::try_milliseconds(ms).unwrap_or(chrono::TimeDelta::zero()))
            };
            Planned {
                span: Span {
                    start: Some(offset(p.start)),
                    end: Some(offset(p.end)),
                    duration_ms: Some(p.end - p.start),
                },
                source: provenance(p.duration.provenance),
            }
        }
        (None, None) => Planned {
            span: Span {
                start: record.planned_start.map(at),
                end: None,
                duration_ms: None,
            },
            source: "stored",
        },
    };
    let step_events = by_step.events(&record.name);
    let first_event = step_events
        .iter()
        .find(|e| e.kind != "confirmed")
        .map(|e| e.at);
    let actual_start = record.started_at.or(match record.status {
        StepStatus::Pending | StepStatus::Skipped => None,
        _ => first_event,
    });
    let actual_end = match record.status {
        StepStatus::Done | StepStatus::Failed | StepStatus::Undone => record.finished_at,
        _ => None,
    };
    let actual = Span {
        start: actual_start.map(at),
        end: actual_end.map(at),
        duration_ms: actual_start
            .zip(actual_end)
            .map(|(s, e)| (e - s).num_milliseconds()),
    };
    let start_delta_ms = planned
        .span
        .start
        .zip(actual.start)
        .map(|(p, a)| (a.utc - p.utc).num_milliseconds());
    let duration_delta_ms = planned
        .span
        .duration_ms
        .zip(actual.duration_ms)
        .map(|(p, a)| a - p);
    let evidence = by_step
        .evidence(&record.name)
        .iter()
        .map(|e| EvidenceReport {
            at: at(e.at),
            phase: e.phase,
            attempt: e.attempt,
            summary: e.summary.clone(),
            data: crate::facts::tidy(&e.data),
        })
        .collect();
    let running = record.status == StepStatus::Running;
    let last_message = running
        .then(|| {
            step_events
                .iter()
                .rev()
                .find(|e| e.kind != "progress")
                .map(|e| e.message.clone())
        })
        .flatten();
    let progress = running
        .then(|| {
            current_phase(step_events)
                .iter()
                .rev()
                .find_map(|e| progress(e))
        })
        .flatten();
    let waiting_for_confirmation = (running && record.phase == Some(Phase::Act))
        .then(|| waiting_gate(step_events))
        .flatten();
    StepReport {
        name: record.name.clone(),
        kind,
        definition: record.definition.clone(),
        status: record.status,
        phase: record.phase,
        attempts: record.attempts,
        planned,
        actual,
        start_delta_ms,
        duration_delta_ms,
        stopped_s: 0,
        evidence,
        last_message,
        progress,
        waiting_for_confirmation,
    }
}

/// A step's actual duration without the time no coordinator ran: the
/// stretches from one session's last record to the next session's start
/// that fall within the step's span.
fn leave_out_stopped_time(step: &mut StepReport, sessions: &[Session]) {
    let (Some(start), Some(end)) = (step.actual.start, step.actual.end) else {
        return;
    };
    let stopped: i64 = sessions
        .windows(2)
        .map(|pair| {
            let from = pair[0].last_record_at.offset_s.max(start.offset_s);
            let to = pair[1].started_at.offset_s.min(end.offset_s);
            (to - from).max(0)
        })
        .sum();
    if stopped == 0 {
        return;
    }
    step.stopped_s = stopped;
    step.actual.duration_ms = step.actual.duration_ms.map(|d| d - stopped * 1000);
    step.duration_delta_ms = step
        .planned
        .span
        .duration_ms
        .zip(step.actual.duration_ms)
        .map(|(p, a)| a - p);
}

/// The instructions of a manual gate waiting for its confirmation: the
/// step's latest event is the `gate` event the engine logs when the gate
/// starts waiting (`{"instructions": TEXT}`; its message when the data
/// has none). Any later event (the confirmation, the outcome, a stop)
/// ends the wait.
fn waiting_gate(events: &[&EventRecord]) -> Option<String> {
    let last = events.last().filter(|e| e.kind == "gate")?;
    Some(
        last.data
            .as_ref()
            .and_then(|d| d.get("instructions"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or(&last.message)
            .to_owned(),
    )
}

/// What a step logged since it last entered a phase, from its events
/// (oldest first, see [`ByStep::events`]): the progress and countdowns of
/// a running step belong to its current act, not to an earlier attempt's.
pub(crate) fn current_phase<'e, 'a>(events: &'e [&'a EventRecord]) -> &'e [&'a EventRecord] {
    let start = events
        .iter()
        .rposition(|e| e.kind == "phase")
        .map_or(0, |i| i + 1);
    &events[start..]
}

fn progress(event: &EventRecord) -> Option<Progress> {
    if event.kind != "progress" {
        return None;
    }
    let data = event.data.as_ref()?;
    Some(Progress {
        at: event.at,
        done: data.get("done")?.as_u64()?,
        total: data.get("total").and_then(serde_json::Value::as_u64),
        unit: data
            .get("unit")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned(),
    })
}

fn provenance(p: cutover_plan::Provenance) -> &'static str {
    match p {
        cutover_plan::Provenance::Declared => "declared",
        cutover_plan::Provenance::Estimated => "estimated",
        cutover_plan::Provenance::Probed => "probed",
        cutover_plan::Provenance::Guess => "guess",
        cutover_plan::Provenance::Unknown => "unknown",
        cutover_plan::Provenance::Measured => "measured",
    }
}

/// A provenance as the run recorded it.
fn recorded_source(source: &str) -> &'static str {
    match source {
        "declared" => "declared",
        "estimated" => "estimated",
        "probed" => "probed",
        "measured" => "measured",
        "guess" => "guess",
        "unknown" => "unknown",
        _ => "stored",
    }
}

/// What the planned times of a run that recorded its plan come from.
fn recorded_plan_note(plan: &cutover_store::RunPlan) -> String {
    let mut note = match &plan.reviewed {
        Some(r) => format!(
            "planned times are those of the reviewed plan {} (made {}{}, blake3 {}) the run held to",
            r.file,
            r.made_at,
            r.probed_at
                .as_ref()
                .map(|p| format!(", probed {p}"))
                .unwrap_or_default(),
            short_hash(&r.hash)
        ),
        None => "planned times are those the run recorded at its start".to_owned(),
    };
    if plan.rehearsal {
        note.push_str(
            "; a rehearsal: its plan is re-based at the run's start (no step planned before it)",
        );
    }
    note
}

/// The kind keyword of a recorded definition (`step NAME ...\n  KIND ...`).
fn kind_from_definition(definition: &str) -> String {
    definition
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with("step "))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or("?")
        .to_owned()
}

/// The deviations of one step, from its report and its events (oldest
/// first).
fn step_deviations(step: &StepReport, events: &[&EventRecord], out: &mut Vec<Deviation>) {
    let name = Some(step.name.clone());
    if let Some(late) = step.start_delta_ms.filter(|d| *d > LATE_TOLERANCE_S * 1000) {
        out.push(Deviation {
            step: name.clone(),
            kind: DeviationKind::Late,
            detail: format!(
                "started {} after its planned start",
                cutover_plan::units_fmt::duration_ms(late)
            ),
        });
    }
    if let (Some(over), Some(planned)) = (step.duration_delta_ms, step.planned.span.duration_ms)
        && over > OVERRUN_TOLERANCE_S * 1000
        && over * 10 > planned
    {
        out.push(Deviation {
            step: name.clone(),
            kind: DeviationKind::Overrun,
            detail: format!(
                "took {} ({} planned, {})",
                cutover_plan::units_fmt::duration_ms(step.actual.duration_ms.unwrap_or(0)),
                cutover_plan::units_fmt::duration_ms(planned),
                step.planned.source
            ),
        });
    }
    for e in &step.evidence {
        let wait = &e.data["ttl_wait"];
        if e.phase == Phase::Act && wait["wait_skipped"] == true {
            let until = wait["caches_expired_at"]
                .as_str()
                .and_then(crate::facts::parse_time)
                .map_or_else(String::new, |t| {
                    format!("; caches could serve the old value until {} UTC", utc(t))
                });
            out.push(Deviation {
                step: name.clone(),
                kind: DeviationKind::TtlWaitSkipped,
                detail: format!(
                    "switched without waiting for the old TTL ({}, lowered by `{}`) to expire (--no-ttl-wait){until}",
                    wait["old_ttl"]
                        .as_i64()
                        .map_or_else(|| "?".to_owned(), cutover_plan::units_fmt::duration),
                    wait["lowered_by"].as_str().unwrap_or("?"),
                ),
            });
        }
    }
    let step_events = || events.iter().copied();
    if step.attempts > 1 {
        let failures: Vec<&str> = step_events()
            .filter(|e| e.kind == "failed")
            .map(|e| e.message.as_str())
            .collect();
        out.push(Deviation {
            step: name.clone(),
            kind: DeviationKind::Retried,
            detail: if failures.is_empty() {
                format!("{} attempts", step.attempts)
            } else {
                format!(
                    "{} attempts; failed before: {}",
                    step.attempts,
                    failures.join("; ")
                )
            },
        });
    }
    match step.status {
        StepStatus::Skipped => {
            let why = step_events()
                .rfind(|e| e.kind == "deviation")
                .map_or("skipped".to_owned(), |e| e.message.clone());
            out.push(Deviation {
                step: name,
                kind: DeviationKind::Skipped,
                detail: why,
            });
        }
        StepStatus::Failed => {
            let why = step_events()
                .rfind(|e| e.kind == "failed")
                .map_or("failed".to_owned(), |e| e.message.clone());
            out.push(Deviation {
                step: name,
                kind: DeviationKind::Failed,
                detail: why,
            });
        }
        _ => {}
    }
}

fn counts(steps: &[StepRecord]) -> Counts {
    let mut c = Counts {
        total: steps.len(),
        ..Counts::default()
    };
    for s in steps {
        match s.status {
            StepStatus::Done => c.done += 1,
            StepStatus::Failed => c.failed += 1,
            StepStatus::Skipped => c.skipped += 1,
            StepStatus::Running => c.running += 1,
            StepStatus::Pending => c.pending += 1,
            StepStatus::Undone => c.undone += 1,
        }
    }
    c
}

fn outcome(status: RunStatus, c: &Counts, sessions: &[Session]) -> String {
    let mut parts = vec![format!("{} of {} steps done", c.done, c.total)];
    for (n, what) in [
        (c.failed, "failed"),
        (c.skipped, "skipped"),
        (c.running, "running"),
        (c.undone, "undone"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let crashes = sessions.iter().filter(|s| s.end.is_crash()).count();
    let resumes = sessions.len().saturating_sub(1);
    if crashes > 0 {
        parts.push(format!(
            "{crashes} crash{}",
            if crashes == 1 { "" } else { "es" }
        ));
    }
    if resumes > 0 {
        parts.push(format!(
            "resumed {resumes} time{}",
            if resumes == 1 { "" } else { "s" }
        ));
    }
    format!("{}: {}", status.as_str(), parts.join(", "))
}
