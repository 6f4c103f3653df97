//! Evidence data made readable. Each step kind records its observations as
//! JSON of its own shape (DNS answers per server, bytes and hashes of a
//! copy, ports checked); the report does not know those shapes. It turns
//! any JSON into lines (`key: value`) and tables (an array of objects, one
//! row each, e.g. one per DNS server), with sizes also shown in units.

use serde_json::Value;

/// At most this many rows of one table are shown; the rest are counted.
pub const MAX_ROWS: usize = 50;
/// Longer texts are cut (the JSON export keeps them whole).
pub const MAX_TEXT: usize = 300;

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
    collect("", data, &mut out);
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
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            out.push(table(key, items));
        }
        Value::Array(items) if items.iter().all(is_scalar) => {
            let texts: Vec<String> = items.iter().map(|v| scalar(key, v)).collect();
            out.push(Fact::Line {
                key: key.to_owned(),
                value: cut(&texts.join(", ")),
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

fn table(key: &str, items: &[Value]) -> Fact {
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        if let Value::Object(map) = item {
            for k in map.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    let rows = items
        .iter()
        .take(MAX_ROWS)
        .map(|item| {
            columns
                .iter()
                .map(|c| match item.get(c) {
                    None | Some(Value::Null) => String::new(),
                    Some(v) if is_scalar(v) => scalar(c, v),
                    Some(Value::Array(vs)) if vs.iter().all(is_scalar) => cut(&vs
                        .iter()
                        .map(|v| scalar(c, v))
                        .collect::<Vec<_>>()
                        .join(", ")),
                    Some(v) => cut(&v.to_string()),
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

/// A scalar as text; integers under a key about bytes or sizes also in units.
fn scalar(key: &str, value: &Value) -> String {
    match value {
        Value::String(s) => cut(s),
        Value::Number(n) => match n.as_u64() {
            Some(bytes) if is_size_key(key) && bytes >= 1000 => {
                format!("{bytes} ({})", cutover_plan::units_fmt::size(bytes))
            }
            _ => n.to_string(),
        },
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::Null => String::new(),
        other => cut(&other.to_string()),
    }
}

fn is_size_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    last.contains("bytes") || last == "size" || last.ends_with("_size")
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_TEXT {
        return text.to_owned();
    }
    let kept: String = text.chars().take(MAX_TEXT).collect();
    format!("{kept}… ({} characters)", text.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_become_lines_and_arrays_of_objects_tables() {
        let data = json!({
            "record": "wiki.maemo.org A",
            "servers": [
                {"server": "10.0.0.6:53", "answer": "80.248.164.42", "serial": 2013031401u64},
                {"server": "192.0.2.53:53", "answer": "80.248.164.42", "serial": 2013031401u64, "lag_s": 3}
            ],
            "copy": {"bytes_sent": 1_500_000u64, "hash": "abc"},
            "ports": [80, 443],
            "ok": true
        });
        assert_eq!(
            facts(&data),
            vec![
                Fact::Line {
                    key: "copy.bytes_sent".into(),
                    value: "1500000 (1.5 MB)".into()
                },
                Fact::Line {
                    key: "copy.hash".into(),
                    value: "abc".into()
                },
                Fact::Line {
                    key: "ok".into(),
                    value: "yes".into()
                },
                Fact::Line {
                    key: "ports".into(),
                    value: "80, 443".into()
                },
                Fact::Line {
                    key: "record".into(),
                    value: "wiki.maemo.org A".into()
                },
                Fact::Table {
                    key: "servers".into(),
                    columns: vec![
                        "answer".into(),
                        "serial".into(),
                        "server".into(),
                        "lag_s".into()
                    ],
                    rows: vec![
                        vec![
                            "80.248.164.42".into(),
                            "2013031401".into(),
                            "10.0.0.6:53".into(),
                            String::new()
                        ],
                        vec![
                            "80.248.164.42".into(),
                            "2013031401".into(),
                            "192.0.2.53:53".into(),
                            "3".into()
                        ],
                    ],
                    more: 0,
                },
            ]
        );
    }

    #[test]
    fn long_texts_and_tables_are_bounded() {
        let rows: Vec<Value> = (0..60).map(|i| json!({ "n": i })).collect();
        let Fact::Table {
            rows: shown, more, ..
        } = &facts(&json!({ "t": rows }))[0]
        else {
            panic!("expected a table");
        };
        assert_eq!((shown.len(), *more), (MAX_ROWS, 10));
        let Fact::Line { value, .. } = &facts(&json!("x".repeat(1000)))[0] else {
            panic!("expected a line");
        };
        assert!(value.ends_with("… (1000 characters)"), "{value}");
    }
}
