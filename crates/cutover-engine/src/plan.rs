//! The engine's own small timeline: planned start and finish of each step
//! from `after`, `at`, `expect` and wait durations. It gives the planned
//! starts stored per step and the ETA of the progress bar; the full
//! planner (critical path, lints) is `cutover-plan`.

use chrono::{DateTime, TimeDelta, Utc};
use cutover_lang::units::TimeSpec;
use cutover_lang::{ActionKind, Runbook, Step, WaitFor};

/// An absolute instant for a time spec (None: relative with no T0).
pub fn resolve(spec: TimeSpec, t0: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match spec {
        TimeSpec::Absolute(at) => Some(at),
        TimeSpec::Relative(offset) => t0.map(|t0| t0 + TimeDelta::seconds(offset)),
    }
}

/// When a step is planned to start and finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedStep {
    pub start: DateTime<Utc>,
    pub finish: DateTime<Utc>,
}

/// The instant a step may start by its `at` (None: no `at`, or a relative
/// `at` with no T0).
pub fn step_at(step: &Step, t0: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    resolve(step.at?, t0)
}

fn expected(step: &Step, start: DateTime<Utc>, t0: Option<DateTime<Utc>>) -> TimeDelta {
    if let Some(expect) = step.expect {
        return TimeDelta::from_std(expect).unwrap_or(TimeDelta::MAX);
    }
    match &step.action.kind {
        ActionKind::Wait(WaitFor::Duration(d)) => TimeDelta::from_std(*d).unwrap_or(TimeDelta::MAX),
        ActionKind::Wait(WaitFor::Until(spec)) => resolve(*spec, t0)
            .map_or(TimeDelta::zero(), |until| {
                (until - start).max(TimeDelta::zero())
            }),
        _ => TimeDelta::zero(),
    }
}

/// Plans every step starting no earlier than `earliest`. Steps marked in
/// `done` take no time. Steps in a dependency cycle (which the language
/// rejects) are planned at `earliest`.
pub fn schedule(
    runbook: &Runbook,
    earliest: DateTime<Utc>,
    t0: Option<DateTime<Utc>>,
    done: &[bool],
) -> Vec<PlannedStep> {
    let n = runbook.steps.len();
    let mut planned: Vec<Option<PlannedStep>> = vec![None; n];
    let mut progress = true;
    while progress {
        progress = false;
        for (i, step) in runbook.steps.iter().enumerate() {
            if planned[i].is_some() {
                continue;
            }
            let deps: Option<Vec<DateTime<Utc>>> = step
                .after
                .iter()
                .map(|d| planned.get(d.0).copied().flatten().map(|p| p.finish))
                .collect();
            let Some(deps) = deps else { continue };
            let mut start = deps.into_iter().fold(earliest, DateTime::max);
            if done.get(i).copied().unwrap_or(false) {
                planned[i] = Some(PlannedStep {
                    start,
                    finish: start,
                });
            } else {
                if let Some(at) = step_at(step, t0) {
                    start = start.max(at);
                }
                let finish = start
                    .checked_add_signed(expected(step, start, t0))
                    .unwrap_or(start);
                planned[i] = Some(PlannedStep { start, finish });
            }
            progress = true;
        }
    }
    planned
        .into_iter()
        .map(|p| {
            p.unwrap_or(PlannedStep {
                start: earliest,
                finish: earliest,
            })
        })
        .collect()
}
