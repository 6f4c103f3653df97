//! The order between steps that `after` declares: predecessors, successors,
//! a topological order (in which a `db.sync`'s freeze step also comes
//! before it), and reachability.

use cutover_lang::{ActionKind, Runbook, StepId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub struct Graph {
    pub preds: Vec<Vec<StepId>>,
    pub succs: Vec<Vec<StepId>>,
    /// Every step once; predecessors first, ties in source order. Steps in
    /// a cycle come last, in source order.
    pub order: Vec<StepId>,
    /// Position of each step in `order`.
    pub rank: Vec<usize>,
    /// Steps that are part of (or behind) a dependency cycle.
    pub cyclic: Vec<StepId>,
}

impl Graph {
    pub fn new(runbook: &Runbook) -> Self {
        let n = runbook.steps.len();
        let mut preds = vec![Vec::new(); n];
        let mut succs = vec![Vec::new(); n];
        for (i, step) in runbook.steps.iter().enumerate() {
            for &p in &step.after {
                if p.0 < n && p.0 != i && !preds[i].contains(&p) {
                    preds[i].push(p);
                    succs[p.0].push(StepId(i));
                }
            }
        }
        // A `db.sync ... freeze STEP` ends after its freeze step: the
        // order puts the freeze step first (unless it comes after the
        // sync, a cycle the language reports), without making it a
        // predecessor, since the sync starts before it.
        let mut order_succs = succs.clone();
        let mut missing: Vec<usize> = preds.iter().map(Vec::len).collect();
        for (i, step) in runbook.steps.iter().enumerate() {
            if let ActionKind::DbReplicate {
                freeze: Some(gate), ..
            } = &step.action.kind
                && gate.0 < n
                && gate.0 != i
                && !preds[i].contains(gate)
                && !follows(&succs, StepId(i), *gate)
            {
                order_succs[gate.0].push(StepId(i));
                missing[i] += 1;
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| missing[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(StepId(i));
            for s in &order_succs[i] {
                missing[s.0] -= 1;
                if missing[s.0] == 0 {
                    ready.push(Reverse(s.0));
                }
            }
        }
        let cyclic: Vec<StepId> = (0..n).filter(|&i| missing[i] > 0).map(StepId).collect();
        order.extend(&cyclic);
        let mut rank = vec![0; n];
        for (r, id) in order.iter().enumerate() {
            rank[id.0] = r;
        }
        Graph {
            preds,
            succs,
            order,
            rank,
            cyclic,
        }
    }

    /// Whether `to` comes (transitively) after `from`.
    pub fn reaches(&self, from: StepId, to: StepId) -> bool {
        if from == to || self.rank[from.0] > self.rank[to.0] && self.cyclic.is_empty() {
            return false;
        }
        follows(&self.succs, from, to)
    }
}

/// Whether `to` comes (transitively) after `from` along `succs`.
fn follows(succs: &[Vec<StepId>], from: StepId, to: StepId) -> bool {
    let mut seen = vec![false; succs.len()];
    let mut stack = vec![from];
    while let Some(x) = stack.pop() {
        for &s in &succs[x.0] {
            if s == to {
                return true;
            }
            if !seen[s.0] {
                seen[s.0] = true;
                stack.push(s);
            }
        }
    }
    false
}
