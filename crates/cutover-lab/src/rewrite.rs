//! The runbook as the lab runs it: the same text with every address of the runbook replaced
//! by the one the lab chose for it (hosts, DNS servers, and the same addresses where steps name
//! them: record values, commands), hosts with an agent reached `via agent` through the lab's
//! relay, and links at the lab's scaled bandwidth, so that the plan of the copy estimates what
//! the lab's shaped links carry.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use cutover_lang::{Runbook, SourceMap, units::Bandwidth};

use crate::network::{Network, NetworkMode, address_map};

/// The text of each source file as the lab runs it, in the source map's order.
pub fn rewrite_sources(
    runbook: &Runbook,
    sources: &SourceMap,
    network: &Network,
    relay_program: Option<&Path>,
) -> Vec<String> {
    let mut edits: Vec<Vec<(usize, usize, String)>> = vec![Vec::new(); sources.files.len()];
    for agent in &network.agents {
        let (Some(program), Some(host)) = (
            relay_program,
            runbook.hosts.iter().find(|h| h.name == agent.host),
        ) else {
            continue;
        };
        let file = host.span.file.0 as usize;
        let Some(text) = sources.files.get(file).map(|f| &f.text) else {
            continue;
        };
        let line = &text[host.span.start..host.span.end.min(text.len())];
        if let Some(via) = line.find(" via ") {
            edits[file].push((
                host.span.start + via,
                host.span.start + line.trim_end().len(),
                format!(
                    " via agent \"{} lab relay {}\"",
                    program.display(),
                    agent.address
                ),
            ));
        }
    }
    if network.mode == NetworkMode::Namespaces && network.link_scale != 1.0 {
        for link in &runbook.links {
            let file = link.span.file.0 as usize;
            let Some(text) = sources.files.get(file).map(|f| &f.text) else {
                continue;
            };
            let line = &text[link.span.start..link.span.end.min(text.len())];
            let trimmed = line.trim_end();
            if let Some(space) = trimmed.rfind(char::is_whitespace) {
                let scaled = Bandwidth(
                    ((link.bandwidth.0 as f64 * network.link_scale).round() as u64).max(8_000),
                );
                edits[file].push((
                    link.span.start + space + 1,
                    link.span.start + trimmed.len(),
                    scaled.to_string(),
                ));
            }
        }
    }
    let ips = address_map(network);
    let dns: BTreeMap<SocketAddr, SocketAddr> =
        network.dns.iter().map(|d| (d.runbook, d.lab)).collect();
    sources
        .files
        .iter()
        .zip(edits)
        .enumerate()
        .map(|(index, (file, mut edits))| {
            edits.sort_by_key(|e| std::cmp::Reverse(e.0));
            let mut text = file.text.clone();
            for (start, end, replacement) in edits {
                text.replace_range(start..end, &replacement);
            }
            let text = replace_addresses(&text, &ips, &dns);
            if index == 0 {
                format!(
                    "# The lab's copy: addresses chosen by `cutover lab up` for this lab ({}, {}); see network.json.\n{text}",
                    network.subnet,
                    match network.mode {
                        NetworkMode::Namespaces => "network namespaces",
                        NetworkMode::Loopback => "loopback",
                    }
                )
            } else {
                text
            }
        })
        .collect()
}

/// Replaces every IPv4 address written in `text` that `ips` maps (as a whole token: not part
/// of a longer number), keeping a `:PORT` after it unless `dns` maps the pair.
pub fn replace_addresses(
    text: &str,
    ips: &BTreeMap<IpAddr, IpAddr>,
    dns: &BTreeMap<SocketAddr, SocketAddr>,
) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let starts_token = bytes[i].is_ascii_digit()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.'));
        if !starts_token {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
            end += 1;
        }
        let token = &text[i..end];
        let followed_ok = end >= bytes.len() || !bytes[end].is_ascii_alphanumeric();
        let Some(ip) = token
            .parse::<Ipv4Addr>()
            .ok()
            .filter(|_| followed_ok)
            .map(IpAddr::V4)
        else {
            i = end;
            continue;
        };
        // A port after it?
        let mut port_end = end;
        if end < bytes.len() && bytes[end] == b':' {
            port_end = end + 1;
            while port_end < bytes.len() && bytes[port_end].is_ascii_digit() {
                port_end += 1;
            }
        }
        let with_port = text[i..port_end]
            .parse::<SocketAddr>()
            .ok()
            .and_then(|a| dns.get(&a));
        if let Some(lab) = with_port {
            out.push_str(&text[copied..i]);
            out.push_str(&lab.to_string());
            copied = port_end;
            i = port_end;
        } else if let Some(lab) = ips.get(&ip) {
            out.push_str(&text[copied..i]);
            out.push_str(&lab.to_string());
            copied = end;
            i = end;
        } else {
            i = end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_addresses_are_replaced_and_ports_kept_or_mapped() {
        let ips: BTreeMap<IpAddr, IpAddr> =
            [("127.0.0.1", "10.9.9.10"), ("127.0.0.53", "10.9.9.11")]
                .into_iter()
                .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
                .collect();
        let dns: BTreeMap<SocketAddr, SocketAddr> = [(
            "127.0.0.53:5301".parse().unwrap(),
            "10.9.9.11:53".parse().unwrap(),
        )]
        .into_iter()
        .collect();
        let text = "primary 127.0.0.53:5301 key k\nhost a addr 127.0.0.1 via local x\n\
                    exec \"echo 'db = 127.0.0.1:80'\" 127.0.0.10 1127.0.0.1 127.0.0.1a v127.0.0.1\n\
                    dns.switch z www A 127.0.0.1 -> 127.0.0.53";
        assert_eq!(
            replace_addresses(text, &ips, &dns),
            "primary 10.9.9.11:53 key k\nhost a addr 10.9.9.10 via local x\n\
             exec \"echo 'db = 10.9.9.10:80'\" 127.0.0.10 1127.0.0.1 127.0.0.1a v127.0.0.1\n\
             dns.switch z www A 10.9.9.10 -> 10.9.9.11"
        );
    }
}
