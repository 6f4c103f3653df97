//! The master file of a lab zone: SOA, NS records naming the zone's verify servers (with glue),
//! and the records the runbook's DNS steps expect, each with a comment saying where its value
//! and TTL came from.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::blueprint::{DEFAULT_TTL, ZoneBlueprint};

/// SOA timers, lab-sized: a secondary that does not follow NOTIFY refreshes every minute.
const SOA_TIMERS: &str = "60 30 86400 5";

/// The NS host names of a zone, one per distinct verify address (the primary when the zone
/// lists no verify server), with the address each name resolves to.
pub fn nameservers(zone: &ZoneBlueprint) -> Vec<(String, IpAddr)> {
    let mut addresses: Vec<IpAddr> = Vec::new();
    let servers = if zone.verify.is_empty() {
        vec![zone.primary]
    } else {
        zone.verify.clone()
    };
    for server in servers {
        if !addresses.contains(&server.ip()) {
            addresses.push(server.ip());
        }
    }
    let taken: BTreeSet<&str> = zone.records.iter().map(|r| r.name.as_str()).collect();
    let prefix = if (1..=addresses.len()).any(|i| taken.contains(format!("ns{i}").as_str())) {
        "lab-ns"
    } else {
        "ns"
    };
    addresses
        .into_iter()
        .enumerate()
        .map(|(i, address)| (format!("{prefix}{}", i + 1), address))
        .collect()
}

/// The zone's master file text with the given SOA serial.
pub fn render(zone: &ZoneBlueprint, serial: u32, runbook: &str) -> String {
    let origin = format!("{}.", zone.name);
    let nameservers = nameservers(zone);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "; zone {} as the cutover lab serves it before the run of runbook {runbook}.",
        zone.name
    );
    let _ = writeln!(
        text,
        "; Generated from the runbook's DNS steps: every value is the one its steps expect to find."
    );
    let _ = writeln!(text, "$ORIGIN {origin}");
    let _ = writeln!(text, "$TTL {DEFAULT_TTL}");
    let primary_ns = nameservers.first().map_or_else(
        || format!("ns1.{origin}"),
        |(name, _)| format!("{name}.{origin}"),
    );
    let _ = writeln!(
        text,
        "@ {DEFAULT_TTL} IN SOA {primary_ns} hostmaster.{origin} ( {serial} {SOA_TIMERS} )"
    );
    for (name, _) in &nameservers {
        let _ = writeln!(text, "@ {} IN NS {name}.{origin}", zone.ns_ttl);
    }
    for (name, address) in &nameservers {
        let rtype = if address.is_ipv4() { "A" } else { "AAAA" };
        let _ = writeln!(
            text,
            "{name} {DEFAULT_TTL} IN {rtype} {address} ; verify server"
        );
    }
    for record in &zone.records {
        let _ = writeln!(
            text,
            "{} {} IN {} {} ; {}",
            record.name,
            record.ttl,
            record.rtype.as_str(),
            record.value,
            record.origin
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::RecordBlueprint;
    use cutover_lang::RecordType;

    fn zone(records: Vec<RecordBlueprint>) -> ZoneBlueprint {
        ZoneBlueprint {
            name: "example.org".into(),
            primary: "127.0.0.53:5301".parse().unwrap(),
            verify: vec![
                "127.0.0.53:5301".parse().unwrap(),
                "127.0.0.54:5301".parse().unwrap(),
            ],
            ns_ttl: 45,
            records,
        }
    }

    #[test]
    fn the_zone_file_parses_and_holds_the_expected_records() {
        let zone = zone(vec![RecordBlueprint {
            name: "www".into(),
            rtype: RecordType::A,
            ttl: 40,
            value: "127.0.0.10".into(),
            origin: "old value of step switch".into(),
        }]);
        let text = render(&zone, 2026112201, "lab");
        let origin = "example.org.".parse().unwrap();
        let records =
            cutover_dns::parse_zone_text(&text, std::path::Path::new("example.org.zone"), &origin)
                .unwrap();
        let rendered: Vec<String> = records
            .values()
            .flat_map(|set| {
                set.records_without_rrsigs()
                    .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
            })
            .collect();
        assert!(
            rendered.contains(&"www.example.org. 40 127.0.0.10".to_string()),
            "{rendered:?}"
        );
        assert!(
            rendered.contains(&"example.org. 45 ns2.example.org.".to_string()),
            "{rendered:?}"
        );
        assert!(
            rendered.contains(&"ns2.example.org. 30 127.0.0.54".to_string()),
            "{rendered:?}"
        );
    }

    #[test]
    fn nameserver_names_avoid_the_runbook_records() {
        let zone = zone(vec![RecordBlueprint {
            name: "ns1".into(),
            rtype: RecordType::A,
            ttl: 40,
            value: "127.0.0.10".into(),
            origin: String::new(),
        }]);
        let names: Vec<String> = nameservers(&zone).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["lab-ns1", "lab-ns2"]);
    }
}
