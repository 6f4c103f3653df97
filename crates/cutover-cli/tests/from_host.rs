//! `port.open … from HOST` and `http.check … from HOST` through the real
//! `cutover run` and `cutover agent` binaries: the connections are made on
//! the host, by its agent, and the evidence names the host, its address,
//! the target and the connection's address there.
//!
//! The ignored test puts the host in a network namespace of its own (veth
//! to this one) and blocks the target's port there with nftables: the
//! check passes from the coordinator and fails from the host — the 2009
//! move's ACL that forgot port 80.

#[path = "../../cutover-steps/tests/tls_lab/mod.rs"]
mod tls_lab;

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use support::run::run;
use support::web::Web;
use tls_lab::{LabCa, Server};

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_from_an_agent_host_are_made_there_and_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::create_dir_all(d.join("lb-root")).unwrap();
    let ca = LabCa::new();
    ca.write_pem(&d.join("lab-ca.pem"));
    let tls = Server::start(&ca.leaf(&["wiki.lab.test"], -1, 90)).await;
    let web = Web::start("127.0.0.1:0", "plain wiki");
    let web_here = Web::start("127.0.0.2:0", "old lb");
    let closed = closed_port();
    let text = format!(
        "runbook from\n\n\
         host wiki-new addr 127.0.0.1 via local ./wiki-new\n\
         host old-lb addr 127.0.0.2 via agent \"{BIN} agent --stdio --root {}\"\n\n\
         step open\n  port.open wiki-new:{} from old-lb\n\n\
         step closed\n  port.closed wiki-new:{closed} from old-lb\n\n\
         step local\n  port.open old-lb:{} from wiki-new\n\n\
         step plain\n  http.check http://wiki-new:{}/health from old-lb body \"plain wiki\"\n  timeout 5s\n\n\
         step tls\n  http.check https://wiki.lab.test:{}/ at wiki-new from old-lb ca lab-ca.pem body \"new wiki\"\n  timeout 5s\n",
        d.join("lb-root").display(),
        web.addr.port(),
        web_here.addr.port(),
        web.addr.port(),
        tls.port(),
    );
    let ran = tokio::task::spawn_blocking(move || run(&d, "from", &text, &[]))
        .await
        .unwrap();
    assert_eq!(ran.code, 0, "{}", ran.output);
    for step in ["open", "closed", "local", "plain", "tls"] {
        assert_eq!(ran.status(step), "done", "{step}: {}", ran.output);
    }

    let open = ran.last("open");
    assert_eq!(
        open.summary,
        format!("open from old-lb (127.0.0.2): wiki-new:{}", web.addr.port()),
    );
    assert_eq!(open.data[0]["from"]["host"], "old-lb");
    assert_eq!(open.data[0]["from"]["addr"], "127.0.0.2");
    // The connection's address on the host is the one the server saw: the
    // agent made it (the coordinator reports no such address).
    let local: SocketAddr = open.data[0]["local"].as_str().unwrap().parse().unwrap();
    assert!(
        web.peers_at_least(1).contains(&local),
        "{local} not in {:?}",
        web.peers_at_least(1)
    );

    let closed_e = ran.last("closed");
    assert_eq!(
        closed_e.summary,
        format!("closed from old-lb (127.0.0.2): wiki-new:{closed}")
    );
    let error = closed_e.data[0]["error"].as_str().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{closed}")), "{error}");
    assert!(error.to_lowercase().contains("refused"), "{error}");

    // A via local host is this machine: its checks connect from here.
    let local_e = ran.last("local");
    assert_eq!(
        local_e.summary,
        format!(
            "open from wiki-new (127.0.0.1, this machine): old-lb:{}",
            web_here.addr.port()
        )
    );
    assert!(local_e.data[0].get("local").is_none());
    assert_eq!(web_here.peers_at_least(1).len(), 1);

    let plain = ran.last("plain");
    assert!(
        plain
            .summary
            .contains("from old-lb (127.0.0.2) answered 200 with \"plain wiki\""),
        "{}",
        plain.summary
    );
    let local: SocketAddr = plain.data["local"].as_str().unwrap().parse().unwrap();
    assert!(
        web.peers_at_least(2).contains(&local),
        "{local} not in {:?}",
        web.peers_at_least(2)
    );

    // TLS and HTTP ran end to end through the agent's tunnel: the server
    // saw the URL's name for SNI and Host, and its certificate is in the
    // evidence.
    let tls_e = ran.last("tls");
    assert!(
        tls_e
            .summary
            .contains("from old-lb (127.0.0.2) answered 200 with \"new wiki\""),
        "{}",
        tls_e.summary
    );
    assert_eq!(
        tls_e.data["certificate"]["names"],
        serde_json::json!(["wiki.lab.test"])
    );
    assert!(
        tls_e.data["local"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let seen = tls.seen();
    assert!(
        seen.iter()
            .any(|s| s.sni.as_deref() == Some("wiki.lab.test")
                && s.host == Some(format!("wiki.lab.test:{}", tls.port()))),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_certificate_seen_from_a_host_fails_with_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::create_dir_all(d.join("lb-root")).unwrap();
    let ca = LabCa::new();
    ca.write_pem(&d.join("lab-ca.pem"));
    let tls = Server::start(&ca.leaf(&["old-wiki.lab.test"], -1, 90)).await;
    let text = format!(
        "runbook wrong\n\n\
         host wiki-new addr 127.0.0.1 via local ./wiki-new\n\
         host old-lb addr 127.0.0.2 via agent \"{BIN} agent --stdio --root {}\"\n\n\
         step tls\n  http.check https://wiki.lab.test:{}/ at wiki-new from old-lb ca lab-ca.pem\n  timeout 2s\n",
        d.join("lb-root").display(),
        tls.port(),
    );
    let ran = tokio::task::spawn_blocking(move || run(&d, "wrong", &text, &[]))
        .await
        .unwrap();
    assert_eq!(ran.code, 1, "{}", ran.output);
    assert_eq!(ran.status("tls"), "failed", "{}", ran.output);
    let e = ran.last("tls");
    assert!(
        e.summary
            .contains("from old-lb (127.0.0.2): TLS handshake with wiki.lab.test"),
        "{}",
        e.summary
    );
    assert!(
        e.summary.contains("does not cover wiki.lab.test"),
        "{}",
        e.summary
    );
    assert_eq!(
        e.data["certificate"]["names"],
        serde_json::json!(["old-wiki.lab.test"])
    );
}

/// A network namespace with a veth pair to this one, `10.A.B.1/30` here
/// and `10.A.B.2/30` there, removed (with its firewall rules) on drop.
struct Netns {
    name: String,
    here: String,
    host_side: String,
    ns_side: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn create() -> Netns {
        let pid = std::process::id();
        let taken = String::from_utf8(
            Command::new("ip")
                .args(["-o", "-4", "addr", "show"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        // A /30 no interface here uses.
        let (a, b) = (0..200u32)
            .map(|i| (200 + (pid + i) % 50, (pid / 50 + i * 7) % 250))
            .find(|(a, b)| !taken.contains(&format!(" 10.{a}.{b}.")))
            .expect("no free 10.x.y.0/30 here");
        let ns = Netns {
            name: format!("cvfrom{pid}"),
            here: format!("cvf{pid}h"),
            host_side: format!("10.{a}.{b}.1"),
            ns_side: format!("10.{a}.{b}.2"),
        };
        let peer = format!("cvf{pid}n");
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link", "add", &ns.here, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_side),
            "dev",
            &ns.here,
        ]);
        ip(&["link", "set", &ns.here, "up"]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.ns_side),
            "dev",
            &peer,
        ]);
        ns.exec(&["ip", "link", "set", &peer, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; it must succeed.
    fn exec(&self, command: &[&str]) {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(command);
        ip(&args);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.here])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Must-show: the same `port.open` and `http.check` pass from the
/// coordinator and fail from a host whose namespace drops the target's
/// port, with evidence naming the host and its address, the target and
/// its address, and the cause. Before the rule, the same checks pass from
/// the host, and the connection comes from the host's own address.
#[test]
#[ignore = "needs root, ip netns and nft (apt-get install iproute2 nftables)"]
fn a_check_from_a_host_whose_firewall_drops_the_port_fails_there_and_passes_here() {
    let ns = Netns::create();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("lb-root")).unwrap();
    let web = Web::start(&format!("{}:0", ns.host_side), "wiki on the new host");
    let port = web.addr.port();
    let runbook = |name: &str, steps: &str| {
        format!(
            "runbook {name}\n\n\
             host wiki-new addr {} via local ./wiki-new\n\
             host old-lb addr {} via agent \"ip netns exec {} {BIN} agent --stdio --root {}\"\n\n{steps}",
            ns.host_side,
            ns.ns_side,
            ns.name,
            d.join("lb-root").display(),
        )
    };
    let ports = format!(
        "step here\n  port.open wiki-new:{port}\n  timeout 3s\n\n\
         step there after here\n  port.open wiki-new:{port} from old-lb\n  timeout 3s\n"
    );
    let web_check = format!(
        "step web\n  http.check http://wiki-new:{port}/ from old-lb body \"wiki on the new host\"\n  timeout 3s\n"
    );

    // The path is open: both pass, and the host's connection comes from
    // its own address in its namespace.
    let open = run(
        d,
        "open",
        &runbook("open", &format!("{ports}\n{web_check}")),
        &[],
    );
    assert_eq!(open.code, 0, "{}", open.output);
    let there = open.last("there");
    assert_eq!(
        there.summary,
        format!("open from old-lb ({}): wiki-new:{port}", ns.ns_side)
    );
    let local: SocketAddr = there.data[0]["local"].as_str().unwrap().parse().unwrap();
    assert_eq!(local.ip().to_string(), ns.ns_side);
    assert!(
        web.peers_at_least(3).contains(&local),
        "{local}: {:?}",
        web.peers_at_least(3)
    );
    let local: SocketAddr = open.last("web").data["local"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(local.ip().to_string(), ns.ns_side);

    // The host's firewall forgets the port.
    ns.exec(&["nft", "add", "table", "inet", "cutover_test"]);
    ns.exec(&[
        "nft",
        "add chain inet cutover_test out { type filter hook output priority 0; policy accept; }",
    ]);
    ns.exec(&[
        "nft",
        &format!(
            "add rule inet cutover_test out ip daddr {} tcp dport {port} drop",
            ns.host_side
        ),
    ]);

    let blocked = run(d, "blocked", &runbook("blocked", &ports), &[]);
    assert_eq!(blocked.code, 1, "{}", blocked.output);
    assert_eq!(blocked.status("here"), "done", "{}", blocked.output);
    assert_eq!(
        blocked.last("here").summary,
        format!("open: wiki-new:{port}")
    );
    assert_eq!(blocked.status("there"), "failed", "{}", blocked.output);
    let there = blocked.last("there");
    assert_eq!(
        there.summary,
        format!(
            "wiki-new:{port} closed ({}:{port}: no answer within 2s) from old-lb ({})",
            ns.host_side, ns.ns_side
        )
    );
    assert_eq!(there.data[0]["addr"], format!("{}:{port}", ns.host_side));
    assert_eq!(there.data[0]["from"]["addr"], ns.ns_side);

    let web_blocked = run(d, "web-blocked", &runbook("web-blocked", &web_check), &[]);
    assert_eq!(web_blocked.code, 1, "{}", web_blocked.output);
    let e = web_blocked.last("web");
    for summary in [&blocked.last("here").summary, &there.summary, &e.summary] {
        eprintln!("evidence: {summary}");
    }
    assert!(
        e.summary.starts_with(&format!(
            "http://wiki-new:{port}/ from old-lb ({}): {}:{port}: no answer within",
            ns.ns_side, ns.host_side
        )),
        "{}",
        e.summary
    );
}
