//! `cutover status`: the state of a run as a table (or JSON): each step's
//! state, planned against actual start, duration, attempts and last
//! evidence, and who holds the coordinator lock.

use super::run::locate;
use chrono::{DateTime, Local, Utc};
use cutover_lang::printable;
use cutover_store::{EventRecord, Phase, StepRecord, StepStatus, Store};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Show the state of a run: a table of steps (state, planned vs actual
/// start, duration, attempts, last evidence). Times are UTC.
///
/// Examples: `cutover status`, `cutover status move.runbook`,
/// `cutover status --state run.db --format json`
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The runbook; its state file is `.cutover/NAME.db` beside it (NAME
    /// from its `runbook NAME` line) unless --state says otherwise.
    /// Default: the one runbook in the current folder.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The state file.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// `text`: a table for people; `json`: one JSON document (the run,
    /// the lock, every step).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    // `table`: its older name, still accepted.
    #[value(alias = "table")]
    Text,
    Json,
}

fn hms(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.format("%m-%d %H:%M:%S").to_string(),
    )
}

fn took(step: &StepRecord) -> String {
    match (step.started_at, step.finished_at) {
        (Some(start), Some(end)) => {
            cutover_engine::describe_duration((end - start).to_std().unwrap_or_default())
        }
        (Some(start), None) => format!(
            "{}…",
            cutover_engine::describe_duration((Utc::now() - start).to_std().unwrap_or_default())
        ),
        _ => "-".to_owned(),
    }
}

/// The manual gates waiting now, with their instructions: a step in its
/// act whose latest event is the `gate` event its kind logs when it starts
/// waiting.
fn waiting_gates(events: &[EventRecord]) -> HashMap<&str, String> {
    let mut latest: HashMap<&str, &EventRecord> = HashMap::new();
    for event in events {
        if let Some(step) = event.step.as_deref() {
            latest.insert(step, event);
        }
    }
    latest
        .into_iter()
        .filter(|(_, e)| e.kind == "gate")
        .map(|(step, e)| {
            let text = e
                .data
                .as_ref()
                .and_then(|d| d["instructions"].as_str())
                .unwrap_or(&e.message);
            (step, text.to_owned())
        })
        .collect()
}

fn state_word(step: &StepRecord, gates: &HashMap<&str, String>) -> String {
    match (step.status, step.phase) {
        (StepStatus::Running, Some(Phase::Act)) if gates.contains_key(step.name.as_str()) => {
            format!("waiting for confirmation: {}", gates[step.name.as_str()])
        }
        (StepStatus::Running, Some(phase)) => {
            format!("running ({})", phase.as_str())
        }
        (status, _) => status.as_str().to_owned(),
    }
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let path = locate(args.file.as_deref(), args.state.as_deref())?.state;
    let store = Store::open_existing(&path)?;
    let Some(run) = store.latest_run()? else {
        anyhow::bail!("{} holds no run", path.display());
    };
    let steps = store.steps(run.id)?;
    let lock = store.lock_holder()?;
    let events = store.events(run.id)?;
    let gates = waiting_gates(&events);
    if args.format == StatusFormat::Json {
        let steps: Vec<serde_json::Value> = steps
            .iter()
            .map(|s| {
                let mut value = serde_json::to_value(s).unwrap_or_default();
                if let Some(text) = gates.get(s.name.as_str()) {
                    value["waiting_for_confirmation"] = serde_json::Value::from(text.as_str());
                }
                value
            })
            .collect();
        let alive = lock.as_ref().map(|holder| !holder.is_stale());
        let doc = serde_json::json!({
            "run": run,
            "lock": lock,
            "coordinator_alive": alive,
            "steps": steps,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "run of `{}` ({}) by {}: {}",
        printable(&run.runbook_name, true),
        printable(&run.runbook_path, true),
        printable(&run.operator, true),
        run.status.as_str()
    );
    println!(
        "started {} UTC ({} local){}",
        run.started_at.format("%Y-%m-%d %H:%M:%S"),
        run.started_at
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S %:z"),
        run.t0.map_or_else(String::new, |t0| format!(
            ", T0 {} UTC",
            t0.format("%Y-%m-%d %H:%M:%S")
        ))
    );
    match &lock {
        Some(holder) if holder.is_stale() => println!(
            "coordinator: {holder} — its process is gone (crashed or killed); `cutover run --take-over` resumes the run"
        ),
        Some(holder) => println!("coordinator: {holder}"),
        None => println!("coordinator: none (not running)"),
    }
    let header = [
        "step",
        "state",
        "planned",
        "started",
        "took",
        "tries",
        "last evidence",
    ];
    // Names, instructions and evidence (what servers answered) are shown,
    // never their control characters.
    let rows: Vec<[String; 7]> = steps
        .iter()
        .map(|s| {
            [
                printable(&s.name, true).into_owned(),
                printable(&state_word(s, &gates), true).into_owned(),
                hms(s.planned_start),
                hms(s.started_at),
                took(s),
                s.attempts.to_string(),
                printable(s.last_evidence.as_deref().unwrap_or_default(), true).into_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 6 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header);
    for row in &rows {
        line(
            [
                &row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6],
            ]
            .map(String::as_str),
        );
    }
    Ok(ExitCode::SUCCESS)
}
