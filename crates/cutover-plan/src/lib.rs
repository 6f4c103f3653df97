//! The planner: a pure function from a runbook (and, optionally, facts
//! probed from the live world) to the dry-run timeline a team reviews before
//! a cutover, and the mistakes that can be seen in advance.
//!
//! [`plan`] returns a [`Plan`]: every step's start and end relative to T0
//! (and in UTC when the window is known), the TTL waits before DNS switches,
//! the critical path, slack per step, whether the plan fits the window, and
//! lint findings as [`cutover_lang::Diagnostic`]s. Every duration carries
//! its [`Provenance`]: a plan never presents a guess as a fact. The
//! [`render`] module writes a plan as a terminal table with a text Gantt,
//! Markdown, JSON (schema in `docs/plan-json.md`) or an SVG Gantt chart.
//!
//! The planner does no IO: [`ProbeFacts`] are read by the caller.
//!
//! ```ignore
//! let loaded = cutover_lang::load_file(path);
//! let plan = cutover_plan::plan(loaded.runbook.as_ref().unwrap(), None);
//! print!("{}", cutover_plan::render::text(&plan, &loaded.sources, false));
//! ```

pub mod calibrate;
mod changes;
pub mod estimate;
pub mod facts;
mod figure;
mod graph;
pub mod lint;
pub mod render;
pub mod reviewed;
pub mod schedule;
pub mod units_fmt;

pub use calibrate::{Calibration, CopyMeasure, RunMeasures, StepMeasure};
pub use changes::{ChangeKind, DnsChange, dns_changes};
pub use estimate::CopyEstimate;
pub use facts::{
    DatabaseSizeFact, NameServer, ProbeFacts, RecordFact, SizeFact, SoaFact, ZoneNsFact,
};
pub use figure::{Figure, Provenance};
pub use schedule::{PlannedStep, SwitchSafety, TtlWait};

use chrono::{DateTime, Utc};
use cutover_lang::{Diagnostic, Runbook, StepId};

/// The dry-run timeline of a runbook. Times are milliseconds relative to T0.
#[derive(Debug, Clone)]
pub struct Plan {
    pub runbook: String,
    pub title: Option<String>,
    /// The window's start; without a window, the earliest absolute `at`.
    pub t0: Option<DateTime<Utc>>,
    pub window: Option<WindowFit>,
    /// Indexed by [`StepId`], like the runbook's steps.
    pub steps: Vec<PlannedStep>,
    /// Every step once, predecessors first (steps in a cycle last).
    pub order: Vec<StepId>,
    pub critical_path: Vec<StepId>,
    /// When the last step of the cutover ends: follow-ups scheduled after
    /// the window (`at` past its end, and what comes after them) excluded.
    pub end: i64,
    /// When the last step of all ends, follow-ups included.
    pub last_end: i64,
    /// The end depends on an unknown duration.
    pub end_at_least: bool,
    pub switches: Vec<SwitchSafety>,
    /// Lint findings, in source order.
    pub diagnostics: Vec<Diagnostic>,
    /// What the plan could not evaluate, and the defaults it assumed.
    pub notes: Vec<String>,
    /// Whether probe facts were given.
    pub probed: bool,
    /// Under `--probe`: what the run would change in DNS, what is already
    /// done and where the live world drifted, each record once.
    pub live: Vec<DnsChange>,
}

/// How the plan fits the announced window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowFit {
    pub start: DateTime<Utc>,
    /// The window's length; the window ends at this offset from T0.
    pub length: i64,
    /// Window end minus plan end: time left when positive, overflow when negative.
    pub left: i64,
}

impl Plan {
    /// Steps in the order they start (source order for equal starts).
    pub fn chronological(&self) -> Vec<&PlannedStep> {
        let mut steps: Vec<&PlannedStep> = self.steps.iter().collect();
        steps.sort_by_key(|s| (s.start, s.act_start, s.id));
        steps
    }

    pub fn step(&self, id: StepId) -> &PlannedStep {
        &self.steps[id.0]
    }

    /// When the cutover ends from here (an offset from T0, like `now`):
    /// the steps marked in `done` take no more time, the others start no
    /// earlier than `now` and take their planned time (TTL wait included),
    /// holding to their `at`. The end a running cutover heads for, which
    /// moves as steps finish early or late; one pass in dependency order,
    /// so it can be asked every second.
    pub fn end_from(&self, runbook: &Runbook, done: &[bool], now: i64) -> i64 {
        let mut ends: Vec<i64> = vec![now; self.steps.len()];
        let mut last = now;
        for &id in &self.order {
            if done.get(id.0).copied().unwrap_or(false) {
                continue;
            }
            let planned = &self.steps[id.0];
            let start = planned
                .after
                .iter()
                .map(|p| ends[p.0])
                .fold(now.max(planned.at.unwrap_or(now)), i64::max);
            let act_start = start + (planned.act_start - planned.start);
            let took = planned.duration.ms_or_zero();
            let end = match &runbook.step(id).action.kind {
                // A wait for a time ends then, however late it starts.
                cutover_lang::ActionKind::Wait(cutover_lang::WaitFor::Until(_)) => {
                    act_start.max(planned.end)
                }
                _ => act_start.saturating_add(took),
            };
            ends[id.0] = end;
            last = last.max(end);
        }
        last
    }

    /// UTC time of an offset from T0 (milliseconds), when T0 is known.
    pub fn utc(&self, offset: i64) -> Option<DateTime<Utc>> {
        units_fmt::at_ms(self.t0, offset)
    }
}

/// Plans a runbook. `facts`, when given, replace unknowns (sizes, TTLs) and
/// enable the rules that need the live world.
pub fn plan(runbook: &Runbook, facts: Option<&ProbeFacts>) -> Plan {
    plan_with(runbook, facts, &Options::default())
}

/// The finding for a fact `--probe` could not read.
pub const PROBE_FAILED: &str = "probe-failed";

/// What a plan is made for, beyond the runbook and the live facts.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A rehearsal's plan: no step starts before this offset from T0 in
    /// milliseconds (the run's start), as the engine runs a rehearsal started at T0 (`--t0
    /// now`): `at` times before it are already past.
    pub not_before: Option<i64>,
    /// What earlier runs measured (`--calibrate`), replacing estimates.
    pub calibration: Option<Calibration>,
}

/// [`plan`] with [`Options`].
pub fn plan_with(runbook: &Runbook, facts: Option<&ProbeFacts>, options: &Options) -> Plan {
    let t0 = runbook.window.map(|w| w.start).or_else(|| {
        runbook
            .steps
            .iter()
            .filter_map(|s| match s.at {
                Some(cutover_lang::units::TimeSpec::Absolute(t)) => Some(t),
                _ => None,
            })
            .min()
    });
    let graph = graph::Graph::new(runbook);
    let estimator = estimate::Estimator::new(runbook, facts, options.calibration.as_ref());
    let window_end = runbook.window.map(|w| estimate::ms(w.length));
    let schedule = schedule::schedule(
        runbook,
        facts,
        &graph,
        &estimator,
        t0,
        window_end,
        options.not_before,
    );
    let mut notes = Vec::new();
    if runbook.window.is_none() {
        notes.push(match t0 {
            Some(t) => format!(
                "no window declared: T0 is the earliest `at` time, {}",
                units_fmt::utc(t)
            ),
            None => "no window declared: times are relative to the start of the run".to_string(),
        });
    }
    let follow_ups: Vec<&str> = schedule
        .steps
        .iter()
        .filter(|s| s.after_window)
        .map(|s| s.name.as_str())
        .collect();
    if !follow_ups.is_empty() {
        notes.push(format!(
            "scheduled after the window, so not part of its fit: {}",
            list(&follow_ups)
        ));
    }
    if !graph.cyclic.is_empty() {
        let names: Vec<&str> = graph
            .cyclic
            .iter()
            .map(|id| runbook.step(*id).name.as_str())
            .collect();
        notes.push(format!(
            "steps in a dependency cycle are placed after the others: {}",
            names.join(", ")
        ));
    }
    let window = runbook.window.map(|w| {
        let length = estimate::ms(w.length);
        WindowFit {
            start: w.start,
            length,
            left: length - schedule.end,
        }
    });
    let mut plan = Plan {
        runbook: runbook.name.clone(),
        title: runbook.title.clone(),
        t0,
        window,
        steps: schedule.steps,
        order: graph.order.clone(),
        critical_path: schedule.critical_path,
        end: schedule.end,
        last_end: schedule.last_end,
        end_at_least: schedule.end_at_least,
        switches: schedule.switches,
        diagnostics: Vec::new(),
        notes,
        probed: facts.is_some(),
        live: facts.map(|f| dns_changes(runbook, f)).unwrap_or_default(),
    };
    let lints = lint::check(&lint::Context {
        runbook,
        facts,
        plan: &plan,
        graph: &graph,
        estimator: &estimator,
    });
    plan.diagnostics = lints.diagnostics;
    // A fact that could not be read leaves the plan blind where it matters.
    for problem in facts.map(|f| f.problems.as_slice()).unwrap_or_default() {
        plan.diagnostics.push(Diagnostic::warning(
            PROBE_FAILED,
            format!("could not probe: {problem}"),
            runbook.span,
        ));
    }
    plan.notes.extend(lints.notes);
    plan.notes.extend(assumption_notes(&plan));
    if options.calibration.is_some() {
        plan.notes
            .extend(calibration_notes(runbook, &plan, &estimator));
    }
    plan
}

/// One note per step whose measured duration differs much from what the
/// runbook alone gives: where rehearsals contradict the plan.
fn calibration_notes(
    runbook: &Runbook,
    plan: &Plan,
    estimator: &estimate::Estimator,
) -> Vec<String> {
    let measured = plan
        .steps
        .iter()
        .filter(|s| s.duration.provenance == Provenance::Measured)
        .count();
    let mut notes = vec![format!(
        "calibrated: {measured} of {} step(s) take what earlier runs measured",
        plan.steps.len()
    )];
    for s in &plan.steps {
        let (Some(measured), Some(planned)) = (
            s.duration
                .ms
                .filter(|_| s.duration.provenance == Provenance::Measured),
            estimator
                .planned(s.id, runbook.step(s.id))
                .and_then(|f| f.ms.map(|ms| (ms, f.provenance))),
        ) else {
            continue;
        };
        if calibrate::large_difference(measured, planned.0) {
            notes.push(format!(
                "rehearsal vs plan: `{}` took {} where the runbook alone gives {} ({})",
                s.name,
                units_fmt::duration_ms(measured),
                units_fmt::duration_ms(planned.0),
                planned.1.as_str()
            ));
        }
    }
    notes
}

/// One note per default the plan had to assume.
fn assumption_notes(plan: &Plan) -> Vec<String> {
    let guesses: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.duration.provenance == Provenance::Guess)
        .map(|s| s.name.as_str())
        .collect();
    let unknown: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.duration.provenance == Provenance::Unknown)
        .map(|s| s.name.as_str())
        .collect();
    let mut notes = Vec::new();
    if !guesses.is_empty() {
        notes.push(format!(
            "{} step(s) use a default duration (a guess; see each basis): {}",
            guesses.len(),
            list(&guesses)
        ));
    }
    if !unknown.is_empty() {
        notes.push(format!(
            "{} step(s) have an unknown duration, counted as 0 (times after them are \"at least\"): {}",
            unknown.len(),
            list(&unknown)
        ));
    }
    notes
}

/// `a, b, c` or `a, b, c and 7 more`.
fn list(names: &[&str]) -> String {
    const SHOWN: usize = 8;
    if names.len() <= SHOWN {
        names.join(", ")
    } else {
        format!(
            "{} and {} more",
            names[..SHOWN].join(", "),
            names.len() - SHOWN
        )
    }
}
