//! The plan a run is judged against (`run_plans`, one row per run, from
//! schema version 3): whether the run is a rehearsal, the instant planned
//! offsets count from, the reviewed plan it was bound to (`run --plan`),
//! and each step's planned start and end. Written with the run, in the
//! same transaction; a run without a row was planned from its runbook
//! alone, as before version 3.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a run was planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunPlan {
    /// A rehearsal (`--t0 now`): judged against its plan re-based at the
    /// run's start, not against the window.
    pub rehearsal: bool,
    /// The instant the steps' offsets count from.
    pub origin: DateTime<Utc>,
    /// The reviewed plan the run was bound to, if any.
    pub reviewed: Option<ReviewedPlanRef>,
    pub steps: Vec<PlannedSpan>,
}

/// Which reviewed plan (`cutover plan --out`) a run held to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewedPlanRef {
    /// The file as given to `run --plan`.
    pub file: String,
    /// blake3 of the file's bytes.
    pub hash: String,
    /// When the plan was made (RFC 3339).
    pub made_at: String,
    /// When its facts were probed (RFC 3339), if it was probed.
    pub probed_at: Option<String>,
}

/// One step's planned time, in milliseconds from [`RunPlan::origin`]
/// (stored as seconds, `start_s` and `end_s`, with their milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedSpan {
    pub name: String,
    #[serde(rename = "start_s", with = "secs")]
    pub start_ms: i64,
    #[serde(rename = "end_s", with = "secs")]
    pub end_ms: i64,
    /// Where the duration comes from (`declared`, `estimated`, `probed`,
    /// `measured`, `guess`, `unknown`).
    pub source: String,
}

/// Milliseconds as JSON seconds: whole (`120`, as rows before
/// milliseconds were kept) or with a fraction (`3.19`).
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        if ms % 1000 == 0 {
            s.serialize_i64(ms / 1000)
        } else {
            s.serialize_f64(*ms as f64 / 1000.0)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let secs = f64::deserialize(d)?;
        Ok((secs * 1000.0).round() as i64)
    }
}

pub(crate) fn insert(tx: &rusqlite::Connection, run: i64, plan: &RunPlan) -> rusqlite::Result<()> {
    let steps = serde_json::to_string(&plan.steps)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let reviewed = plan.reviewed.as_ref();
    tx.execute(
        "INSERT INTO run_plans (run_id, rehearsal, origin, plan_file, plan_hash, plan_made_at, probed_at, steps)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        rusqlite::params![
            run,
            plan.rehearsal,
            plan.origin,
            reviewed.map(|r| &r.file),
            reviewed.map(|r| &r.hash),
            reviewed.map(|r| &r.made_at),
            reviewed.and_then(|r| r.probed_at.as_ref()),
            steps
        ],
    )?;
    Ok(())
}

pub(crate) fn read(c: &rusqlite::Connection, run: i64) -> rusqlite::Result<Option<RunPlan>> {
    use rusqlite::OptionalExtension as _;
    c.query_row(
        "SELECT rehearsal, origin, plan_file, plan_hash, plan_made_at, probed_at, steps
         FROM run_plans WHERE run_id = ?1",
        [run],
        |r| {
            let file: Option<String> = r.get(2)?;
            let steps: String = r.get(6)?;
            let steps = serde_json::from_str(&steps).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    6,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?;
            Ok(RunPlan {
                rehearsal: r.get(0)?,
                origin: r.get(1)?,
                reviewed: match file {
                    Some(file) => Some(ReviewedPlanRef {
                        file,
                        hash: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                        made_at: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                        probed_at: r.get(5)?,
                    }),
                    None => None,
                },
                steps,
            })
        },
    )
    .optional()
}
