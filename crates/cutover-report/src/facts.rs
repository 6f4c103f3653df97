//! Evidence data made readable. Each step kind records its observations as
//! JSON of its own shape (bytes and hashes of a copy, ports checked, tables
//! compared); the report turns any JSON into lines (`key: value`) and
//! tables (an array of objects, one row each), with sizes in IEC units and
//! times in UTC beside the exact figures. Nothing is cut: what the JSON
//! export holds, the people's formats show.
//!
//! One shape is known: DNS verification (`records`, each with the answer
//! of every verify server), shown as a table per record with a row per
//! server: value, TTL, serial, whether it agrees, and when it was first
//! seen agreeing. That time is in the evidence of newer runs (per server,
//! or in the step's `servers` list of first sightings); evidence of older
//! runs has none, and the column is left out.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// At most this many rows of one generic table are shown; the rest are
/// counted (and are in the JSON export). DNS tables show every server.
pub const MAX_ROWS: usize = 50;

/// One readable piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// `key: value` (key empty for a bare value).
    Line { key: String, value: String },
    /// An array of objects: one row per element.
    Table {
        key: String,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
        more: usize,
    },
}

/// The facts of one evidence record's data.
pub fn facts(data: &Value) -> Vec<Fact> {
    let mut out = Vec::new();
    match dns_records(data) {
        Some(records) => {
            let sightings = first_sightings(data.get("servers"));
            for record in records {
                dns_record(record, &sightings, &mut out);
            }
            if let Value::Object(map) = data {
                for (k, v) in map {
                    let merged = k == "servers" && !sightings.is_empty();
                    if k != "records" && !merged {
                        collect(k, v, &mut out);
                    }
                }
            }
        }
        None => collect("", data, &mut out),
    }
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn collect(key: &str, value: &Value, out: &mut Vec<Fact>) {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map {
                collect(&join(key, k), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(is_flat_object) => {
            out.push(table(key, items));
        }
        Value::Array(items) if items.iter().all(is_scalar) => {
            let texts: Vec<String> = items.iter().map(|v| scalar(key, v)).collect();
            out.push(Fact::Line {
                key: key.to_owned(),
                value: texts.join(", "),
            });
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect(&format!("{key}[{i}]"), item, out);
            }
        }
        _ => out.push(Fact::Line {
            key: key.to_owned(),
            value: scalar(key, value),
        }),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// A value a table cell can show: a scalar, a list of scalars, or an
/// object of those (its fields become columns `key.field`).
fn is_cell(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().all(is_scalar),
        Value::Object(map) => map.values().all(is_cell),
        _ => true,
    }
}

/// An object whose fields all fit in table cells.
fn is_flat_object(v: &Value) -> bool {
    matches!(v, Value::Object(map) if map.values().all(is_cell))
}

/// The cells of one table row: nested objects flattened to dotted columns.
fn flatten(prefix: &str, map: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    for (k, v) in map {
        let column = join(prefix, k);
        match v {
            Value::Object(inner) => {
                flatten(&column, inner, out);
            }
            _ => {
                let text = cell(&column, v);
                out.push((column, text));
            }
        }
    }
}

fn cell(column: &str, v: &Value) -> String {
    match v {
        Value::Array(vs) => vs
            .iter()
            .map(|v| scalar(column, v))
            .collect::<Vec<_>>()
            .join(", "),
        v => scalar(column, v),
    }
}

fn table(key: &str, items: &[Value]) -> Fact {
    let mut columns: Vec<String> = Vec::new();
    let mut cells: Vec<Vec<(String, String)>> = Vec::new();
    for item in items {
        let mut row = Vec::new();
        if let Value::Object(map) = item {
            flatten("", map, &mut row);
        }
        for (c, _) in &row {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
        cells.push(row);
    }
    let rows = cells
        .iter()
        .take(MAX_ROWS)
        .map(|row| {
            columns
                .iter()
                .map(|c| {
                    row.iter()
                        .find(|(k, _)| k == c)
                        .map_or_else(String::new, |(_, v)| v.clone())
                })
                .collect()
        })
        .collect();
    Fact::Table {
        key: key.to_owned(),
        columns,
        rows,
        more: items.len().saturating_sub(MAX_ROWS),
    }
}

/// A scalar as text: sizes also in IEC units, durations in units, RFC 3339
/// times in UTC, booleans as yes/no.
fn scalar(key: &str, value: &Value) -> String {
    match value {
        Value::String(s) => match parse_time(s) {
            Some(t) => utc(t),
            None => s.clone(),
        },
        Value::Number(n) => match n.as_u64() {
            Some(bytes) if is_size_key(key) && bytes >= 1024 => {
                format!("{bytes} ({})", cutover_plan::units_fmt::size_iec(bytes))
            }
            Some(secs) if is_seconds_key(key) && secs >= 60 => {
                format!(
                    "{secs} ({})",
                    cutover_plan::units_fmt::duration(i64::try_from(secs).unwrap_or(i64::MAX))
                )
            }
            _ => n.to_string(),
        },
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn last_key(key: &str) -> String {
    key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase()
}

fn is_size_key(key: &str) -> bool {
    let last = last_key(key);
    last.contains("bytes") || last == "size" || last.ends_with("_size") || last.starts_with("size_")
}

fn is_seconds_key(key: &str) -> bool {
    let last = last_key(key);
    last.ends_with("_s") || last.ends_with("seconds") || last.ends_with("_ttl") || last == "ttl"
}

/// Evidence data as the JSON export gives it: times in RFC 3339 UTC with
/// `Z`, and a duration that serde wrote as `{"secs": N, "nanos": N}` (a
/// `std::time::Duration` of an older run) as seconds under `KEY_s`.
pub(crate) fn tidy(value: &Value) -> Value {
    match value {
        Value::String(s) => match parse_time(s) {
            Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(tidy).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match duration_seconds(v) {
                    Some(seconds) => (format!("{k}_s"), seconds),
                    None => (k.clone(), tidy(v)),
                })
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// `{"secs": N, "nanos": N}` as a number of seconds.
fn duration_seconds(v: &Value) -> Option<Value> {
    let map = v.as_object()?;
    if map.len() != 2 {
        return None;
    }
    let secs = map.get("secs")?.as_u64()?;
    let nanos = map.get("nanos")?.as_u64()?;
    if nanos == 0 {
        return Some(Value::from(secs));
    }
    serde_json::Number::from_f64(secs as f64 + nanos as f64 / 1e9).map(Value::Number)
}

/// An RFC 3339 time (with a date and a time of day, any offset).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if s.len() < 20 || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `2026-03-14 17:12:09 UTC`, tenths of a second shown when there are any.
fn utc(t: DateTime<Utc>) -> String {
    let tenths = t.timestamp_subsec_millis() / 100;
    if tenths == 0 {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    } else {
        format!("{}.{tenths} UTC", t.format("%Y-%m-%d %H:%M:%S"))
    }
}

/// The records of a DNS verification: `{"records": [{"name", "type",
/// "servers": [{"server", ...}]}]}`.
fn dns_records(data: &Value) -> Option<&Vec<Value>> {
    let records = data.get("records")?.as_array()?;
    let dns = !records.is_empty()
        && records.iter().all(|r| {
            r.get("name").is_some_and(Value::is_string)
                && r.get("servers")
                    .and_then(Value::as_array)
                    .is_some_and(|servers| {
                        servers
                            .iter()
                            .all(|s| s.get("server").is_some_and(Value::is_string))
                    })
        });
    dns.then_some(records)
}

/// When a server was first seen agreeing, and its lag after the update.
#[derive(Debug, Clone, Default)]
struct Sighting {
    at: Option<String>,
    serial: Option<u64>,
    lag_seconds: Option<f64>,
}

/// A first sighting in `entry`; `serial_keys` name its serial (in a
/// server's answer, `serial` is the serial of that answer, not of the
/// first sighting).
fn sighting(entry: &Value, serial_keys: &[&str]) -> Option<Sighting> {
    let at = ["first_served_at", "first_seen_at", "first_agreed_at"]
        .iter()
        .find_map(|k| entry.get(*k).and_then(Value::as_str))
        .map(str::to_owned);
    let lag_seconds = ["lag_seconds", "lag_s"]
        .iter()
        .find_map(|k| entry.get(*k).and_then(Value::as_f64));
    at.as_ref()?;
    Some(Sighting {
        at,
        serial: serial_keys
            .iter()
            .find_map(|k| entry.get(*k).and_then(Value::as_u64)),
        lag_seconds,
    })
}

/// The step's list of first sightings (`servers`, one entry per server).
fn first_sightings(list: Option<&Value>) -> Vec<(String, Sighting)> {
    list.and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    let server = e.get("server")?.as_str()?.to_owned();
                    Some((server, sighting(e, &["serial"])?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sighting_text(s: &Sighting) -> String {
    let mut text =
        s.at.as_deref()
            .map(|at| parse_time(at).map_or_else(|| at.to_owned(), utc))
            .unwrap_or_default();
    if let Some(serial) = s.serial {
        text.push_str(&format!(" at serial {serial}"));
    }
    if let Some(lag) = s.lag_seconds {
        text.push_str(&format!(", {lag:.1}s after the update"));
    }
    text
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => Some(other.to_string()),
    }
}

/// One record of a DNS verification: a table with a row per server.
fn dns_record(record: &Value, sightings: &[(String, Sighting)], out: &mut Vec<Fact>) {
    let name = record.get("name").and_then(Value::as_str).unwrap_or("");
    let rtype = record.get("type").and_then(Value::as_str).unwrap_or("");
    let mut title = format!("{name} {rtype} at each verify server")
        .trim()
        .to_owned();
    let mut about = Vec::new();
    if let Some(expected) = record.get("expected") {
        let mut wanted = Vec::new();
        if let Some(values) = text_of(expected.get("values")) {
            wanted.push(values);
        }
        if let Some(values) = text_of(expected.get("includes")) {
            wanted.push(format!("holding {values}"));
        }
        if let Some(values) = text_of(expected.get("excludes")) {
            wanted.push(format!("without {values}"));
        }
        if let Some(ttl) = expected.get("ttl").and_then(Value::as_u64) {
            wanted.push(format!("TTL {ttl}"));
        }
        if let Some(serial) = expected.get("min_serial").and_then(Value::as_u64) {
            wanted.push(format!("serial ≥ {serial}"));
        }
        if !wanted.is_empty() {
            about.push(format!("expected {}", wanted.join(", ")));
        }
    }
    match record.get("verified").and_then(Value::as_bool) {
        Some(true) => about.push("verified".to_owned()),
        Some(false) => about.push("not verified".to_owned()),
        None => {}
    }
    if !about.is_empty() {
        title.push_str(&format!(" ({})", about.join("; ")));
    }
    let servers = record
        .get("servers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let first_seen = |server: &Value| -> Option<Sighting> {
        sighting(
            server,
            &["first_serial", "first_served_serial", "first_seen_serial"],
        )
        .or_else(|| {
            let address = server.get("server")?.as_str()?;
            sightings
                .iter()
                .find(|(s, _)| s == address)
                .map(|(_, s)| s.clone())
        })
    };
    let any_sighting = servers.iter().any(|s| first_seen(s).is_some());
    let any_error = servers
        .iter()
        .any(|s| s.get("error").is_some_and(|e| !e.is_null()));
    let mut columns: Vec<String> = ["Server", "Value", "TTL", "Serial", "Agrees"]
        .map(str::to_owned)
        .to_vec();
    if any_sighting {
        columns.push("First seen agreeing".to_owned());
    }
    if any_error {
        columns.push("Error".to_owned());
    }
    let rows = servers
        .iter()
        .map(|s| {
            let value = match s.get("values").or_else(|| s.get("answer")) {
                None | Some(Value::Null) => "–".to_owned(),
                Some(Value::Array(items)) if items.is_empty() => "(no records)".to_owned(),
                v => text_of(v).unwrap_or_default(),
            };
            let mut row = vec![
                s.get("server")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                value,
                text_of(s.get("ttl")).unwrap_or_else(|| "–".to_owned()),
                text_of(s.get("serial")).unwrap_or_else(|| "–".to_owned()),
                match s.get("agrees").and_then(Value::as_bool) {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "no".to_owned(),
                    None => "–".to_owned(),
                },
            ];
            if any_sighting {
                row.push(first_seen(s).map_or_else(|| "not yet".to_owned(), |x| sighting_text(&x)));
            }
            if any_error {
                row.push(text_of(s.get("error")).unwrap_or_default());
            }
            row
        })
        .collect();
    out.push(Fact::Table {
        key: title,
        columns,
        rows,
        more: 0,
    });
    if let Some(stale) = text_of(record.get("stale")) {
        out.push(Fact::Line {
            key: format!("{name} {rtype}: stale secondary"),
            value: stale,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_become_lines_and_arrays_of_objects_tables() {
        let data = json!({
            "ports": [
                {"target": "wiki-new:80", "observed": "open", "probe": {"ms": 3}},
                {"target": "wiki-new:3306", "observed": "refused", "lag_s": 3}
            ],
            "copy": {"bytes_sent": 1_572_864u64, "hash": "abc", "duration_s": 2.5},
            "list": [80, 443],
            "ok": true,
            "waited_seconds": 300,
            "until": "2026-03-14T17:13:11+00:00"
        });
        assert_eq!(
            facts(&data),
            vec![
                Fact::Line {
                    key: "copy.bytes_sent".into(),
                    value: "1572864 (1.5 MiB)".into()
                },
                Fact::Line {
                    key: "copy.duration_s".into(),
                    value: "2.5".into()
                },
                Fact::Line {
                    key: "copy.hash".into(),
                    value: "abc".into()
                },
                Fact::Line {
                    key: "list".into(),
                    value: "80, 443".into()
                },
                Fact::Line {
                    key: "ok".into(),
                    value: "yes".into()
                },
                Fact::Table {
                    key: "ports".into(),
                    columns: vec![
                        "observed".into(),
                        "probe.ms".into(),
                        "target".into(),
                        "lag_s".into()
                    ],
                    rows: vec![
                        vec![
                            "open".into(),
                            "3".into(),
                            "wiki-new:80".into(),
                            String::new()
                        ],
                        vec![
                            "refused".into(),
                            String::new(),
                            "wiki-new:3306".into(),
                            "3".into()
                        ],
                    ],
                    more: 0,
                },
                Fact::Line {
                    key: "until".into(),
                    value: "2026-03-14 17:13:11 UTC".into()
                },
                Fact::Line {
                    key: "waited_seconds".into(),
                    value: "300 (5m)".into()
                },
            ]
        );
    }

    #[test]
    fn the_json_export_gets_utc_times_with_z_and_durations_in_seconds() {
        let data = json!({
            "at": "2026-03-14T18:12:10.250+01:00",
            "copy": { "duration": { "secs": 2, "nanos": 500_000_000 }, "took": { "secs": 3, "nanos": 0 } },
            "servers": [{ "at": "2026-03-14T17:12:10+00:00", "name": "not a time" }],
        });
        assert_eq!(
            tidy(&data),
            json!({
                "at": "2026-03-14T17:12:10.250Z",
                "copy": { "duration_s": 2.5, "took_s": 3 },
                "servers": [{ "at": "2026-03-14T17:12:10Z", "name": "not a time" }],
            })
        );
    }

    #[test]
    fn long_texts_are_whole_and_generic_tables_bounded() {
        let rows: Vec<Value> = (0..60).map(|i| json!({ "n": i })).collect();
        let Fact::Table {
            rows: shown, more, ..
        } = &facts(&json!({ "t": rows }))[0]
        else {
            panic!("expected a table");
        };
        assert_eq!((shown.len(), *more), (MAX_ROWS, 10));
        let long = "x".repeat(1000);
        let Fact::Line { value, .. } = &facts(&json!(long))[0] else {
            panic!("expected a line");
        };
        assert_eq!(value, &long);
    }

    fn server(address: &str, value: &str, serial: u64, agrees: bool) -> Value {
        json!({ "server": address, "values": [value], "ttl": 5, "serial": serial,
                "agrees": agrees, "error": null, "at": "2026-03-14T17:12:10.250+00:00" })
    }

    #[test]
    fn dns_verification_is_a_table_per_record_with_a_row_per_server() {
        let record = |servers: Vec<Value>| {
            json!({ "name": "wiki.lab.test.", "type": "A",
                    "expected": { "values": ["127.0.0.20"], "ttl": null, "min_serial": 42 },
                    "verified": false, "servers": servers, "stale": null })
        };
        // Older evidence: no first sightings anywhere.
        let old = json!({ "records": [record(vec![
            server("127.0.0.1:5353", "127.0.0.20", 42, true),
            server("127.0.0.1:5354", "127.0.0.10", 41, false),
        ])] });
        let Fact::Table {
            key, columns, rows, ..
        } = &facts(&old)[0]
        else {
            panic!("expected a table: {:?}", facts(&old));
        };
        assert_eq!(
            key,
            "wiki.lab.test. A at each verify server (expected 127.0.0.20, serial ≥ 42; not verified)"
        );
        assert_eq!(columns, &["Server", "Value", "TTL", "Serial", "Agrees"]);
        assert_eq!(rows[1], ["127.0.0.1:5354", "127.0.0.10", "5", "41", "no"]);

        // The step's list of first sightings, merged by server.
        let listed = json!({
            "records": [record(vec![
                server("127.0.0.1:5353", "127.0.0.20", 42, true),
                server("127.0.0.1:5354", "127.0.0.10", 41, false),
            ])],
            "servers": [{ "server": "127.0.0.1:5353", "first_served_at": "2026-03-14T17:11:50.500+00:00",
                          "serial": 42, "lag_seconds": 7.25 }],
        });
        let found = facts(&listed);
        assert_eq!(found.len(), 1, "{found:?}");
        let Fact::Table { columns, rows, .. } = &found[0] else {
            panic!("expected a table");
        };
        assert_eq!(
            columns.last().map(String::as_str),
            Some("First seen agreeing")
        );
        assert_eq!(
            rows[0][5],
            "2026-03-14 17:11:50.5 UTC at serial 42, 7.2s after the update"
        );
        assert_eq!(rows[1][5], "not yet");

        // Per server, in the record itself.
        let mut newer = server("127.0.0.1:5355", "127.0.0.20", 43, true);
        newer["first_seen_at"] = json!("2026-03-14T17:12:00Z");
        newer["first_serial"] = json!(43);
        let inline = json!({ "records": [record(vec![newer])] });
        let Fact::Table { rows, .. } = &facts(&inline)[0] else {
            panic!("expected a table");
        };
        assert_eq!(rows[0][5], "2026-03-14 17:12:00 UTC at serial 43");
    }
}
