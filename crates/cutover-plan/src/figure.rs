//! A duration with where it comes from (declared, estimated, probed,
//! measured, a guess, or unknown). Its own module, because the estimates
//! and the calibration from earlier runs both make figures.

use serde::Serialize;

/// Where a figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provenance {
    /// Written in the runbook (`expect`, `wait`, `was`).
    Declared,
    /// Computed from declared facts, e.g. `size` over a `link`.
    Estimated,
    /// Computed from facts read from the live world.
    Probed,
    /// A stated default: a guess, to be replaced by an `expect`.
    Guess,
    /// Cannot be computed; the basis says what is missing.
    Unknown,
    /// Measured in an earlier run (`--calibrate`); the basis names the run.
    Measured,
}

impl Provenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Declared => "declared",
            Provenance::Estimated => "estimated",
            Provenance::Probed => "probed",
            Provenance::Guess => "guess",
            Provenance::Unknown => "unknown",
            Provenance::Measured => "measured",
        }
    }
}

/// A duration in milliseconds with its provenance and a one-line basis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// `None` exactly when the provenance is `Unknown`.
    pub ms: Option<i64>,
    pub provenance: Provenance,
    pub basis: String,
}

impl Figure {
    pub fn new(ms: i64, provenance: Provenance, basis: impl Into<String>) -> Self {
        Figure {
            ms: Some(ms),
            provenance,
            basis: basis.into(),
        }
    }

    pub fn unknown(basis: impl Into<String>) -> Self {
        Figure {
            ms: None,
            provenance: Provenance::Unknown,
            basis: basis.into(),
        }
    }

    /// The milliseconds to schedule with: an unknown figure counts as
    /// zero, and every time that depends on it is marked "at least".
    pub fn ms_or_zero(&self) -> i64 {
        self.ms.unwrap_or(0)
    }
}
