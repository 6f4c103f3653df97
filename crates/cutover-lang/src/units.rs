//! Units a sysadmin writes without thinking: sizes, bandwidths, durations
//! and points in time.
//!
//! Textual forms (parsed by the language, printed canonically by the
//! formatter and by plans and reports):
//! - size: `512`, `20K`, `900G`, `20GiB`, `1.5T` — SI (`K`,`M`,`G`,`T` and
//!   `KB`…`TB` are powers of 1000) and IEC (`KiB`…`TiB`, powers of 1024).
//! - bandwidth: `100Mbit`, `1Gbit`, `80MB/s`, `10MiB/s` (bits or bytes per second).
//! - duration: `30s`, `5m`, `48h`, `2d`, `1h30m`; a bare number is seconds.
//! - time: `2013-03-14 17:00 UTC` (absolute) or `T-48h`, `T0`, `T+2h` (window-relative).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Size(pub u64);

/// Bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Bandwidth(pub u64);

impl Bandwidth {
    /// How long `size` takes over this link, rounded up to whole seconds.
    pub fn transfer_time(self, size: Size) -> Duration {
        if self.0 == 0 {
            return Duration::MAX;
        }
        let bits = u128::from(size.0) * 8;
        let secs = bits.div_ceil(u128::from(self.0));
        Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX))
    }
}

/// When a step may start: an absolute UTC instant, or an offset from the
/// window's start T0 (negative before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeSpec {
    Absolute(DateTime<Utc>),
    /// Seconds relative to T0: `T-48h` is -172800.
    Relative(i64),
}

impl TimeSpec {
    /// Seconds relative to T0, given the window start (if any).
    pub fn offset_from(self, t0: Option<DateTime<Utc>>) -> Option<i64> {
        match self {
            TimeSpec::Relative(s) => Some(s),
            TimeSpec::Absolute(at) => t0.map(|t0| (at - t0).num_seconds()),
        }
    }
}
