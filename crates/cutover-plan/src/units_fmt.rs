//! How the planner writes durations, offsets from T0, sizes and bandwidths:
//! the same compact forms a runbook author writes (`2h30m`, `T-48h`, `900 GB`).

use chrono::{DateTime, Utc};

/// `1d2h`, `2h30m`, `7m12s`, `45s`, `0s` — at most two units, rounded down.
pub fn duration(secs: i64) -> String {
    duration_ms(secs.saturating_mul(1000))
}

/// A duration given in milliseconds, as [`duration`] writes it, except that
/// under 10 s it keeps its precision: `3.2s`, `0.34s` (`3s` when whole).
/// The planner's figures are milliseconds; this is how every format shows them.
pub fn duration_ms(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    if abs < 10_000 && !abs.is_multiple_of(1000) {
        let text = if abs < 1000 {
            // Hundredths under a second, at least 0.01s for anything that took time.
            format!("{:.2}", (abs.div_ceil(10).max(1)) as f64 / 100.0)
        } else {
            format!("{:.1}", abs as f64 / 1000.0)
        };
        let text = text.trim_end_matches('0').trim_end_matches('.');
        return format!("{sign}{text}s");
    }
    let s = abs / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (sec, "s")]
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".to_string()
    } else {
        format!("{sign}{}", parts.concat())
    }
}

/// `T0`, `T+2h30m`, `T-48h`.
pub fn offset(secs: i64) -> String {
    offset_ms(secs.saturating_mul(1000))
}

/// [`offset`] of an offset in milliseconds (`T+3.2s`).
pub fn offset_ms(ms: i64) -> String {
    match ms {
        0 => "T0".to_string(),
        s if s > 0 => format!("T+{}", duration_ms(s)),
        s => format!("T-{}", duration_ms(-s)),
    }
}

/// `2013-03-14 17:00 UTC` (seconds shown only when not zero).
pub fn utc(t: DateTime<Utc>) -> String {
    if t.timestamp() % 60 == 0 {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }
}

/// T0 + `ms` milliseconds, when T0 is known.
pub fn at_ms(t0: Option<DateTime<Utc>>, ms: i64) -> Option<DateTime<Utc>> {
    t0.and_then(|t0| t0.checked_add_signed(chrono::TimeDelta::try_milliseconds(ms)?))
}

/// Milliseconds as JSON seconds: a whole number when whole (`120`), else
/// with its milliseconds (`3.19`). Every `_s` field of the plan's JSON.
pub fn json_secs(ms: i64) -> serde_json::Value {
    if ms % 1000 == 0 {
        serde_json::Value::from(ms / 1000)
    } else {
        serde_json::Value::from(ms as f64 / 1000.0)
    }
}

/// `900 GB`, `1.5 TB`, `20 MB`, `512 B` (powers of 1000, as link speeds are).
pub fn size(bytes: u64) -> String {
    scaled(bytes as f64, 1000.0, &["B", "KB", "MB", "GB", "TB", "PB"])
}

/// `8.7 MiB`, `64 MiB`, `2.0 GiB`, `512 B` (powers of 1024): sizes of
/// files and copies in reports and on the terminal.
pub fn size_iec(bytes: u64) -> String {
    scaled(
        bytes as f64,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB"],
    )
}

/// `1 Gbit/s`, `100 Mbit/s`.
pub fn bandwidth(bits_per_sec: u64) -> String {
    scaled(
        bits_per_sec as f64,
        1000.0,
        &["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"],
    )
}

fn scaled(mut value: f64, base: f64, units: &[&str]) -> String {
    let mut unit = 0;
    while value >= base && unit + 1 < units.len() {
        value /= base;
        unit += 1;
    }
    let text = if value.fract().abs() < 0.05 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    };
    format!("{text} {}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_two_units_at_most() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(7200), "2h");
        assert_eq!(duration(9000), "2h30m");
        assert_eq!(duration(93_784), "1d2h");
        assert_eq!(duration(86_400 + 59), "1d");
    }

    #[test]
    fn durations_under_ten_seconds_keep_their_precision() {
        assert_eq!(duration_ms(3190), "3.2s");
        assert_eq!(duration_ms(3000), "3s");
        assert_eq!(duration_ms(9_960), "10s");
        assert_eq!(duration_ms(340), "0.34s");
        assert_eq!(duration_ms(101), "0.11s");
        assert_eq!(duration_ms(1), "0.01s");
        assert_eq!(duration_ms(-2500), "-2.5s");
        assert_eq!(duration_ms(12_700), "12s");
        assert_eq!(duration_ms(150_500), "2m30s");
        assert_eq!(offset_ms(3190), "T+3.2s");
        assert_eq!(json_secs(120_000), serde_json::json!(120));
        assert_eq!(json_secs(3190), serde_json::json!(3.19));
    }

    #[test]
    fn offsets_are_relative_to_t0() {
        assert_eq!(offset(0), "T0");
        assert_eq!(offset(-172_800), "T-2d");
        assert_eq!(offset(5400), "T+1h30m");
    }

    #[test]
    fn sizes_and_bandwidths_scale() {
        assert_eq!(size(900_000_000_000), "900 GB");
        assert_eq!(size(1_500_000_000_000), "1.5 TB");
        assert_eq!(size_iec(9_123_840), "8.7 MiB");
        assert_eq!(size_iec(64 << 20), "64 MiB");
        assert_eq!(size_iec(512), "512 B");
        assert_eq!(bandwidth(1_000_000_000), "1 Gbit/s");
        assert_eq!(bandwidth(100_000_000), "100 Mbit/s");
    }
}
