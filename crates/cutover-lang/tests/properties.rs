//! Properties of the language over generated input: formatting is
//! idempotent and keeps the meaning (the resolved model is equal, spans
//! aside); nothing panics on arbitrary bytes or on soups of real tokens.

use cutover_lang::*;
use proptest::prelude::*;

/// A runbook with every span zeroed, for comparing meaning.
fn without_spans(mut runbook: Runbook) -> Runbook {
    let zero = Span::default();
    runbook.span = zero;
    if let Some(window) = &mut runbook.window {
        window.span = zero;
    }
    runbook.links.iter_mut().for_each(|l| l.span = zero);
    runbook.keys.iter_mut().for_each(|k| k.span = zero);
    runbook.zones.iter_mut().for_each(|z| z.span = zero);
    runbook.hosts.iter_mut().for_each(|h| h.span = zero);
    runbook.groups.iter_mut().for_each(|g| g.span = zero);
    for step in &mut runbook.steps {
        step.span = zero;
        step.action.span = zero;
        if let Some(undo) = &mut step.undo {
            undo.span = zero;
        }
        step.verify.iter_mut().for_each(|v| v.span = zero);
    }
    runbook
}

fn kind_line(kind: u8, i: usize, hosts: usize, groups: usize) -> String {
    let a = i % hosts;
    let b = (i + 1) % hosts;
    let target = if groups > 0 && i.is_multiple_of(2) {
        format!("g{}", i % groups)
    } else {
        format!("h{a}")
    };
    match kind % 10 {
        0 => format!("dns.ttl example.org n{i} www A {} was 1d", 60 + i),
        1 => format!(
            "dns.switch example.org n{i} A 192.0.2.{} -> 198.51.100.{}",
            i % 250,
            i % 250
        ),
        2 => format!(
            "image.copy h{a}:/srv/i{i}.img -> h{b}:/srv/j{i}.img size {}G",
            i + 1
        ),
        3 => format!("db.sync sqlite h{a}:/db/{i}.sqlite -> h{b}:/db/{i}-copy.sqlite"),
        4 => format!("port.open {target}:80, h{a}:443"),
        5 => format!("port.closed {target}:3306"),
        6 => format!("http.check http://h{a}/p{i} status 301 body \"moved {i}\""),
        7 => format!("exec on {target} \"echo \\\"step {i}\\\" \\\\ done\""),
        8 => format!("manual \"Check item {i} by hand\""),
        _ => format!("wait {}m", i + 1),
    }
}

prop_compose! {
    /// Canonical text of a valid runbook.
    fn runbook_text()(
        hosts in 1usize..6,
        groups in 0usize..3,
        kinds in proptest::collection::vec((0u8..10, any::<bool>(), any::<bool>(), 0u8..4), 1..10),
        window in any::<bool>(),
    ) -> String {
        let mut out = String::from("runbook generated\n  title \"generated\"\n");
        if window {
            out.push_str("  window 2030-01-01 12:00 UTC for 6h\n  link a -> b 100Mbit\n");
        }
        out.push_str("\nkey k hmac-sha256 env:K\n\nzone example.org\n  primary 192.0.2.53 key k\n  verify 192.0.2.53, 192.0.2.54:5353\n\n");
        for h in 0..hosts {
            out.push_str(&format!("host h{h} site s{} addr 127.0.0.{} via local ./h{h}\n", h % 2, h + 10));
        }
        for g in 0..groups {
            let members: Vec<String> = (0..hosts).filter(|h| h % groups == g).map(|h| format!("h{h}")).collect();
            if !members.is_empty() {
                out.push_str(&format!("group g{g} {}\n", members.join(", ")));
            } else {
                out.push_str(&format!("group g{g} h0\n"));
            }
        }
        for (i, (kind, with_after, with_undo, extra)) in kinds.iter().enumerate() {
            out.push_str(&format!("\nstep s{i}"));
            if window && *extra == 1 {
                out.push_str(&format!(" at T-{}h", i + 1));
            }
            if *with_after && i > 0 {
                out.push_str(&format!(" after s{}", i - 1));
            }
            out.push_str(&format!("\n  {}\n", kind_line(*kind, i, hosts, groups)));
            if *with_undo {
                out.push_str(&format!("  undo {}\n", kind_line(kind.wrapping_add(3), i, hosts, groups)));
            }
            match extra {
                0 => out.push_str("  timeout 10m\n  retry 2\n"),
                2 => out.push_str(&format!("  verify port.open h0:{}\n  expect 1h30m\n", 22 + i)),
                3 => out.push_str("  # a comment in the body\n"),
                _ => {}
            }
        }
        out
    }
}

/// The same text with its layout disturbed: indents, spacing, blank lines
/// and comments change, tokens do not.
fn messy(text: &str, noise: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let n = noise.get(i % noise.len().max(1)).copied().unwrap_or(0);
        let (indent, body) = match line.strip_prefix("  ") {
            Some(body) => (["  ", "    ", "\t", " \t "][usize::from(n % 4)], body),
            None => ("", line),
        };
        let body = if n & 4 != 0 {
            body.replace(", ", " ,")
        } else {
            body.to_string()
        };
        let body = if n & 8 != 0 {
            body.replace(" -> ", "->")
        } else {
            body
        };
        out.push_str(indent);
        out.push_str(&body);
        if n & 16 != 0 && !body.is_empty() {
            out.push_str("   # noise");
        }
        if n & 32 != 0 {
            out.push_str("  \t");
        }
        out.push('\n');
        if n & 64 != 0 {
            out.push_str("\n\n");
        }
    }
    out
}

const SOUP: &[&str] = &[
    "runbook",
    "include",
    "key",
    "zone",
    "host",
    "group",
    "step",
    "title",
    "window",
    "link",
    "primary",
    "verify",
    "resolvers",
    "site",
    "addr",
    "via",
    "local",
    "ssh",
    "agent",
    "at",
    "after",
    "undo",
    "timeout",
    "retry",
    "expect",
    "dns.ttl",
    "dns.switch",
    "image.copy",
    "db.sync",
    "port.open",
    "port.closed",
    "http.check",
    "exec",
    "manual",
    "wait",
    "until",
    "on",
    "status",
    "body",
    "size",
    "was",
    "for",
    "UTC",
    "T0",
    "T-48h",
    "T+2h",
    "2013-03-14",
    "17:00",
    "6h",
    "1Gbit",
    "900G",
    "300",
    "A",
    "AAAA",
    "TXT",
    "sqlite",
    "hmac-sha256",
    "env:X",
    "file:/k",
    "example.org",
    "@",
    "www",
    "a",
    "b",
    "web",
    "127.0.0.1",
    "127.0.0.1:53",
    "root@127.0.0.1",
    "a:/p",
    "b:/p",
    "a:80",
    "web:22",
    "http://a/",
    "\"text\"",
    "\"\\\"q\\\"\"",
    "\"open",
    ",",
    "->",
    "#",
    "# c",
    "\n",
    "\n  ",
    "\n\t",
    "\n\n",
    " ",
    "\\",
    "é",
    "\u{0}",
    "\r\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_runbooks_are_valid_and_canonical(text in runbook_text()) {
        let loaded = parse_source("gen.runbook", text.clone());
        prop_assert!(loaded.diagnostics.is_empty(), "{}\n{}", text, render_human(&loaded.sources, &loaded.diagnostics, false));
        prop_assert_eq!(format_source(&text).unwrap(), text);
    }

    #[test]
    fn formatting_is_idempotent_and_keeps_meaning(
        text in runbook_text(),
        noise in proptest::collection::vec(any::<u8>(), 1..40),
    ) {
        let messy = messy(&text, &noise);
        let before = parse_source("gen.runbook", messy.clone());
        prop_assert!(before.runbook.is_some(), "{}\n{}", messy, render_human(&before.sources, &before.diagnostics, false));
        let formatted = format_source(&messy).unwrap();
        prop_assert_eq!(&format_source(&formatted).unwrap(), &formatted);
        let after = parse_source("gen.runbook", formatted.clone());
        let before = without_spans(before.runbook.unwrap());
        let after = without_spans(after.runbook.unwrap());
        prop_assert_eq!(format!("{before:?}"), format!("{after:?}"));
        for (b, a) in before.steps.iter().zip(&after.steps) {
            prop_assert_eq!(before.describe(&b.action), after.describe(&a.action));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let loaded = parse_source("bytes.runbook", text.clone());
        let _ = render_human(&loaded.sources, &loaded.diagnostics, false);
        let _ = render_json(&loaded.sources, &loaded.diagnostics);
        if let Ok(formatted) = format_source(&text) {
            prop_assert_eq!(&format_source(&formatted).unwrap(), &formatted);
        }
    }

    #[test]
    fn token_soup_never_panics_and_formats_stably(picks in proptest::collection::vec(0..SOUP.len(), 0..200)) {
        let mut text = String::new();
        for (i, pick) in picks.iter().enumerate() {
            if i > 0 && i % 3 != 0 {
                text.push(' ');
            }
            text.push_str(SOUP[*pick]);
        }
        let loaded = parse_source("soup.runbook", text.clone());
        let _ = render_human(&loaded.sources, &loaded.diagnostics, false);
        let _ = render_json(&loaded.sources, &loaded.diagnostics);
        if let Ok(formatted) = format_source(&text) {
            prop_assert_eq!(&format_source(&formatted).unwrap(), &formatted);
            let reparsed = parse_source("soup.runbook", formatted);
            let codes = |l: &Loaded| l.diagnostics.iter().map(|d| (d.code, d.message.clone())).collect::<Vec<_>>();
            prop_assert_eq!(codes(&loaded), codes(&reparsed));
        }
    }
}
