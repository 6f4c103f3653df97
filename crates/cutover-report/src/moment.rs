//! A moment of a run as every format shows it: its UTC time and its offset
//! from T0, and how a UTC time reads in the human formats. Its own module,
//! because the model, the sessions and the text helpers all use it.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A moment with its offset from T0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Moment {
    pub utc: DateTime<Utc>,
    pub offset_s: i64,
}

/// `2013-03-14 17:05:00` (UTC, to the second).
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}
