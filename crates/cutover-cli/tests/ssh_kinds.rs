//! Every kind that reaches a `via ssh` host, through a real OpenSSH server
//! and the real `cutover run`: `exec on HOST` runs in an ssh session,
//! `port.open`/`port.closed`/`http.check ... from HOST` connect through
//! `cutover agent` started over ssh, and `image.copy` to the host maps its
//! path like any host's. The runbook's host line is plain
//! `via ssh USER@127.0.0.1:PORT`; the `ssh` on the coordinator's `PATH`
//! only adds the test server's client config (`-F`).

#[path = "../../cutover-steps/tests/tls_lab/mod.rs"]
mod tls_lab;

mod support;

use std::net::{SocketAddr, TcpListener};

use support::run::run;
use support::sshd::Sshd;
use support::web::Web;
use tls_lab::{LabCa, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs sshd (apt-get install openssh-server openssh-client)"]
async fn exec_port_http_and_copy_through_a_real_sshd() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let sshd = Sshd::start(&d);
    std::fs::create_dir_all(d.join("wiki-new")).unwrap();
    std::fs::create_dir_all(d.join("far")).unwrap();
    std::fs::write(d.join("wiki-new/disk.img"), vec![5u8; 300_000]).unwrap();
    let ca = LabCa::new();
    ca.write_pem(&d.join("lab-ca.pem"));
    let tls = Server::start(&ca.leaf(&["wiki.lab.test"], -1, 90)).await;
    let web = Web::start("127.0.0.1:0", "plain wiki");
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = web.addr.port();
    let text = format!(
        "runbook ssh\n\n\
         host wiki-new addr 127.0.0.1 via local ./wiki-new\n\
         host far addr 127.0.0.1 via ssh {}@127.0.0.1:{}\n\n\
         step exec\n  exec on far \"echo $SSH_CONNECTION > {}/session\"\n\n\
         step open\n  port.open wiki-new:{port} from far\n\n\
         step closed\n  port.closed wiki-new:{closed} from far\n\n\
         step plain\n  http.check http://wiki-new:{port}/ from far body \"plain wiki\"\n  timeout 5s\n\n\
         step tls\n  http.check https://wiki.lab.test:{}/ at wiki-new from far ca lab-ca.pem body \"new wiki\"\n  timeout 5s\n\n\
         step copy\n  image.copy wiki-new:/disk.img -> far:{}/disk.img\n",
        sshd.user,
        sshd.port,
        d.display(),
        tls.port(),
        d.join("far").display(),
    );
    let path = sshd.path_with_wrapper();
    let ran = {
        let d = d.clone();
        tokio::task::spawn_blocking(move || run(&d, "ssh", &text, &[("PATH", &path)]))
            .await
            .unwrap()
    };
    let log = sshd.log();
    drop(sshd);
    assert_eq!(ran.code, 0, "{}\nsshd: {log}", ran.output);
    for step in ["exec", "open", "closed", "plain", "tls", "copy"] {
        assert_eq!(ran.status(step), "done", "{step}: {}", ran.output);
    }

    // exec ran in an ssh session of this server.
    let session = std::fs::read_to_string(d.join("session")).unwrap();
    let fields: Vec<&str> = session.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{session}");
    assert_eq!(fields[0], "127.0.0.1");
    let exec = ran
        .evidence
        .iter()
        .find(|e| e.step == "exec" && e.summary.contains("exited 0 on far"));
    assert!(exec.is_some(), "{:?}", ran.evidence);

    // The connects were made by the agent ssh started: the address it
    // reports is the connection the server accepted.
    let open = ran.last("open");
    assert_eq!(
        open.summary,
        format!("open from far (127.0.0.1): wiki-new:{port}")
    );
    let local: SocketAddr = open.data[0]["local"].as_str().unwrap().parse().unwrap();
    assert!(
        web.peers_at_least(1).contains(&local),
        "{local}: {:?}",
        web.peers_at_least(1)
    );
    let closed_e = ran.last("closed");
    assert_eq!(
        closed_e.summary,
        format!("closed from far (127.0.0.1): wiki-new:{closed}")
    );
    let plain = ran.last("plain");
    assert!(
        plain
            .summary
            .contains("from far (127.0.0.1) answered 200 with \"plain wiki\""),
        "{}",
        plain.summary
    );
    let tls_e = ran.last("tls");
    assert!(
        tls_e
            .summary
            .contains("from far (127.0.0.1) answered 200 with \"new wiki\""),
        "{}",
        tls_e.summary
    );
    assert!(
        tls.seen()
            .iter()
            .any(|s| s.sni.as_deref() == Some("wiki.lab.test")),
        "{:?}",
        tls.seen()
    );

    // The copy went to the host's path (its root is `/` over ssh).
    assert_eq!(
        std::fs::read(d.join("far/disk.img")).unwrap(),
        vec![5u8; 300_000]
    );

    // One session per exec, connect, request and copy, all through sshd.
    let sessions = log.matches("Accepted publickey").count();
    assert!(sessions >= 6, "{sessions} sessions:\n{log}");
}
