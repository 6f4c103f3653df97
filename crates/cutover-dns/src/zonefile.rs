//! Standard master files (RFC 1035 §5), read with hickory's parser, with the one thing it
//! lacks: the position of a fault. hickory reports *what* is wrong but not *where*, so on a
//! failure the file is split into its logical entries (a parenthesised record counts as one)
//! and the shortest failing prefix is found by bisection; the fault is in its last entry.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use hickory_proto::rr::{Name, RData, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;

use crate::error::DnsError;

/// The records of a zone, keyed the way hickory's zone handlers take them.
pub type ZoneRecords = BTreeMap<RrKey, RecordSet>;

/// Reads and parses a master file for `origin`. Errors carry the file's line and column.
pub fn load_zone_file(path: &Path, origin: &Name) -> Result<ZoneRecords, DnsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| DnsError::io(format!("cannot read zone file {}", path.display()), err))?;
    parse_zone_text(&text, path, origin)
}

/// Parses master-file text; `path` is used for `$INCLUDE` and messages.
pub fn parse_zone_text(text: &str, path: &Path, origin: &Name) -> Result<ZoneRecords, DnsError> {
    let parse = |input: &str| {
        Parser::new(
            input.to_string(),
            Some(path.to_path_buf()),
            Some(origin.clone()),
        )
        .parse()
    };
    let records = match parse(text) {
        Ok((_, records)) => records,
        Err(err) => {
            let message = err.to_string();
            let entries = logical_entries(text);
            // The first entry whose inclusion makes the prefix fail holds the fault.
            let (mut low, mut high) = (0, entries.len());
            while low < high {
                let middle = (low + high) / 2;
                if parse(&text[..entries[middle].end]).is_err() {
                    high = middle;
                } else {
                    low = middle + 1;
                }
            }
            let (line, column) = match entries.get(low) {
                Some(entry) => locate_in_entry(text, entry, &message),
                None => (1, 1),
            };
            return Err(DnsError::ZoneFile {
                path: path.to_path_buf(),
                line,
                column,
                message,
            });
        }
    };
    let has_soa = records
        .get(&RrKey::new(origin.into(), RecordType::SOA))
        .and_then(|rrset| rrset.records_without_rrsigs().next())
        .is_some_and(|record| matches!(record.data, RData::SOA(_)));
    if !has_soa {
        return Err(DnsError::ZoneFile {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("the zone has no SOA record at its origin {origin}"),
        });
    }
    Ok(records)
}

/// One logical entry of a master file: a record or directive, possibly spanning lines.
struct Entry {
    /// Byte offset of its first non-blank character.
    start: usize,
    /// Byte offset just past its end (the newline that closes it, or the end of text).
    end: usize,
}

fn logical_entries(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut depth = 0usize;
    let mut in_quote = false;
    let mut in_comment = false;
    let mut start: Option<usize> = None;
    let mut escaped = false;
    for (offset, c) in text.char_indices() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
            } else {
                continue;
            }
        }
        if in_quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            ';' => in_comment = true,
            '"' => {
                in_quote = true;
                start.get_or_insert(offset);
            }
            '(' => {
                depth += 1;
                start.get_or_insert(offset);
            }
            ')' => depth = depth.saturating_sub(1),
            '\n' if depth == 0 => {
                if let Some(entry_start) = start.take() {
                    entries.push(Entry {
                        start: entry_start,
                        end: offset + 1,
                    });
                }
            }
            c if !c.is_whitespace() => {
                start.get_or_insert(offset);
            }
            _ => {}
        }
    }
    if let Some(entry_start) = start {
        entries.push(Entry {
            start: entry_start,
            end: text.len(),
        });
    }
    entries
}

/// Picks the most likely position of the fault inside an entry: a token the message quotes,
/// else the record data after a recognisable type, else the entry's start.
fn locate_in_entry(text: &str, entry: &Entry, message: &str) -> (usize, usize) {
    let body = &text[entry.start..entry.end];
    let tokens: Vec<(usize, &str)> = body
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .scan(0usize, |offset, token| {
            let at = *offset;
            *offset += token.len() + 1;
            Some((at, token))
        })
        .filter(|(_, token)| !token.is_empty() && !token.starts_with(';'))
        .collect();
    let message_lower = message.to_lowercase();
    let quoted = tokens.iter().find(|(_, token)| {
        let token = token.to_lowercase();
        message_lower.contains(&format!("\"{token}\""))
            || message_lower.contains(&format!("'{token}'"))
            || message_lower.ends_with(&format!(": {token}"))
    });
    let offset = match quoted {
        Some((at, _)) => *at,
        None => {
            let type_index = tokens.iter().position(|(_, token)| {
                RecordType::from_str(&token.to_ascii_uppercase())
                    .is_ok_and(|t| !matches!(t, RecordType::Unknown(_)))
            });
            match type_index.and_then(|index| tokens.get(index + 1)) {
                Some((at, _)) if !message.contains("RecordType") => *at,
                _ => 0,
            }
        }
    };
    line_column(text, entry.start + offset)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "$ORIGIN example.test.\n$TTL 3600\n@ IN SOA ns1 hostmaster (\n  1 ; serial\n  3600 600 86400 300 )\n  IN NS ns1\nns1 IN A 127.0.0.1\nwww 300 IN A 192.0.2.1\n";

    fn origin() -> Name {
        Name::from_str("example.test.").unwrap()
    }

    fn error_of(text: &str) -> (usize, usize, String) {
        match parse_zone_text(text, Path::new("z.zone"), &origin()) {
            Err(DnsError::ZoneFile {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("expected a zone file error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_good_zone() {
        let records = parse_zone_text(GOOD, Path::new("z.zone"), &origin()).unwrap();
        let www = Name::from_str("www.example.test.").unwrap();
        let set = &records[&RrKey::new((&www).into(), RecordType::A)];
        assert_eq!(set.ttl(), 300);
    }

    #[test]
    fn a_bad_address_is_located_at_its_record_data() {
        let text = GOOD.replace("www 300 IN A 192.0.2.1", "www 300 IN A 192.0.2.300");
        let (line, column, _) = error_of(&text);
        assert_eq!((line, column), (8, 14));
    }

    #[test]
    fn a_bad_ttl_is_located_at_the_quoted_token() {
        let text = GOOD.replace("ns1 IN A 127.0.0.1", "ns1 3x00 IN A 127.0.0.1");
        let (line, column, message) = error_of(&text);
        assert_eq!((line, column), (7, 5), "{message}");
    }

    #[test]
    fn an_unclosed_parenthesis_points_at_the_entry_that_opens_it() {
        let text = GOOD.replace("300 )", "300");
        let (line, _, _) = error_of(&text);
        assert_eq!(line, 3);
    }

    #[test]
    fn a_zone_without_soa_is_refused() {
        let (line, column, message) = error_of("www 300 IN A 192.0.2.1\n");
        assert_eq!((line, column), (1, 1));
        assert!(message.contains("no SOA record"));
    }
}
