//! Calibration from rehearsals (`cutover plan FILE --calibrate STATE.db`):
//! what earlier runs of the same runbook measured replaces the planner's
//! estimates. A copy measured itself takes what it took, another the
//! throughput measured between the same two hosts; DNS steps take the time
//! their zone took to serve a change at every verify server, gates
//! (`manual`) and `exec` steps (and checks) what the same step took. Every calibrated figure has the provenance `measured`
//! and names the run it came from.
//!
//! The planner does no IO: whoever reads the state files fills
//! [`RunMeasures`].

use crate::figure::{Figure, Provenance};
use crate::units_fmt;
use cutover_lang::{ActionKind, Runbook, Step};

/// What one earlier run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMeasures {
    /// Names the run in every basis, e.g. `rehearsal.db run 1 (2026-12-01 18:40 UTC)`.
    pub label: String,
    pub steps: Vec<StepMeasure>,
}

/// One step of an earlier run that acted and was done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepMeasure {
    pub name: String,
    /// From its first act to done (the act and its verification), seconds.
    pub secs: f64,
    /// For a copy: what it moved, by its own account.
    pub copy: Option<CopyMeasure>,
    /// For a DNS step: when each verify server first served the change,
    /// seconds after the update.
    pub dns_lags: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CopyMeasure {
    /// The source's size.
    pub bytes: u64,
    /// The copy's own duration, seconds.
    pub secs: f64,
    /// A full copy (nothing reused from an earlier one): its throughput
    /// holds for any full copy between the same hosts.
    pub full: bool,
}

/// The measurements of one or more runs, ready for the planner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    pub runs: Vec<RunMeasures>,
}

/// One measurement with the run it came from.
struct Sample<'a> {
    run: &'a str,
    step: &'a StepMeasure,
}

impl Calibration {
    fn samples<'a>(&'a self, keep: impl Fn(&StepMeasure) -> bool + 'a) -> Vec<Sample<'a>> {
        self.runs
            .iter()
            .flat_map(|r| {
                r.steps.iter().map(move |s| Sample {
                    run: &r.label,
                    step: s,
                })
            })
            .filter(|s| keep(s.step))
            .collect()
    }

    /// The measured duration of `step`, when the runs measured what it
    /// does. `size` is a copy's source size; `delta`: the copy comes after
    /// an earlier copy of the same source (what it takes is what the same
    /// step took, not a full copy's time).
    pub fn step(
        &self,
        runbook: &Runbook,
        step: &Step,
        size: Option<u64>,
        delta: bool,
    ) -> Option<Figure> {
        match &step.action.kind {
            ActionKind::ImageCopy { from, to, .. } | ActionKind::DbSync { from, to, .. } => {
                let pair = (
                    runbook.host(from.host).name.as_str(),
                    runbook.host(to.host).name.as_str(),
                );
                self.copy(runbook, step, pair, size, delta)
                    .or_else(|| self.same_step(step))
            }
            ActionKind::DnsTtl { zone, .. }
            | ActionKind::DnsSwitch { zone, .. }
            | ActionKind::DnsAdd { zone, .. }
            | ActionKind::DnsRemove { zone, .. } => {
                self.dns(runbook, runbook.zone(*zone).name.as_str())
            }
            ActionKind::Wait(_) => None,
            _ => self.same_step(step),
        }
    }

    /// What the same step took, first act to done.
    fn same_step(&self, step: &Step) -> Option<Figure> {
        let same = self.samples(|s| s.name == step.name);
        let mean = mean(same.iter().map(|s| s.step.secs))?;
        Some(Figure::new(
            round(mean),
            Provenance::Measured,
            format!("measured {}", from_runs(&same, |s| s.step.secs)),
        ))
    }

    /// A copy: what the same step took, when it was measured (its source,
    /// with the zeros and holes it skips, is the same); else its size over
    /// the throughput measured between the same two hosts (full copies);
    /// a delta copy never measured is not calibrated.
    fn copy(
        &self,
        runbook: &Runbook,
        step: &Step,
        (from, to): (&str, &str),
        size: Option<u64>,
        delta: bool,
    ) -> Option<Figure> {
        let host_of = |name: &str| {
            runbook
                .steps
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| match &s.action.kind {
                    ActionKind::ImageCopy { from, to, .. }
                    | ActionKind::DbSync { from, to, .. } => Some((
                        runbook.host(from.host).name.as_str(),
                        runbook.host(to.host).name.as_str(),
                    )),
                    _ => None,
                })
        };
        let own = self
            .samples(|s| s.name == step.name)
            .iter()
            .find_map(|s| s.step.copy);
        if own.is_some() {
            return self.same_step(step);
        }
        if delta {
            return None;
        }
        let pair = self.samples(|s| {
            s.copy.is_some_and(|c| c.full && c.secs > 0.0) && host_of(&s.name) == Some((from, to))
        });
        let (bytes, secs) = pair
            .iter()
            .filter_map(|s| s.step.copy)
            .fold((0u64, 0.0f64), |(b, t), c| {
                (b.saturating_add(c.bytes), t + c.secs)
            });
        if secs <= 0.0 || bytes == 0 {
            return None;
        }
        let rate = bytes as f64 / secs;
        let size = size.or(own.map(|c| c.bytes))?;
        let runs: Vec<&str> = dedup(pair.iter().map(|s| s.run));
        Some(Figure::new(
            round(size as f64 / rate),
            Provenance::Measured,
            format!(
                "{} at {}/s measured from {from} to {to} ({} in {}; {})",
                units_fmt::size(size),
                units_fmt::size(rate as u64),
                units_fmt::size(bytes),
                units_fmt::duration_ms(round(secs)),
                runs.join(", ")
            ),
        ))
    }

    /// A DNS step of `zone`: the mean time its DNS steps took from the
    /// update to every verify server serving it, with each server's lag.
    fn dns(&self, runbook: &Runbook, zone: &str) -> Option<Figure> {
        let in_zone = |name: &str| {
            runbook.steps.iter().any(|s| {
                s.name == name
                    && matches!(&s.action.kind,
                        ActionKind::DnsTtl { zone: z, .. }
                            | ActionKind::DnsSwitch { zone: z, .. }
                            | ActionKind::DnsAdd { zone: z, .. }
                            | ActionKind::DnsRemove { zone: z, .. }
                            if runbook.zone(*z).name == zone)
            })
        };
        let samples = self.samples(|s| in_zone(&s.name));
        let mean_secs = mean(samples.iter().map(|s| s.step.secs))?;
        let mut servers: Vec<(&str, Vec<f64>)> = Vec::new();
        for s in &samples {
            for (server, lag) in &s.step.dns_lags {
                match servers.iter_mut().find(|(name, _)| name == server) {
                    Some((_, lags)) => lags.push(*lag),
                    None => servers.push((server, vec![*lag])),
                }
            }
        }
        let lags: Vec<String> = servers
            .iter()
            .map(|(server, lags)| {
                format!(
                    "{server} {}",
                    units_fmt::duration_ms(round(mean(lags.iter().copied()).unwrap_or_default()))
                )
            })
            .collect();
        let lag_text = if lags.is_empty() {
            String::new()
        } else {
            format!("; first served after {}", lags.join(", "))
        };
        Some(Figure::new(
            round(mean_secs),
            Provenance::Measured,
            format!(
                "{zone}: update to verified at every server measured {}{lag_text}",
                from_runs(&samples, |s| s.step.secs)
            ),
        ))
    }
}

/// `3.2s (run A)` or `mean 3.6s of 3 (run A 3.1s, run B 4.1s, ...)`.
fn from_runs(samples: &[Sample<'_>], secs: impl Fn(&Sample<'_>) -> f64) -> String {
    let text = |secs: f64| units_fmt::duration_ms(round(secs));
    match samples {
        [one] => format!(
            "{} ({}, step `{}`)",
            text(secs(one)),
            one.run,
            one.step.name
        ),
        many => format!(
            "mean {} of {} ({})",
            text(mean(many.iter().map(&secs)).unwrap_or_default()),
            many.len(),
            many.iter()
                .map(|s| format!("{} `{}` {}", s.run, s.step.name, text(secs(s))))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

/// Seconds as the planner's milliseconds, at least 1 for anything that
/// took time.
fn round(secs: f64) -> i64 {
    if secs > 0.0 {
        ((secs * 1000.0).round() as i64).max(1)
    } else {
        0
    }
}

fn dedup<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Whether a calibrated figure differs enough from the estimate it
/// replaced to be pointed out: by more than a quarter and 30 s (both in
/// milliseconds).
pub fn large_difference(measured: i64, estimate: i64) -> bool {
    let diff = (measured - estimate).abs();
    diff > 30_000 && diff * 4 > estimate.max(measured)
}
