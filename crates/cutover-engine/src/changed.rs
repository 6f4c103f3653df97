//! One line of what a step changed, for the terminal, the JSON events and
//! whoever else reports a finished step: derived here, in one place, from
//! the evidence its kind recorded (the act's figures, the verification's
//! counts), so every display says the same thing. A kind whose evidence
//! carries no figures known here gets its summary.

use crate::Evidence;
use cutover_lang::{ActionKind, Step};
use serde_json::Value;

/// `41.0 MiB`, `2.0 GiB`, `512 B`: sizes in IEC units, one decimal.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What `step` changed, from the evidence of its act (`act`, none when it
/// did not act in this pass) and of its final observation (`end`).
pub fn what_changed(step: &Step, act: Option<&Evidence>, end: &Evidence) -> String {
    let data = act.map(|e| &e.data);
    let figures = match &step.action.kind {
        ActionKind::ImageCopy { .. } => data.and_then(copy),
        ActionKind::DnsSwitch { rtype, .. } => data.and_then(|d| switch(rtype.as_str(), d)),
        ActionKind::DnsTtl { .. } => data.and_then(ttl),
        ActionKind::DbSync { .. } => tables(&end.data),
        ActionKind::Manual { .. } => confirmed(&end.data),
        _ => None,
    };
    figures.unwrap_or_else(|| act.map_or(&end.summary, |a| &a.summary).clone())
}

/// `41.0 MiB sent, 2.0 GiB reused, patched in place`.
fn copy(data: &Value) -> Option<String> {
    let sent = data["bytes_sent"].as_u64()?;
    let mut parts = vec![format!("{} sent", size(sent))];
    if let Some(reused) = data["bytes_reused"].as_u64().filter(|b| *b > 0) {
        parts.push(format!("{} reused", size(reused)));
    }
    if let Some(skipped) = data["zero_bytes_skipped"].as_u64().filter(|b| *b > 0) {
        parts.push(format!("{} of holes and zeros skipped", size(skipped)));
    }
    if data["in_place"].as_bool() == Some(true) {
        parts.push("patched in place".into());
    }
    if data["resumed"].as_bool() == Some(true) {
        parts.push("resumed a partial copy".into());
    }
    Some(parts.join(", "))
}

/// `A 10.0.0.1 -> 10.0.0.2 at 10.0.0.6:53, serial 2026120104`.
fn switch(rtype: &str, data: &Value) -> Option<String> {
    let (old, new, primary) = (
        data["old"].as_str()?,
        data["new"].as_str()?,
        data["primary"].as_str()?,
    );
    let serial = data["serial"]
        .as_u64()
        .map_or_else(String::new, |s| format!(", serial {s}"));
    Some(if data["swapped"].as_bool() == Some(false) {
        format!("{rtype} already {new} at {primary}{serial}")
    } else {
        format!("{rtype} {old} -> {new} at {primary}{serial}")
    })
}

/// `TTL 6s -> 2s: wiki, talk at 127.0.0.53:5301` (names already at the
/// TTL are said so).
fn ttl(data: &Value) -> Option<String> {
    let primary = data["primary"].as_str()?;
    let changes = data["changes"].as_array()?;
    let mut lowered: Vec<(String, Vec<&str>)> = Vec::new();
    let mut already = Vec::new();
    for change in changes {
        let name = change["name"].as_str()?;
        let new = change["new_ttl"].as_u64()?;
        match change["previous_ttl"].as_u64() {
            Some(old) => {
                let label = format!("TTL {old}s -> {new}s");
                match lowered.iter_mut().find(|(l, _)| *l == label) {
                    Some((_, names)) => names.push(name),
                    None => lowered.push((label, vec![name])),
                }
            }
            None => already.push(name),
        }
    }
    let mut parts: Vec<String> = lowered
        .into_iter()
        .map(|(label, names)| format!("{label}: {}", names.join(", ")))
        .collect();
    if !already.is_empty() {
        parts.push(format!("already at the TTL: {}", already.join(", ")));
    }
    Some(format!("{} at {primary}", parts.join("; ")))
}

/// `3 tables (3802 rows) match`.
fn tables(data: &Value) -> Option<String> {
    let tables = data["destination"].as_array()?;
    let rows: u64 = tables.iter().filter_map(|t| t["rows"].as_u64()).sum();
    let n = tables.len();
    Some(format!(
        "{n} table{} ({rows} row{}) match",
        if n == 1 { "" } else { "s" },
        if rows == 1 { "" } else { "s" }
    ))
}

/// `confirmed by alice: services stopped`.
fn confirmed(data: &Value) -> Option<String> {
    let user = data["user"].as_str()?;
    Some(match data["note"].as_str().filter(|n| !n.is_empty()) {
        Some(note) => format!("confirmed by {user}: {note}"),
        None => format!("confirmed by {user}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_are_iec_with_one_decimal() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(41 << 20), "41.0 MiB");
        assert_eq!(size(2 << 30), "2.0 GiB");
        assert_eq!(size(1536), "1.5 KiB");
    }

    #[test]
    fn each_kind_says_what_it_changed() {
        assert_eq!(
            copy(&json!({"bytes_sent": 41u64 << 20, "bytes_reused": 2u64 << 30, "zero_bytes_skipped": 0, "in_place": true, "resumed": false})).unwrap(),
            "41.0 MiB sent, 2.0 GiB reused, patched in place"
        );
        assert_eq!(
            switch(
                "A",
                &json!({"old": "10.0.0.1", "new": "10.0.0.2", "primary": "10.0.0.6:53", "serial": 2026120104u64, "swapped": true})
            )
            .unwrap(),
            "A 10.0.0.1 -> 10.0.0.2 at 10.0.0.6:53, serial 2026120104"
        );
        assert_eq!(
            ttl(&json!({"primary": "127.0.0.53:5301", "changes": [
                {"name": "wiki", "previous_ttl": 6, "new_ttl": 2},
                {"name": "talk", "previous_ttl": 6, "new_ttl": 2},
                {"name": "repo", "previous_ttl": null, "new_ttl": 2},
            ]}))
            .unwrap(),
            "TTL 6s -> 2s: wiki, talk; already at the TTL: repo at 127.0.0.53:5301"
        );
        assert_eq!(
            tables(&json!({"destination": [{"rows": 3000}, {"rows": 800}, {"rows": 2}]})).unwrap(),
            "3 tables (3802 rows) match"
        );
        assert_eq!(
            confirmed(&json!({"user": "alice", "note": ""})).unwrap(),
            "confirmed by alice"
        );
    }
}
