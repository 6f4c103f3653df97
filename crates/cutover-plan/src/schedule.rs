//! The timeline: when each step starts and ends relative to T0, the waits
//! the TTL rules impose on DNS switches, slack, and the critical path.
//!
//! A step starts at the latest of its `at` time and the ends of the steps it
//! comes `after`; a step with neither starts at T0. A `dns.switch` (and a
//! `dns.remove`, which also takes served values away) may act only once
//! every cache has dropped the record's old TTL: the end of each earlier
//! `dns.ttl` of the record plus the TTL the record had before it.
//! Unknown durations count as zero, and every time that depends on one is
//! marked "at least".

use crate::estimate::{CopyEstimate, Estimator, ms};
use crate::facts::ProbeFacts;
use crate::figure::{Figure, Provenance};
use crate::graph::Graph;
use crate::units_fmt;
use cutover_lang::{ActionKind, RecordType, Runbook, StepId, WaitFor, ZoneId};
use std::collections::HashMap;

/// One step on the timeline. Times are milliseconds relative to T0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub id: StepId,
    pub name: String,
    /// The kind keyword, e.g. `image.copy`.
    pub kind: &'static str,
    /// The steps it comes `after`.
    pub after: Vec<StepId>,
    /// The declared `at`, relative to T0.
    pub at: Option<i64>,
    /// When the step may begin.
    pub start: i64,
    /// The wait for old TTLs to expire before a `dns.switch` or `dns.remove` acts.
    pub ttl_wait: Option<TtlWait>,
    /// A replicating `db.sync` whose end its freeze step holds: that step,
    /// and the final verification's milliseconds after it.
    pub held_by_freeze: Option<(StepId, i64)>,
    /// When the action begins: `start`, or the end of the TTL wait.
    pub act_start: i64,
    pub end: i64,
    /// The action's duration (without the TTL wait).
    pub duration: Figure,
    /// The start depends on an unknown duration: the real one can only be later.
    pub start_at_least: bool,
    /// The end depends on an unknown duration: the real one can only be later.
    pub at_least: bool,
    /// How much later the step could end without moving the plan's end.
    pub slack: i64,
    pub critical: bool,
    /// Scheduled with `at` after the window closes (or after such a step):
    /// a follow-up, not part of the cutover's fit.
    pub after_window: bool,
    /// Full-copy estimate and pre-copy of a copy step.
    pub copy: Option<CopyEstimate>,
    /// Where the step is written (its findings point inside it).
    pub span: cutover_lang::Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlWait {
    pub start: i64,
    pub end: i64,
    pub basis: String,
}

/// When a `dns.switch` or `dns.remove` becomes safe: every cache has
/// dropped the old TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchSafety {
    pub step: StepId,
    /// `wiki.maemo.org A`
    pub record: String,
    /// Earlier `dns.ttl` steps of this record (not restores).
    pub lowered_by: Vec<StepId>,
    /// The lowest TTL those steps set, in milliseconds.
    pub lowered_ttl: Option<i64>,
    /// `None` when never lowered, or when a previous TTL is unknown.
    pub earliest_safe: Option<i64>,
    pub provenance: Provenance,
    pub basis: String,
}

pub struct Schedule {
    pub steps: Vec<PlannedStep>,
    pub switches: Vec<SwitchSafety>,
    pub critical_path: Vec<StepId>,
    /// When the last step of the cutover ends (follow-ups after the window excluded).
    pub end: i64,
    pub end_at_least: bool,
    /// When the last step of all ends.
    pub last_end: i64,
}

type RecordKey<'a> = (ZoneId, &'a str, RecordType);

/// The fully qualified name of a record: `wiki.maemo.org`.
pub fn fqdn(runbook: &Runbook, zone: ZoneId, name: &str) -> String {
    let zone = &runbook.zone(zone).name;
    match name {
        "@" => zone.clone(),
        n if n.ends_with('.') => n.trim_end_matches('.').to_string(),
        n => format!("{n}.{zone}"),
    }
}

/// The TTL a record had before a `dns.ttl` step changed it: declared
/// (`was`), or probed from the live servers.
pub fn previous_ttl(
    runbook: &Runbook,
    facts: Option<&ProbeFacts>,
    step: StepId,
    name: &str,
) -> Option<(i64, Provenance)> {
    let ActionKind::DnsTtl {
        zone,
        rtype,
        previous_ttl,
        ..
    } = &runbook.step(step).action.kind
    else {
        return None;
    };
    if let Some(was) = previous_ttl {
        return Some((ms(*was), Provenance::Declared));
    }
    facts
        .and_then(|f| f.live_ttl(&runbook.zone(*zone).name, name, *rtype))
        .map(|ttl| (ms(ttl), Provenance::Probed))
}

/// Whether a `dns.ttl` step raises the TTL (a restore) rather than lowering it.
pub fn is_raise(runbook: &Runbook, facts: Option<&ProbeFacts>, step: StepId, name: &str) -> bool {
    let ActionKind::DnsTtl { ttl, .. } = &runbook.step(step).action.kind else {
        return false;
    };
    previous_ttl(runbook, facts, step, name).is_some_and(|(was, _)| was < ms(*ttl))
}

struct TtlEdge {
    lowering: StepId,
    /// The previous TTL, when known.
    lag: Option<(i64, Provenance)>,
}

pub fn schedule(
    runbook: &Runbook,
    facts: Option<&ProbeFacts>,
    graph: &Graph,
    estimator: &Estimator,
    t0: Option<chrono::DateTime<chrono::Utc>>,
    window_end: Option<i64>,
    not_before: Option<i64>,
) -> Schedule {
    let n = runbook.steps.len();
    let mut ttl_steps: HashMap<RecordKey, Vec<StepId>> = HashMap::new();
    for (i, step) in runbook.steps.iter().enumerate() {
        if let ActionKind::DnsTtl {
            zone, names, rtype, ..
        } = &step.action.kind
        {
            for name in names {
                ttl_steps
                    .entry((*zone, name.as_str(), *rtype))
                    .or_default()
                    .push(StepId(i));
            }
        }
    }

    // Lowerings of the switched record that are ordered before each switch.
    let mut ttl_edges: HashMap<StepId, Vec<TtlEdge>> = HashMap::new();
    let mut switch_lowerings: Vec<(StepId, Vec<StepId>)> = Vec::new();
    for (i, step) in runbook.steps.iter().enumerate() {
        let Some((zone, name, rtype)) = step.action.kind.retired_record() else {
            continue;
        };
        let switch = StepId(i);
        let candidates: Vec<StepId> = ttl_steps
            .get(&(zone, name, rtype))
            .map(|ls| {
                ls.iter()
                    .copied()
                    .filter(|&l| !is_raise(runbook, facts, l, name))
                    .filter(|&l| {
                        if l.0 < i && graph.rank[l.0] < graph.rank[i] {
                            true
                        } else if l.0 < i {
                            !graph.reaches(switch, l)
                        } else {
                            graph.reaches(l, switch)
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let edges = candidates
            .iter()
            .map(|&l| TtlEdge {
                lowering: l,
                lag: previous_ttl(runbook, facts, l, name),
            })
            .collect();
        ttl_edges.insert(switch, edges);
        switch_lowerings.push((switch, candidates));
    }

    // A run starts in time for its earliest `at` (T0 at the latest), and a
    // step with no `at` starts as soon as its predecessors are done, before
    // T0 too: as the engine runs it.
    // A rehearsal starts at `not_before`: earlier `at` times are past.
    let ats: Vec<Option<i64>> = runbook
        .steps
        .iter()
        .map(|s| {
            s.at.and_then(|a| a.offset_from(t0))
                .map(|at| at.saturating_mul(1000))
                .map(|at| not_before.map_or(at, |nb| at.max(nb)))
        })
        .collect();
    let run_start = not_before.unwrap_or_else(|| ats.iter().flatten().copied().fold(0, i64::min));
    let mut planned: Vec<Option<PlannedStep>> = vec![None; n];
    let mut safety: HashMap<StepId, SwitchSafety> = HashMap::new();
    for &id in &graph.order {
        let step = runbook.step(id);
        let at = ats[id.0];
        let mut start = at.unwrap_or(run_start);
        let mut at_least = false;
        let mut after_window = window_end.is_some_and(|w| at.is_some_and(|at| at >= w));
        for p in &graph.preds[id.0] {
            if let Some(pred) = &planned[p.0] {
                start = start.max(pred.end);
                at_least |= pred.at_least;
                after_window |= pred.after_window;
            }
        }
        let mut act_start = start;
        let mut ttl_wait = None;
        if let Some(edges) = ttl_edges.get(&id) {
            let s = switch_safety(runbook, id, edges, &planned);
            if let Some(safe) = s.earliest_safe
                && safe > start
            {
                act_start = safe;
                ttl_wait = Some(TtlWait {
                    start,
                    end: safe,
                    basis: s.basis.clone(),
                });
            }
            for e in edges {
                if let Some(l) = &planned[e.lowering.0] {
                    at_least |= l.at_least && l.end + e.lag.map_or(0, |x| x.0) >= start;
                }
            }
            safety.insert(id, s);
        }
        let duration = match estimator.step(id, step) {
            Some(figure) => figure,
            None => match &step.action.kind {
                ActionKind::Wait(WaitFor::Until(until)) => {
                    match until.offset_from(t0).map(|u| u.saturating_mul(1000)) {
                        Some(u) => Figure::new(
                            (u - act_start).max(0),
                            Provenance::Declared,
                            format!("wait until {}", units_fmt::offset_ms(u)),
                        ),
                        None => Figure::unknown(
                            "wait until an absolute time, but the runbook has no window",
                        ),
                    }
                }
                _ => Figure::unknown("no estimate"),
            },
        };
        let start_at_least = at_least;
        at_least |= duration.ms.is_none();
        let (duration, held_by_freeze) = match freeze_gate(step, &planned, facts) {
            Some((gate, size)) => held_to_freeze(duration, act_start, gate, size),
            None => (duration, None),
        };
        let end = act_start.saturating_add(duration.ms_or_zero());
        planned[id.0] = Some(PlannedStep {
            id,
            name: step.name.clone(),
            kind: step.action.kind.keyword(),
            after: graph.preds[id.0].clone(),
            at,
            start,
            start_at_least,
            ttl_wait,
            held_by_freeze,
            act_start,
            end,
            duration,
            at_least,
            slack: 0,
            critical: false,
            after_window,
            copy: estimator.copy(id, step),
            span: step.span,
        });
    }
    let mut steps: Vec<PlannedStep> = planned.into_iter().flatten().collect();
    steps.sort_by_key(|s| s.id);

    let last_end = steps.iter().map(|s| s.end).max().unwrap_or(0);
    let end = steps
        .iter()
        .filter(|s| !s.after_window)
        .map(|s| s.end)
        .max()
        .unwrap_or(last_end);
    let end_at_least = steps
        .iter()
        .any(|s| !s.after_window && s.end == end && s.at_least);
    compute_slack(&mut steps, graph, &ttl_edges, end);
    let critical_path = critical_path(&steps, graph, &ttl_edges, end);
    for id in &critical_path {
        steps[id.0].critical = true;
    }
    let mut switches: Vec<SwitchSafety> = switch_lowerings
        .into_iter()
        .filter_map(|(id, _)| safety.remove(&id))
        .collect();
    switches.sort_by_key(|s| (steps[s.step.0].start, s.step));
    Schedule {
        steps,
        switches,
        critical_path,
        end,
        end_at_least,
        last_end,
    }
}

/// The freeze step of a replicating `db.sync`, once planned, and the
/// sync's size (declared, or else probed).
fn freeze_gate<'p>(
    step: &cutover_lang::Step,
    planned: &'p [Option<PlannedStep>],
    facts: Option<&ProbeFacts>,
) -> Option<(&'p PlannedStep, Option<cutover_lang::units::Size>)> {
    let ActionKind::DbReplicate {
        freeze: Some(gate),
        size,
        from,
        ..
    } = &step.action.kind
    else {
        return None;
    };
    let size = crate::estimate::replicated_size(*size, from, facts).map(|(size, _)| size);
    Some((planned.get(gate.0)?.as_ref()?, size))
}

/// A replicating `db.sync` is verified only once its freeze step is done:
/// it lasts until the later of its bulk copy's end and the freeze step's
/// end plus the final catch-up and comparison.
fn held_to_freeze(
    bulk: Figure,
    act_start: i64,
    gate: &PlannedStep,
    size: Option<cutover_lang::units::Size>,
) -> (Figure, Option<(StepId, i64)>) {
    let last = crate::estimate::db_final_verification(size);
    let verified = gate.end.saturating_add(last.ms_or_zero());
    let copied = act_start.saturating_add(bulk.ms_or_zero());
    if bulk.ms.is_some() && copied >= verified {
        return (bulk, None);
    }
    let basis = format!(
        "{}; replicates until `{}` is done at {}, then {}",
        bulk.basis,
        gate.name,
        units_fmt::offset_ms(gate.end),
        last.basis
    );
    // The final verification is a guess; with the bulk copy's end unknown,
    // the step is marked "at least" (its end can only be later).
    (
        Figure::new((verified - act_start).max(0), Provenance::Guess, basis),
        Some((gate.id, last.ms_or_zero())),
    )
}

fn switch_safety(
    runbook: &Runbook,
    switch: StepId,
    edges: &[TtlEdge],
    planned: &[Option<PlannedStep>],
) -> SwitchSafety {
    let kind = &runbook.step(switch).action.kind;
    let record = match kind.retired_record() {
        Some((zone, name, rtype)) => format!("{} {}", fqdn(runbook, zone, name), rtype.as_str()),
        None => kind.keyword().to_string(),
    };
    let lowered_by: Vec<StepId> = edges.iter().map(|e| e.lowering).collect();
    let lowered_ttl = lowered_by
        .iter()
        .filter_map(|l| match &runbook.step(*l).action.kind {
            ActionKind::DnsTtl { ttl, .. } => Some(ms(*ttl)),
            _ => None,
        })
        .min();
    if edges.is_empty() {
        return SwitchSafety {
            step: switch,
            record,
            lowered_by,
            lowered_ttl,
            earliest_safe: None,
            provenance: Provenance::Unknown,
            basis: format!(
                "the TTL is never lowered before this {}",
                match kind {
                    ActionKind::DnsRemove { .. } => "removal",
                    _ => "switch",
                }
            ),
        };
    }
    let mut safe = i64::MIN;
    let mut provenance = Provenance::Declared;
    let mut parts = Vec::new();
    let mut unknown = Vec::new();
    for e in edges {
        let lowering = &runbook.step(e.lowering).name;
        let Some(l) = &planned[e.lowering.0] else {
            continue;
        };
        match e.lag {
            Some((lag, p)) => {
                safe = safe.max(l.end.saturating_add(lag));
                if p == Provenance::Probed {
                    provenance = Provenance::Probed;
                }
                let how = if p == Provenance::Probed {
                    "probed"
                } else {
                    "was"
                };
                parts.push(format!(
                    "`{lowering}` ends {} + old TTL {} ({how})",
                    units_fmt::offset_ms(l.end),
                    units_fmt::duration_ms(lag)
                ));
            }
            None => unknown.push(format!("`{lowering}`")),
        }
    }
    if !unknown.is_empty() {
        return SwitchSafety {
            step: switch,
            record,
            lowered_by,
            lowered_ttl,
            earliest_safe: None,
            provenance: Provenance::Unknown,
            basis: format!(
                "the TTL before {} is unknown (add `was TTL` or probe it)",
                unknown.join(", ")
            ),
        };
    }
    SwitchSafety {
        step: switch,
        record,
        lowered_by,
        lowered_ttl,
        earliest_safe: Some(safe),
        provenance,
        basis: parts.join("; "),
    }
}

/// Latest finish of each step that keeps the plan's end, minus its end.
fn compute_slack(
    steps: &mut [PlannedStep],
    graph: &Graph,
    ttl_edges: &HashMap<StepId, Vec<TtlEdge>>,
    end: i64,
) {
    let mut latest_finish: Vec<i64> = steps
        .iter()
        .map(|s| if s.after_window { s.end.max(end) } else { end })
        .collect();
    for &id in graph.order.iter().rev() {
        let s = &steps[id.0];
        let latest_act = latest_finish[id.0] - s.duration.ms_or_zero();
        for p in &graph.preds[id.0] {
            latest_finish[p.0] = latest_finish[p.0].min(latest_act);
        }
        for e in ttl_edges.get(&id).map(Vec::as_slice).unwrap_or_default() {
            let lag = e.lag.map_or(0, |x| x.0);
            latest_finish[e.lowering.0] = latest_finish[e.lowering.0].min(latest_act - lag);
        }
        if let Some((gate, last)) = s.held_by_freeze {
            latest_finish[gate.0] = latest_finish[gate.0].min(latest_finish[id.0] - last);
        }
    }
    for s in steps.iter_mut() {
        s.slack = (latest_finish[s.id.0] - s.end).max(0);
    }
}

/// The chain of steps that sets the plan's end, first step first: from the
/// last step to end, back through whatever held each one's start.
fn critical_path(
    steps: &[PlannedStep],
    graph: &Graph,
    ttl_edges: &HashMap<StepId, Vec<TtlEdge>>,
    end: i64,
) -> Vec<StepId> {
    let Some(last) = graph
        .order
        .iter()
        .rev()
        .find(|id| steps[id.0].end == end && !steps[id.0].after_window)
    else {
        return Vec::new();
    };
    let mut path = vec![*last];
    let mut on_path = vec![false; steps.len()];
    on_path[last.0] = true;
    let mut current = *last;
    loop {
        let s = &steps[current.0];
        let binding = if let Some((gate, _)) = s.held_by_freeze {
            Some(gate)
        } else if s.ttl_wait.is_some() {
            ttl_edges.get(&current).and_then(|edges| {
                edges
                    .iter()
                    .filter(|e| steps[e.lowering.0].end + e.lag.map_or(0, |x| x.0) == s.act_start)
                    .map(|e| e.lowering)
                    .next()
            })
        } else if s.at.is_some_and(|at| at == s.start) {
            None
        } else {
            graph.preds[current.0]
                .iter()
                .copied()
                .filter(|p| steps[p.0].end == s.start)
                .max_by_key(|p| graph.rank[p.0])
        };
        match binding {
            Some(b) if !on_path[b.0] => {
                on_path[b.0] = true;
                path.push(b);
                current = b;
            }
            _ => break,
        }
    }
    path.reverse();
    path
}
