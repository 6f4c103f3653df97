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
    /// How long `size` takes over this link, rounded up to milliseconds.
    pub fn transfer_time(self, size: Size) -> Duration {
        if self.0 == 0 {
            return Duration::MAX;
        }
        let bits = u128::from(size.0) * 8;
        let ms = (bits * 1000).div_ceil(u128::from(self.0));
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
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

    /// The instant it names, given the run's T0 (None: relative, no T0).
    pub fn instant(self, t0: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        match self {
            TimeSpec::Absolute(at) => Some(at),
            TimeSpec::Relative(s) => t0.map(|t0| t0 + chrono::TimeDelta::seconds(s)),
        }
    }
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("K", 1_000),
    ("k", 1_000),
    ("KB", 1_000),
    ("kB", 1_000),
    ("M", 1_000_000),
    ("MB", 1_000_000),
    ("G", 1_000_000_000),
    ("GB", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

const BANDWIDTH_UNITS: &[(&str, u64)] = &[
    ("bit", 1),
    ("bps", 1),
    ("kbit", 1_000),
    ("Kbit", 1_000),
    ("kbps", 1_000),
    ("Mbit", 1_000_000),
    ("Mbps", 1_000_000),
    ("Gbit", 1_000_000_000),
    ("Gbps", 1_000_000_000),
    ("Tbit", 1_000_000_000_000),
    ("Tbps", 1_000_000_000_000),
    ("B/s", 8),
    ("KB/s", 8_000),
    ("kB/s", 8_000),
    ("MB/s", 8_000_000),
    ("GB/s", 8_000_000_000),
    ("TB/s", 8_000_000_000_000),
    ("KiB/s", 8 << 10),
    ("MiB/s", 8 << 20),
    ("GiB/s", 8 << 30),
    ("TiB/s", 8 << 40),
];

/// Splits `1.5GiB` into its number (as a mantissa and a power-of-ten
/// divisor) and its unit.
fn split_number(text: &str) -> Option<(u128, u128, &str)> {
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if number.ends_with('.') || whole.len() + fraction.len() > 30 {
        return None;
    }
    let mut mantissa: u128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa * 10 + u128::from(b - b'0');
    }
    let divisor = 10u128.pow(u32::try_from(fraction.len()).ok()?);
    Some((mantissa, divisor, unit))
}

fn scaled(text: &str, units: &[(&str, u64)], what: &str, examples: &str) -> Result<u64, String> {
    let Some((mantissa, divisor, unit)) = split_number(text) else {
        return Err(format!(
            "`{text}` is not a {what} (write it like {examples})"
        ));
    };
    let Some(&(_, factor)) = units.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "unknown {what} unit `{unit}` in `{text}` (write it like {examples})"
        ));
    };
    let value = mantissa
        .checked_mul(u128::from(factor))
        .map(|v| v / divisor);
    value
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("{what} `{text}` is too large"))
}

impl Size {
    /// Parses `512`, `20K`, `900G`, `1.5T`, `20GiB`.
    pub fn parse(text: &str) -> Result<Size, String> {
        scaled(text, SIZE_UNITS, "size", "`900G`, `20GiB` or `512`").map(Size)
    }
}

impl Bandwidth {
    /// Parses `100Mbit`, `1Gbit`, `80MB/s`, `10MiB/s`.
    pub fn parse(text: &str) -> Result<Bandwidth, String> {
        if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !text.is_empty() {
            return Err(format!(
                "bandwidth `{text}` needs a unit (write it like `1Gbit`, `100Mbit` or `80MB/s`)"
            ));
        }
        scaled(
            text,
            BANDWIDTH_UNITS,
            "bandwidth",
            "`1Gbit`, `100Mbit` or `80MB/s`",
        )
        .map(Bandwidth)
    }
}

/// Parses `30s`, `5m`, `48h`, `2d`, `1h30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("`{text}` is not a duration (write it like `30s`, `5m`, `48h`, `2d` or `1h30m`)")
    };
    if text.is_empty() {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| bad());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    let mut last_rank = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let (rank, factor) = match unit {
            'd' => (1, 86_400),
            'h' => (2, 3_600),
            'm' => (3, 60),
            's' => (4, 1),
            _ => {
                return Err(format!(
                    "unknown duration unit `{unit}` in `{text}` (use d, h, m or s)"
                ));
            }
        };
        if rank <= last_rank {
            return Err(format!(
                "`{text}`: write duration parts once each, largest first (like `1h30m`)"
            ));
        }
        last_rank = rank;
        total = number
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        rest = &rest[digits + 1..];
    }
    Ok(Duration::from_secs(total))
}

/// The canonical text of a duration: `1d`, `1h30m`, `45s`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, factor) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= factor {
            out.push_str(&format!("{}{unit}", secs / factor));
            secs %= factor;
        }
    }
    out
}

impl std::fmt::Display for Size {
    /// The largest unit that represents the size exactly: `900G`, `20GiB`, `512`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let units: [(&str, u64); 8] = [
            ("TiB", 1 << 40),
            ("T", 1_000_000_000_000),
            ("GiB", 1 << 30),
            ("G", 1_000_000_000),
            ("MiB", 1 << 20),
            ("M", 1_000_000),
            ("KiB", 1 << 10),
            ("K", 1_000),
        ];
        for (name, factor) in units {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{name}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for Bandwidth {
    /// The largest unit that represents the bandwidth exactly: `1Gbit`, `640Mbit`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, factor) in [
            ("Tbit", 1_000_000_000_000u64),
            ("Gbit", 1_000_000_000),
            ("Mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{name}", self.0 / factor);
            }
        }
        write!(f, "{}bit", self.0)
    }
}

impl TimeSpec {
    /// Parses a window-relative time: `T0`, `T-48h`, `T+2h30m`.
    pub fn parse_relative(text: &str) -> Result<TimeSpec, String> {
        let bad = || {
            format!(
                "`{text}` is not a time relative to the window (write it like `T0`, `T-48h` or `T+2h30m`)"
            )
        };
        let rest = text.strip_prefix('T').ok_or_else(bad)?;
        if rest == "0" {
            return Ok(TimeSpec::Relative(0));
        }
        let (sign, amount) = if let Some(a) = rest.strip_prefix('-') {
            (-1, a)
        } else if let Some(a) = rest.strip_prefix('+') {
            (1, a)
        } else {
            return Err(bad());
        };
        let secs = parse_duration(amount).map_err(|_| bad())?.as_secs();
        let secs =
            i64::try_from(secs).map_err(|_| format!("`{text}` is too far from the window"))?;
        Ok(TimeSpec::Relative(sign * secs))
    }
}

impl std::fmt::Display for TimeSpec {
    /// `T0`, `T-2d`, `T+1h30m` or `2013-03-14 17:00 UTC`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            TimeSpec::Relative(0) => write!(f, "T0"),
            TimeSpec::Relative(s) => {
                let sign = if s < 0 { '-' } else { '+' };
                write!(
                    f,
                    "T{sign}{}",
                    format_duration(Duration::from_secs(s.unsigned_abs()))
                )
            }
            TimeSpec::Absolute(at) => write!(f, "{}", format_utc(at)),
        }
    }
}

/// `2013-03-14 17:00 UTC` (seconds shown only when not zero).
pub fn format_utc(at: DateTime<Utc>) -> String {
    use chrono::Timelike;
    if at.second() == 0 {
        at.format("%Y-%m-%d %H:%M UTC").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }
}

/// Parses the date and time words of `2013-03-14 17:00 UTC` (the `UTC`
/// word is checked by the caller).
pub fn parse_utc(date: &str, time: &str) -> Result<DateTime<Utc>, String> {
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| format!("`{date}` is not a date (write it like `2013-03-14`)"))?;
    let clock = chrono::NaiveTime::parse_from_str(time, "%H:%M:%S")
        .or_else(|_| chrono::NaiveTime::parse_from_str(time, "%H:%M"))
        .map_err(|_| {
            format!("`{time}` is not a time of day (write it like `17:00` or `17:00:30`)")
        })?;
    Ok(day.and_time(clock).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_si_and_iec() {
        assert_eq!(Size::parse("900G"), Ok(Size(900_000_000_000)));
        assert_eq!(Size::parse("20GiB"), Ok(Size(20 << 30)));
        assert_eq!(Size::parse("1.5T"), Ok(Size(1_500_000_000_000)));
        assert_eq!(Size::parse("512"), Ok(Size(512)));
        assert!(Size::parse("12X").is_err());
        assert!(Size::parse("G").is_err());
        assert!(Size::parse("99999999999999999999T").is_err());
    }

    #[test]
    fn sizes_print_exactly() {
        for text in ["900G", "20GiB", "512", "1500G", "3T"] {
            assert_eq!(
                Size::parse(text).map(|s| s.to_string()),
                Ok(text.to_string())
            );
        }
    }

    #[test]
    fn bandwidths_parse_bits_and_bytes() {
        assert_eq!(Bandwidth::parse("1Gbit"), Ok(Bandwidth(1_000_000_000)));
        assert_eq!(Bandwidth::parse("80MB/s"), Ok(Bandwidth(640_000_000)));
        assert_eq!(
            Bandwidth::parse("10MiB/s"),
            Ok(Bandwidth(8 * 10 * 1024 * 1024))
        );
        assert!(Bandwidth::parse("100").is_err());
        assert_eq!(Bandwidth(640_000_000).to_string(), "640Mbit");
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("30m1h").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
    }

    #[test]
    fn relative_times() {
        assert_eq!(TimeSpec::parse_relative("T0"), Ok(TimeSpec::Relative(0)));
        assert_eq!(
            TimeSpec::parse_relative("T-48h"),
            Ok(TimeSpec::Relative(-172_800))
        );
        assert_eq!(
            TimeSpec::parse_relative("T+2h30m"),
            Ok(TimeSpec::Relative(9_000))
        );
        assert!(TimeSpec::parse_relative("T48h").is_err());
        assert_eq!(TimeSpec::Relative(-172_800).to_string(), "T-2d");
    }
}
