//! How the planner writes durations, offsets from T0, sizes and bandwidths:
//! the same compact forms a runbook author writes (`2h30m`, `T-48h`, `900 GB`).

use chrono::{DateTime, Utc};

/// `1d2h`, `2h30m`, `7m12s`, `45s`, `0s` — at most two units, rounded down.
pub fn duration(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
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
    match secs {
        0 => "T0".to_string(),
        s if s > 0 => format!("T+{}", duration(s)),
        s => format!("T-{}", duration(-s)),
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

/// T0 + `secs`, when T0 is known.
pub fn at(t0: Option<DateTime<Utc>>, secs: i64) -> Option<DateTime<Utc>> {
    t0.and_then(|t0| t0.checked_add_signed(chrono::TimeDelta::try_seconds(secs)?))
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
