//! Generated runbooks of any size, for benchmarks and stress tests of the
//! language, the planner and the engine: the same text everywhere, so their
//! figures compare.

use std::fmt::Write;

/// A valid runbook of `steps` steps over `hosts` hosts in `groups` groups
/// (at least one host and one group are generated). The steps use every
/// kind, chain with `after`, fan out over groups and sit inside a 12-hour
/// window with a 1 Gbit link between two sites.
pub fn large_runbook(steps: usize, hosts: usize, groups: usize) -> String {
    let hosts = hosts.max(2);
    let groups = groups.clamp(1, hosts);
    let mut out = String::with_capacity(steps * 120 + hosts * 80);
    let _ = writeln!(out, "runbook generated");
    let _ = writeln!(
        out,
        "  title \"{steps} steps over {hosts} hosts in {groups} groups\""
    );
    let _ = writeln!(out, "  window 2030-01-01 00:00 UTC for 12h");
    let _ = writeln!(out, "  link old-dc -> new-dc 1Gbit");
    let _ = writeln!(out);
    let _ = writeln!(out, "key gen-key hmac-sha256 env:GEN_TSIG");
    let _ = writeln!(out);
    let _ = writeln!(out, "zone example.test");
    let _ = writeln!(out, "  primary 127.0.0.1:5353 key gen-key");
    let _ = writeln!(out, "  verify 127.0.0.1:5353, 127.0.0.2:5353");
    let _ = writeln!(out);
    for h in 0..hosts {
        let site = if h % 2 == 0 { "old-dc" } else { "new-dc" };
        let _ = writeln!(
            out,
            "host h{h} site {site} addr 127.{}.{}.{} via local ./hosts/h{h}",
            1 + h / 62_500,
            (h / 250) % 250,
            h % 250 + 1
        );
    }
    let _ = writeln!(out);
    for g in 0..groups {
        let members: Vec<String> = (g..hosts)
            .step_by(groups)
            .map(|h| format!("h{h}"))
            .collect();
        let _ = writeln!(out, "group g{g} {}", members.join(", "));
    }
    for s in 0..steps {
        let _ = writeln!(out);
        let _ = write!(out, "step s{s}");
        if s % 100 == 0 {
            let _ = write!(out, " at T-{}m", (steps - s) % 600);
        }
        if s > 0 {
            let _ = write!(out, " after s{}", s - 1);
            if s >= 7 && s % 3 == 0 {
                let _ = write!(out, ", s{}", s - 7);
            }
        }
        let _ = writeln!(out);
        let (a, b) = (s % hosts, (s + 1) % hosts);
        let g = s % groups;
        match s % 8 {
            0 => {
                let _ = writeln!(out, "  dns.ttl example.test n{s} A 300 was 1d");
            }
            1 => {
                let _ = writeln!(
                    out,
                    "  dns.switch example.test n{s} A 192.0.2.{} -> 198.51.100.{}",
                    s % 250 + 1,
                    s % 250 + 1
                );
                let _ = writeln!(
                    out,
                    "  undo dns.switch example.test n{s} A 198.51.100.{} -> 192.0.2.{}",
                    s % 250 + 1,
                    s % 250 + 1
                );
                let _ = writeln!(out, "  verify http.check http://h{b}/ status 200");
            }
            2 => {
                let _ = writeln!(
                    out,
                    "  image.copy h{a}:/srv/images/s{s}.img -> h{b}:/srv/images/s{s}.img size 20G"
                );
                let _ = writeln!(out, "  timeout 2h");
            }
            3 => {
                let _ = writeln!(out, "  port.open g{g}:80, g{g}:443, h{a}:22");
            }
            4 => {
                let _ = writeln!(out, "  exec on g{g} \"systemctl restart app-{s}\"");
                let _ = writeln!(out, "  verify exec on g{g} \"systemctl is-active app-{s}\"");
                let _ = writeln!(out, "  retry 2");
            }
            5 => {
                let _ = writeln!(
                    out,
                    "  db.sync sqlite h{a}:/srv/db/s{s}.sqlite -> h{b}:/srv/db/s{s}.sqlite size 2G"
                );
            }
            6 => {
                let _ = writeln!(out, "  manual \"Confirm wave {s} is healthy\"");
                let _ = writeln!(out, "  expect 10m");
            }
            _ => {
                let _ = writeln!(out, "  wait 1m");
            }
        }
    }
    out
}

/// A runbook whose steps fan out over large groups: `groups` groups of
/// `members` hosts each, and `steps` steps that name them in turn —
/// `port.open GROUP:80, GROUP:443`, `exec on GROUP`, `http.check` with
/// `verify exec on GROUP` — between manual, wait and single-host steps.
/// Group members continue on indented lines of 100. The model of such a
/// runbook must grow with its text, not with steps times group size.
pub fn group_fanout_runbook(groups: usize, members: usize, steps: usize) -> String {
    let groups = groups.max(1);
    let members = members.max(1);
    let hosts = groups * members;
    let mut out = String::with_capacity(steps * 60 + hosts * 70);
    let _ = writeln!(out, "runbook fanout");
    let _ = writeln!(out, "  window 2030-01-01 00:00 UTC for 12h");
    let _ = writeln!(out, "  link old-dc -> new-dc 1Gbit");
    let _ = writeln!(out);
    let _ = writeln!(out, "key k hmac-sha256 env:GEN_TSIG");
    let _ = writeln!(out);
    let _ = writeln!(out, "zone example.test");
    let _ = writeln!(out, "  primary 127.0.0.1:5353 key k");
    let _ = writeln!(out);
    for h in 0..hosts {
        let site = if h % 2 == 0 { "old-dc" } else { "new-dc" };
        let _ = writeln!(
            out,
            "host h{h} site {site} addr 10.{}.{}.{} via local ./hosts/h{h}",
            h / 65_536,
            (h / 256) % 256,
            h % 256
        );
    }
    let _ = writeln!(out);
    for g in 0..groups {
        let names: Vec<String> = (g * members..(g + 1) * members)
            .map(|h| format!("h{h}"))
            .collect();
        for (i, line) in names.chunks(100).enumerate() {
            if i == 0 {
                let _ = writeln!(out, "group g{g} {}", line.join(", "));
            } else {
                let _ = writeln!(out, "  {}", line.join(", "));
            }
        }
    }
    for s in 0..steps {
        let g = s % groups;
        let _ = writeln!(out);
        if s == 0 {
            let _ = writeln!(out, "step s0");
        } else {
            let _ = writeln!(out, "step s{s} after s{}", s - 1);
        }
        match s % 6 {
            0 => {
                let _ = writeln!(out, "  port.open g{g}:80, g{g}:443");
            }
            1 => {
                let _ = writeln!(out, "  exec on g{g} \"systemctl restart app-{s}\"");
            }
            2 => {
                let _ = writeln!(out, "  http.check http://h{}/ status 200", s % hosts);
                let _ = writeln!(out, "  verify exec on g{g} \"true\"");
            }
            3 => {
                let _ = writeln!(out, "  manual \"Confirm wave {s} is healthy\"");
                let _ = writeln!(out, "  expect 10m");
            }
            4 => {
                let _ = writeln!(out, "  wait 1m");
            }
            _ => {
                let _ = writeln!(out, "  port.open h{}:22", s % hosts);
            }
        }
    }
    out
}
