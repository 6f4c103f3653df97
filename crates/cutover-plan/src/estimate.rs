//! Durations of steps, each with where it comes from. A figure the runbook
//! declares is `declared`; one computed from declared facts (size over link)
//! is `estimated`; one computed from probed facts is `probed`; a stated
//! default is a `guess`; and what cannot be computed is `unknown` — never
//! silently zero.

use crate::calibrate::Calibration;
use crate::facts::ProbeFacts;
use crate::figure::{Figure, Provenance};
use crate::units_fmt;
use cutover_lang::units::{Bandwidth, Size};
use cutover_lang::{Action, ActionKind, Endpoint, HostId, Runbook, Step, StepId, WaitFor};
use std::collections::HashMap;
use std::time::Duration;

/// Time allowed for every verify server of a zone to serve a DNS change
/// (an update reaching the secondaries by NOTIFY and transfer).
pub const DNS_PROPAGATION_MS: i64 = 60_000;
/// Default for a `port.*` or `http.check` step without `expect`.
pub const CHECK_DEFAULT_MS: i64 = 30_000;
/// Default for an `exec` step without `expect`.
pub const EXEC_DEFAULT_MS: i64 = 5 * 60_000;
/// Default for a `manual` step without `expect`.
pub const MANUAL_DEFAULT_MS: i64 = 15 * 60_000;
/// Bytes per second a delta copy reads and hashes on both ends (rsync-style
/// signature and diff); the changed data comes on top.
pub const DELTA_SCAN_BYTES_PER_SEC: u64 = 300_000_000;
/// Bytes per second a replicating `db.sync`'s final verification compares
/// (both servers checksum in parallel, in key order), after its freeze.
pub const DB_COMPARE_BYTES_PER_SEC: u64 = 100_000_000;
/// The least a replicating `db.sync`'s final verification is given: the
/// catch-up to zero lag, sequences and the comparison of a small database.
pub const DB_FINAL_MIN_MS: i64 = 10_000;

/// What the planner knows about a copy step (`image.copy`, `db.sync`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyEstimate {
    /// A full copy of the source over the link.
    pub full: Figure,
    /// The earlier copy of the same source to the same destination, which
    /// makes this one a delta copy (`image.copy` only).
    pub precopy: Option<StepId>,
}

/// Pre-computed lookups shared by the estimates of all steps.
pub struct Estimator<'a> {
    runbook: &'a Runbook,
    facts: Option<&'a ProbeFacts>,
    calibration: Option<&'a Calibration>,
    /// For each image copy, the nearest earlier copy with the same endpoints.
    precopy_of: HashMap<StepId, StepId>,
}

/// A runbook's duration in the planner's unit, milliseconds.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl<'a> Estimator<'a> {
    pub fn new(
        runbook: &'a Runbook,
        facts: Option<&'a ProbeFacts>,
        calibration: Option<&'a Calibration>,
    ) -> Self {
        let mut last_copy: HashMap<(&Endpoint, &Endpoint), StepId> = HashMap::new();
        let mut precopy_of = HashMap::new();
        for (i, step) in runbook.steps.iter().enumerate() {
            if let ActionKind::ImageCopy { from, to, .. } = &step.action.kind
                && let Some(earlier) = last_copy.insert((from, to), StepId(i))
            {
                precopy_of.insert(StepId(i), earlier);
            }
        }
        Estimator {
            runbook,
            facts,
            calibration,
            precopy_of,
        }
    }

    /// The duration of a step's action, or `None` for `wait until`, whose
    /// end is a point in time rather than a duration. What earlier runs
    /// measured ([`Calibration`]) comes first: it replaces declared and
    /// estimated figures alike, and the basis says what it replaced.
    pub fn step(&self, id: StepId, step: &Step) -> Option<Figure> {
        let planned = self.planned(id, step);
        let Some(calibration) = self.calibration else {
            return planned;
        };
        let size = match &step.action.kind {
            ActionKind::ImageCopy { from, size, .. } | ActionKind::DbSync { from, size, .. } => {
                size.or_else(|| self.facts.and_then(|f| f.source_size(from)))
                    .map(|s| s.0)
            }
            _ => None,
        };
        let delta = self.precopy_of.contains_key(&id);
        match (calibration.step(self.runbook, step, size, delta), planned) {
            (Some(mut measured), Some(planned)) => {
                if let Some(ms) = planned.ms {
                    measured.basis.push_str(&format!(
                        "; the runbook alone gives {} ({})",
                        units_fmt::duration_ms(ms),
                        planned.provenance.as_str()
                    ));
                }
                Some(measured)
            }
            (measured, planned) => measured.or(planned),
        }
    }

    /// [`Estimator::step`] from the runbook and the probed facts alone.
    pub fn planned(&self, id: StepId, step: &Step) -> Option<Figure> {
        if let Some(expect) = step.expect {
            let mut basis = format!("expect {}", units_fmt::duration_ms(ms(expect)));
            if let Some(copy) = self.copy(id, step)
                && let Some(full) = copy.full.ms
            {
                basis.push_str(&format!(
                    " (a full copy would take {}: {})",
                    units_fmt::duration_ms(full),
                    copy.full.basis
                ));
            }
            return Some(Figure::new(ms(expect), Provenance::Declared, basis));
        }
        match &step.action.kind {
            ActionKind::ImageCopy { .. } | ActionKind::DbSync { .. } => {
                let copy = self.copy(id, step)?;
                Some(match copy.precopy {
                    Some(pre) => self.delta(pre, &copy.full, step),
                    None => copy.full,
                })
            }
            ActionKind::DbReplicate { from, to, size, .. } => {
                let Some((size, provenance)) = replicated_size(*size, from, self.facts) else {
                    return action(&step.action.kind);
                };
                // The bulk copy, then (when nothing holds it longer, such as
                // a freeze step) the final catch-up and comparison.
                let bulk = self.over_link(from.host, to.host, size, provenance);
                let last = db_final_verification(Some(size));
                Some(match bulk.ms {
                    Some(copy) => Figure::new(
                        copy.saturating_add(last.ms_or_zero()),
                        bulk.provenance,
                        format!("bulk copy: {}; then {}", bulk.basis, last.basis),
                    ),
                    None => bulk,
                })
            }
            kind => action(kind),
        }
    }

    /// How long an `undo` takes. Undoing a switch lasts until caches drop
    /// the new value: the propagation allowance plus the lowered TTL.
    pub fn undo(&self, plan: &crate::Plan, id: StepId, undo: &Action) -> Figure {
        match &undo.kind {
            ActionKind::DnsSwitch { .. } => {
                let lowered = plan
                    .switches
                    .iter()
                    .find(|s| s.step == id)
                    .and_then(|s| s.lowered_ttl);
                match lowered {
                    Some(ttl) => Figure::new(
                        DNS_PROPAGATION_MS + ttl,
                        Provenance::Guess,
                        format!(
                            "propagation {} (default) + caches drop the new value after the lowered TTL {}",
                            units_fmt::duration_ms(DNS_PROPAGATION_MS),
                            units_fmt::duration_ms(ttl)
                        ),
                    ),
                    None => Figure::unknown(
                        "caches keep the new value for the record's TTL, which was never lowered",
                    ),
                }
            }
            ActionKind::ImageCopy { from, to, size, .. }
            | ActionKind::DbSync { from, to, size, .. } => {
                let size = size.or(match &self.runbook.step(id).action.kind {
                    ActionKind::ImageCopy { size, .. } | ActionKind::DbSync { size, .. } => *size,
                    _ => None,
                });
                self.transfer(from, to, size, copy_limit(&undo.kind))
            }
            // The replication back catches up and is compared, then removed.
            ActionKind::DbReplicate { size, .. } => {
                db_final_verification(size.or(match &self.runbook.step(id).action.kind {
                    ActionKind::DbReplicate { size, .. } => *size,
                    _ => None,
                }))
            }
            kind => action(kind).unwrap_or_else(|| Figure::unknown("wait until a time")),
        }
    }

    /// Size and link of a copy step; `None` for other kinds.
    pub fn copy(&self, id: StepId, step: &Step) -> Option<CopyEstimate> {
        let (from, to, size) = match &step.action.kind {
            ActionKind::ImageCopy { from, to, size, .. } => (from, to, *size),
            ActionKind::DbSync { from, to, size, .. } => (from, to, *size),
            _ => return None,
        };
        Some(CopyEstimate {
            full: self.transfer(from, to, size, copy_limit(&step.action.kind)),
            precopy: self.precopy_of.get(&id).copied(),
        })
    }

    /// The time to send a whole source over the link between two hosts' sites,
    /// no faster than the copy's `limit RATE`.
    fn transfer(
        &self,
        from: &Endpoint,
        to: &Endpoint,
        size: Option<Size>,
        limit: Option<Bandwidth>,
    ) -> Figure {
        let (size, size_source) = match (size, self.facts.and_then(|f| f.source_size(from))) {
            (Some(size), _) => (size, Provenance::Estimated),
            (None, Some(size)) => (size, Provenance::Probed),
            (None, None) => {
                return Figure::unknown(format!(
                    "size of {}:{} unknown (add `size` or probe it)",
                    self.runbook.host(from.host).name,
                    from.path
                ));
            }
        };
        let figure = self.over_link(from.host, to.host, size, size_source);
        match limit {
            Some(limit) => held_to(figure, size, size_source, limit),
            None => figure,
        }
    }

    /// `size` over the link between the sites of hosts `from` and `to`.
    pub fn over_link(
        &self,
        from: HostId,
        to: HostId,
        size: Size,
        provenance: Provenance,
    ) -> Figure {
        let (a, b) = (self.runbook.host(from), self.runbook.host(to));
        let size_text = match provenance {
            Provenance::Probed => format!("{} (probed)", units_fmt::size(size.0)),
            _ => units_fmt::size(size.0),
        };
        let (Some(site_a), Some(site_b)) = (&a.site, &b.site) else {
            let missing = if a.site.is_none() { &a.name } else { &b.name };
            return Figure::unknown(format!(
                "{size_text}, but host {missing} has no site, so no link applies"
            ));
        };
        let Some(link) = self.runbook.link_between(site_a, site_b) else {
            return Figure::unknown(format!(
                "{size_text}, but no link between {site_a} and {site_b} is declared"
            ));
        };
        if link.bandwidth.0 == 0 {
            return Figure::unknown(format!(
                "{size_text}, but the link {site_a} -> {site_b} has no bandwidth"
            ));
        }
        Figure::new(
            ms(link.bandwidth.transfer_time(size)),
            provenance,
            format!(
                "{size_text} over {} -> {} at {}",
                link.from,
                link.to,
                units_fmt::bandwidth(link.bandwidth.0)
            ),
        )
    }

    /// A copy after a pre-copy of the same source: reads both ends and sends
    /// what changed since.
    fn delta(&self, precopy: StepId, full: &Figure, step: &Step) -> Figure {
        let pre = &self.runbook.step(precopy).name;
        let size = match &step.action.kind {
            ActionKind::ImageCopy { from, size, .. } => {
                size.or_else(|| self.facts.and_then(|f| f.source_size(from)))
            }
            _ => None,
        };
        let Some(size) = size else {
            return Figure::unknown(format!(
                "delta copy after `{pre}`; size unknown (add `size` or probe it)"
            ));
        };
        let scan = u128::from(size.0)
            .saturating_mul(1000)
            .div_ceil(u128::from(DELTA_SCAN_BYTES_PER_SEC));
        let full_text = full
            .ms
            .map(|s| format!("; a full copy would take {}", units_fmt::duration_ms(s)))
            .unwrap_or_default();
        Figure::new(
            i64::try_from(scan).unwrap_or(i64::MAX / 4),
            Provenance::Guess,
            format!(
                "delta copy after `{pre}`: scan {} at {}/s (default) plus the data changed since{full_text}",
                units_fmt::size(size.0),
                units_fmt::size(DELTA_SCAN_BYTES_PER_SEC)
            ),
        )
    }
}

fn default_guess(secs: i64, kind: &str) -> Figure {
    Figure::new(
        secs,
        Provenance::Guess,
        format!(
            "default for {kind} ({}); add `expect`",
            units_fmt::duration_ms(secs)
        ),
    )
}

/// The duration of an action from its kind alone (defaults are guesses);
/// `None` for `wait until`. Copies are estimated by [`Estimator`].
/// The `limit RATE` of a copy, if it has one.
fn copy_limit(kind: &ActionKind) -> Option<Bandwidth> {
    match kind {
        ActionKind::ImageCopy { limit, .. } => *limit,
        _ => None,
    }
}

/// A copy held to `limit RATE` takes at least size / limit, however fast
/// its link.
fn held_to(figure: Figure, size: Size, provenance: Provenance, limit: Bandwidth) -> Figure {
    let at_limit = ms(limit.transfer_time(size));
    if figure.ms.is_some_and(|s| s >= at_limit) {
        return figure;
    }
    Figure::new(
        at_limit,
        provenance,
        format!(
            "{} at its limit {}",
            units_fmt::size(size.0),
            units_fmt::bandwidth(limit.0)
        ),
    )
}

fn action(kind: &ActionKind) -> Option<Figure> {
    Some(match kind {
        ActionKind::DnsTtl { .. }
        | ActionKind::DnsSwitch { .. }
        | ActionKind::DnsAdd { .. }
        | ActionKind::DnsRemove { .. } => Figure::new(
            DNS_PROPAGATION_MS,
            Provenance::Guess,
            format!(
                "propagation allowance {} for every verify server (default)",
                units_fmt::duration_ms(DNS_PROPAGATION_MS)
            ),
        ),
        ActionKind::ImageCopy { .. } | ActionKind::DbSync { .. } => {
            return Some(Figure::unknown("copy without endpoints"));
        }
        ActionKind::PortOpen { .. }
        | ActionKind::PortClosed { .. }
        | ActionKind::HttpCheck { .. }
        | ActionKind::DbUnfollow { .. } => default_guess(CHECK_DEFAULT_MS, "check"),
        ActionKind::Exec { .. } => default_guess(EXEC_DEFAULT_MS, "exec"),
        ActionKind::Manual { .. } => default_guess(MANUAL_DEFAULT_MS, "manual"),
        ActionKind::Wait(WaitFor::Duration(d)) => Figure::new(
            ms(*d),
            Provenance::Declared,
            format!("wait {}", units_fmt::duration_ms(ms(*d))),
        ),
        ActionKind::Wait(WaitFor::Until(_)) => return None,
        ActionKind::DbReplicate { .. } => {
            return Some(Figure::unknown(
                "database replication: the bulk copy's size is unknown (add `size` or `expect`)",
            ));
        }
    })
}

/// The size a replicating `db.sync` copies: its `size` (estimated), else
/// what its source server reported to `--probe` (probed).
pub(crate) fn replicated_size(
    size: Option<Size>,
    from: &cutover_lang::DbServer,
    facts: Option<&ProbeFacts>,
) -> Option<(Size, Provenance)> {
    match size {
        Some(size) => Some((size, Provenance::Estimated)),
        None => facts
            .and_then(|f| f.database_size(from))
            .map(|size| (size, Provenance::Probed)),
    }
}

/// How long a replicating `db.sync`'s final verification takes once its
/// freeze step is done: the catch-up and the comparison of `size` (a guess
/// from the comparison's rate), at least [`DB_FINAL_MIN_MS`].
pub fn db_final_verification(size: Option<Size>) -> Figure {
    match size {
        Some(size) => {
            let compare =
                i64::try_from(size.0 / (DB_COMPARE_BYTES_PER_SEC / 1000)).unwrap_or(i64::MAX / 4);
            Figure::new(
                compare.max(DB_FINAL_MIN_MS),
                Provenance::Guess,
                format!(
                    "catch-up and comparison of {} at {}/s (default)",
                    units_fmt::size(size.0),
                    units_fmt::size(DB_COMPARE_BYTES_PER_SEC)
                ),
            )
        }
        None => Figure::new(
            DB_FINAL_MIN_MS,
            Provenance::Guess,
            format!(
                "catch-up and comparison {} (default; add `size` for more)",
                units_fmt::duration_ms(DB_FINAL_MIN_MS)
            ),
        ),
    }
}
