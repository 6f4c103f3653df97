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
///
/// One pass in dependency order, whatever order the runbook lists its
/// steps in: the progress bar asks for this every second, so it must stay
/// linear in steps and `after` edges.
pub fn schedule(
    runbook: &Runbook,
    earliest: DateTime<Utc>,
    t0: Option<DateTime<Utc>>,
    done: &[bool],
) -> Vec<PlannedStep> {
    let n = runbook.steps.len();
    let mut planned: Vec<Option<PlannedStep>> = vec![None; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting_on: Vec<usize> = vec![0; n];
    for (i, step) in runbook.steps.iter().enumerate() {
        waiting_on[i] = step.after.len();
        for dep in &step.after {
            if let Some(list) = dependents.get_mut(dep.0) {
                list.push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting_on[i] == 0).collect();
    while let Some(i) = ready.pop() {
        let step = &runbook.steps[i];
        let mut start = step
            .after
            .iter()
            .filter_map(|d| planned[d.0].map(|p| p.finish))
            .fold(earliest, DateTime::max);
        planned[i] = Some(if done.get(i).copied().unwrap_or(false) {
            PlannedStep {
                start,
                finish: start,
            }
        } else {
            if let Some(at) = step_at(step, t0) {
                start = start.max(at);
            }
            let finish = start
                .checked_add_signed(expected(step, start, t0))
                .unwrap_or(start);
            PlannedStep { start, finish }
        });
        for &next in &dependents[i] {
            waiting_on[next] -= 1;
            if waiting_on[next] == 0 {
                ready.push(next);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps listed after the steps that wait for them are planned in
    /// dependency order all the same, each starting when its dependency
    /// ends.
    #[test]
    fn steps_listed_before_their_dependencies_are_planned_after_them() {
        let text = "runbook order\n\n\
            step third after second\n  wait 30s\n\n\
            step second after first\n  wait 20s\n\n\
            step first\n  wait 10s\n";
        let runbook =
            cutover_lang::parse_source(std::path::Path::new("order.runbook"), text.into())
                .runbook
                .expect("the runbook parses");
        let earliest = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let planned = schedule(&runbook, earliest, None, &[]);
        let secs = |p: &PlannedStep| {
            (
                (p.start - earliest).num_seconds(),
                (p.finish - earliest).num_seconds(),
            )
        };
        let by_name = runbook.steps_by_name();
        let at = |name: &str| secs(&planned[by_name[name].0]);
        assert_eq!(at("first"), (0, 10));
        assert_eq!(at("second"), (10, 30));
        assert_eq!(at("third"), (30, 60));

        let done = [true, false, true]; // `third` and `first` done
        let planned = schedule(&runbook, earliest, None, &done);
        let at = |name: &str| secs(&planned[by_name[name].0]);
        assert_eq!(at("first"), (0, 0));
        assert_eq!(at("second"), (0, 20));
        assert_eq!(at("third"), (20, 20));
    }
}
