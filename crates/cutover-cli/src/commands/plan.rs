//! `cutover plan`: the dry-run timeline a team reviews before a cutover —
//! when each step starts and ends, the TTL waits before DNS switches, the
//! critical path, whether it fits the window, and the mistakes the planner
//! can see in advance.

use anyhow::Context as _;
use cutover_lang::{Runbook, Severity, SourceMap, load_file, read_text, render_human};
use cutover_plan::reviewed::{
    FactsText, ProbeRecord, ReviewedPlan, RunbookText, SourceText, Stale,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Show the dry-run timeline of a runbook.
///
/// Prints the plan on stdout and the findings (errors and warnings) on
/// stderr. Every duration says where it comes from: declared, estimated
/// (and from what), probed, a default guess, or unknown.
///
/// With `--out PLAN` the plan is also written as the reviewed plan a run
/// holds to (`cutover run FILE --plan PLAN`): the runbook's hash and text,
/// the probed facts with their time, the schedule and the findings.
///
/// Exits 0 when there are no errors (warnings allowed), 1 with errors
/// (under `--probe` also drift, or a fact that could not be read), 2 when
/// the file cannot be read.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Examples:\n  cutover plan runbooks/maemo-2013.runbook\n  cutover plan runbooks/maemo-2013.runbook --format markdown > plan.md\n  cutover plan runbooks/maemo-2013.runbook --format svg > plan.svg\n  cutover plan runbooks/maemo-2013.runbook --probe --out maemo.plan"
)]
pub struct PlanArgs {
    /// The runbook file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// `text`: table and timeline for a terminal; `markdown`: for a pull
    /// request; `json`: the stable schema of docs/plan-json.md; `svg`: a
    /// Gantt chart.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Read the live state first: current values and TTLs at every verify
    /// server, each zone's NS set and SOA serials, the sizes of copy
    /// sources; show what the run would change, what is already done and
    /// where the live world drifted from what the runbook expects.
    #[arg(long)]
    pub probe: bool,
    /// Also write the reviewed plan here (JSON, written atomically), for
    /// `cutover run FILE --plan PLAN`, which refuses it once the runbook or
    /// the probed facts change.
    #[arg(long, value_name = "PLAN")]
    pub out: Option<PathBuf>,
    /// Replace estimates with what an earlier run of this runbook measured
    /// (a rehearsal's state file; repeatable): copy throughput per host
    /// pair, DNS propagation per zone and server, gate and exec durations.
    #[arg(long, value_name = "STATE")]
    pub calibrate: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
    Svg,
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let color_err = super::use_color(super::Stream::Stderr);
    let color_out = super::use_color(super::Stream::Stdout);
    if let Err(unreadable) = read_text(&args.file) {
        eprint!(
            "{}",
            render_human(&unreadable.sources, &unreadable.diagnostics, color_err)
        );
        return Ok(ExitCode::from(2));
    }
    let loaded = load_file(&args.file);
    let Some(runbook) = &loaded.runbook else {
        eprint!(
            "{}",
            render_human(&loaded.sources, &loaded.diagnostics, color_err)
        );
        return Ok(ExitCode::from(1));
    };
    let probed_at = chrono::Utc::now();
    let probed = if args.probe {
        let mut probed = probe(runbook, &args.file)?;
        probed.facts.problems = probed.problems.clone();
        Some(probed)
    } else {
        None
    };
    let calibration = if args.calibrate.is_empty() {
        None
    } else {
        Some(cutover_plan::Calibration {
            runs: args
                .calibrate
                .iter()
                .map(|state| measured(runbook, state))
                .collect::<anyhow::Result<_>>()?,
        })
    };
    let options = cutover_plan::Options {
        calibration,
        ..cutover_plan::Options::default()
    };
    let plan = cutover_plan::plan_with(runbook, probed.as_ref().map(|p| &p.facts), &options);
    let mut findings = loaded.diagnostics.clone();
    findings.extend(plan.diagnostics.iter().cloned());
    eprint!("{}", render_human(&loaded.sources, &findings, color_err));
    let output = match args.format {
        PlanFormat::Text => cutover_plan::render::text(&plan, &loaded.sources, color_out),
        PlanFormat::Markdown => cutover_plan::render::markdown(&plan, &loaded.sources),
        PlanFormat::Json => cutover_plan::render::json(&plan, &loaded.sources),
        PlanFormat::Svg => cutover_plan::render::svg(&plan),
    };
    print!("{output}");
    let has_errors = findings.iter().any(|d| d.severity == Severity::Error);
    if let Some(out) = args.out.as_ref().filter(|_| has_errors) {
        eprintln!(
            "the plan has errors: no reviewed plan was written to {}",
            out.display()
        );
    } else if let Some(out) = &args.out {
        let probe = probed.as_ref().map(|p| ProbeRecord {
            at: probed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            facts: FactsText::new(runbook, &p.facts),
            problems: p.problems.clone(),
        });
        let json = match args.format {
            PlanFormat::Json => output.clone(),
            _ => cutover_plan::render::json(&plan, &loaded.sources),
        };
        let reviewed = ReviewedPlan::new(
            chrono::Utc::now(),
            runbook_text(runbook, &loaded.sources),
            probe,
            &json,
        )?;
        super::write_atomically(out, reviewed.to_text().as_bytes())?;
        eprintln!(
            "wrote the reviewed plan to {}; run it with `cutover run {} --plan {}`",
            out.display(),
            args.file.display(),
            out.display()
        );
    }
    if probed.is_some() && args.format != PlanFormat::Text {
        // Also beside the findings, for whoever reads only stderr.
        eprintln!("live state (probed):");
        for change in &plan.live {
            eprintln!("  {change}");
        }
    }
    // Drift is an error: the switch's compare-and-swap would be refused.
    // A probe that failed leaves the plan unsure: not a success either.
    let drift = plan
        .live
        .iter()
        .any(|c| c.kind == cutover_plan::ChangeKind::Drift);
    let probe_failed = probed.as_ref().is_some_and(|p| !p.problems.is_empty());
    let errors = drift || has_errors || probe_failed;
    Ok(ExitCode::from(u8::from(errors)))
}

/// Reads the live state a runbook acts on (`--probe`).
fn probe(runbook: &Runbook, file: &Path) -> anyhow::Result<cutover_steps::probe::Probe> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(cutover_steps::probe::probe(runbook, dir)))
}

/// The runbook as a reviewed plan records it: name, hash (as a run
/// records it) and the text of each source file.
fn runbook_text(runbook: &Runbook, sources: &SourceMap) -> RunbookText {
    RunbookText {
        name: runbook.name.clone(),
        hash: cutover_engine::content_hash(sources.files.iter().map(|f| f.text.as_str())),
        files: sources
            .files
            .iter()
            .map(|f| SourceText {
                path: f.path.display().to_string(),
                text: f.text.clone(),
            })
            .collect(),
    }
}

/// A reviewed plan a run may hold to: checked against the runbook and
/// the live world as they are now.
pub(crate) struct Bound {
    pub reference: cutover_store::ReviewedPlanRef,
    /// Each step's planned start and end in the reviewed plan
    /// (milliseconds from T0) and where its duration came from.
    pub spans: Vec<cutover_store::PlannedSpan>,
    /// The facts read again now (when the plan was probed): the run is
    /// planned with them.
    pub facts: Option<cutover_plan::ProbeFacts>,
}

/// `run --plan PLAN`: reads the reviewed plan and refuses it (an error
/// saying what changed) when the runbook at `file` or the probed facts
/// changed since it was made. A run resumed with the very plan it started
/// with is not probed again: it has changed the live world itself.
///
/// `existing` is what the run already in the state file holds to: `None`
/// when there is no run yet, `Some(None)` when it started without a
/// reviewed plan (it cannot be bound midway).
pub(crate) fn bind(
    plan_file: &Path,
    file: &Path,
    existing: Option<Option<&cutover_store::ReviewedPlanRef>>,
) -> anyhow::Result<Bound> {
    let bytes = std::fs::read(plan_file)
        .with_context(|| format!("cannot read the plan {}", plan_file.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let hash = cutover_engine::content_hash([text.as_ref()]);
    let recheck_facts = match existing {
        None => true,
        Some(Some(held)) if held.hash == hash => false,
        Some(Some(held)) => anyhow::bail!(
            "the run in progress holds to another reviewed plan ({}, made {}); nothing was run: resume it with that plan, or start a new run with another --state",
            held.file,
            held.made_at
        ),
        Some(None) => anyhow::bail!(
            "the run in progress started without a reviewed plan and cannot take one midway; nothing was run: resume it without --plan, or start a new run with another --state"
        ),
    };
    let reviewed =
        ReviewedPlan::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", plan_file.display()))?;
    let loaded = load_file(file);
    let Some(runbook) = &loaded.runbook else {
        anyhow::bail!("{}: the runbook has errors", file.display());
    };
    let facts = match (&reviewed.probe, recheck_facts) {
        (Some(_), true) => {
            let probed = probe(runbook, file)?;
            Some(probed.facts)
        }
        _ => None,
    };
    let facts_text = facts.as_ref().map(|f| FactsText::new(runbook, f));
    let stale = reviewed.stale(&runbook_text(runbook, &loaded.sources), facts_text.as_ref());
    if !stale.is_empty() {
        let mut why = format!(
            "the plan {} (made {}) is stale:",
            plan_file.display(),
            reviewed.made_at
        );
        for s in &stale {
            match s {
                Stale::OtherRunbook { planned, given } => why.push_str(&format!(
                    "\n  it is a plan of runbook `{planned}`, not `{given}`"
                )),
                Stale::Runbook { planned, now } => {
                    why.push_str("\n  the runbook changed since:");
                    for (i, after) in now.iter().enumerate() {
                        let before = planned.get(i).map_or("", |f| f.text.as_str());
                        if before == after.text {
                            continue;
                        }
                        why.push_str(&format!("\n    {}:", after.path));
                        for line in similar::TextDiff::from_lines(before, &after.text)
                            .iter_all_changes()
                            .filter(|l| l.tag() != similar::ChangeTag::Equal)
                        {
                            let sign = match line.tag() {
                                similar::ChangeTag::Delete => "-",
                                _ => "+",
                            };
                            why.push_str(&format!(
                                "\n      {sign} {}",
                                line.value().trim_end_matches('\n')
                            ));
                        }
                    }
                    for gone in planned.iter().skip(now.len()) {
                        why.push_str(&format!("\n    {}: no longer included", gone.path));
                    }
                }
                Stale::Facts(changes) => {
                    let at = reviewed.probe.as_ref().map_or("", |p| p.at.as_str());
                    why.push_str(&format!(
                        "\n  the live state changed since it was probed at {at}:"
                    ));
                    for change in changes {
                        why.push_str(&format!("\n    {change}"));
                    }
                }
            }
        }
        why.push_str(&format!(
            "\nnothing was run: make and review a new plan (`cutover plan {}{} --out {}`), then run with it",
            file.display(),
            if reviewed.probe.is_some() { " --probe" } else { "" },
            plan_file.display()
        ));
        anyhow::bail!(why);
    }
    Ok(Bound {
        reference: cutover_store::ReviewedPlanRef {
            file: plan_file.display().to_string(),
            hash,
            made_at: reviewed.made_at.clone(),
            probed_at: reviewed.probe.as_ref().map(|p| p.at.clone()),
        },
        spans: reviewed
            .steps()
            .into_iter()
            .map(
                |(name, start_ms, end_ms, source)| cutover_store::PlannedSpan {
                    name,
                    start_ms,
                    end_ms,
                    source,
                },
            )
            .collect(),
        facts,
    })
}

/// What the run in the state file at `state` measured, for `--calibrate`:
/// each step that acted and was done, from its first act to done; a copy's
/// size and duration by its own account; when each verify server first
/// served a DNS change.
fn measured(runbook: &Runbook, state: &Path) -> anyhow::Result<cutover_plan::RunMeasures> {
    use cutover_store::{Phase, StepStatus};
    let store = cutover_store::Store::open_read_only(state)?;
    let (run, steps, evidence) = store
        .read(|tx| {
            let Some(run) = tx.latest_run()? else {
                return Ok::<_, anyhow::Error>(None);
            };
            let steps = tx.steps(run.id)?;
            let evidence = tx.evidence(run.id)?;
            Ok(Some((run, steps, evidence)))
        })?
        .with_context(|| format!("--calibrate {}: no run in it", state.display()))?;
    if run.runbook_name != runbook.name {
        anyhow::bail!(
            "--calibrate {}: a run of runbook `{}`, not `{}`",
            state.display(),
            run.runbook_name,
            runbook.name
        );
    }
    let latest = |step: &str, phase: Phase| {
        evidence
            .iter()
            .rev()
            .find(|e| e.step == step && e.phase == phase)
            .map(|e| &e.data)
    };
    let seconds = |v: &serde_json::Value| {
        let secs = v.get("secs")?.as_f64()?;
        let nanos = v.get("nanos").and_then(|n| n.as_f64()).unwrap_or(0.0);
        Some(secs + nanos / 1e9)
    };
    let measures = steps
        .iter()
        .filter(|s| s.status == StepStatus::Done)
        .filter_map(|s| {
            let (Some(acted), Some(done)) = (s.first_act_at, s.finished_at) else {
                return None;
            };
            let copy = latest(&s.name, Phase::Act).and_then(|data| {
                Some(cutover_plan::CopyMeasure {
                    bytes: data.get("size")?.as_u64()?,
                    secs: seconds(data.get("duration")?)?,
                    full: data.get("bytes_reused")?.as_u64()? == 0,
                })
            });
            let dns_lags = latest(&s.name, Phase::Verify)
                .and_then(|data| data.get("servers")?.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|server| {
                    Some((
                        server.get("server")?.as_str()?.to_owned(),
                        server.get("lag_seconds")?.as_f64()?,
                    ))
                })
                .collect();
            Some(cutover_plan::StepMeasure {
                name: s.name.clone(),
                secs: (done - acted).num_milliseconds() as f64 / 1000.0,
                copy,
                dns_lags,
            })
        })
        .collect();
    Ok(cutover_plan::RunMeasures {
        label: format!(
            "{} run {} ({})",
            state.display(),
            run.id,
            run.started_at.format("%Y-%m-%d %H:%M UTC")
        ),
        steps: measures,
    })
}
