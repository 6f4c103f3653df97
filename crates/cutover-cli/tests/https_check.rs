//! `http.check https://… at HOST ca FILE` through the real `cutover run`
//! binary, against a TLS server on 127.0.0.1 with certificates from a lab
//! CA (the fixture shared with `cutover-steps/tests/tls_lab`): the lab
//! certificate passes with the name kept for SNI and `Host`; an expired
//! one, one for another name and one inside `cert-days` fail, with the
//! certificate's names and dates in the state file's evidence.

#[path = "../../cutover-steps/tests/tls_lab/mod.rs"]
mod tls_lab;

mod support;

use cutover_store::EvidenceRecord;
use std::path::Path;
use tls_lab::{LabCa, Server};

/// Writes `NAME.runbook` (host `wiki-new` at 127.0.0.1, one step `check`
/// with `line` and `timeout 3s`), runs it with `cutover run` and returns
/// the exit code, the output, the step's status from `cutover status
/// --format json` and the step's last evidence from the state file.
async fn run(dir: &Path, name: &str, line: &str) -> (i32, String, String, EvidenceRecord) {
    let text = format!(
        "runbook {name}\n\nhost wiki-new addr 127.0.0.1 via local ./wiki-new\n\nstep check\n  {line}\n  timeout 3s\n"
    );
    let dir = dir.to_path_buf();
    let name = name.to_string();
    // The server answers on this runtime while the binary runs.
    tokio::task::spawn_blocking(move || {
        let ran = support::run::run(&dir, &name, &text, &[]);
        let status = ran.status("check").to_string();
        let evidence = ran.last("check").clone();
        (ran.code, ran.output, status, evidence)
    })
    .await
    .unwrap()
}

fn url(server: &Server) -> String {
    format!("https://wiki.lab.test:{}/", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_certificate_at_the_new_host_passes_through_cutover_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = LabCa::new();
    ca.write_pem(&d.join("lab-ca.pem"));
    let server = Server::start(&ca.leaf(&["wiki.lab.test"], -1, 90)).await;
    let (code, output, status, e) = run(
        d,
        "wiki",
        &format!(
            "http.check {} at wiki-new ca lab-ca.pem status 200 body \"new wiki\"",
            url(&server)
        ),
    )
    .await;
    assert_eq!(code, 0, "{output}");
    assert_eq!(status, "done", "{output}");
    assert!(e.summary.contains("with \"new wiki\""), "{}", e.summary);
    assert_eq!(
        e.data["certificate"]["names"],
        serde_json::json!(["wiki.lab.test"])
    );
    assert!(
        e.data["certificate"]["issuer"]
            .as_str()
            .unwrap()
            .contains("cutover lab CA")
    );
    let seen = server.seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|s| s.sni.as_deref() == Some("wiki.lab.test")
                && s.host == Some(format!("wiki.lab.test:{}", server.port()))),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_wrong_name_certificates_fail_naming_names_and_dates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = LabCa::new();
    ca.write_pem(&d.join("lab-ca.pem"));

    let expired = Server::start(&ca.leaf(&["wiki.lab.test"], -60, -3)).await;
    let (code, output, status, e) = run(
        d,
        "expired",
        &format!("http.check {} at wiki-new ca lab-ca.pem", url(&expired)),
    )
    .await;
    assert_eq!(code, 1, "{output}");
    assert_eq!(status, "failed", "{output}");
    let not_after = (chrono::Utc::now() - chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    assert!(e.summary.contains("certificate expired"), "{}", e.summary);
    assert!(
        e.summary
            .contains(&format!("to {not_after} 00:00 UTC; expired 3 days ago")),
        "{}",
        e.summary
    );
    assert!(
        e.data["certificate"]["not_after"]
            .as_str()
            .unwrap()
            .starts_with(&not_after)
    );

    let wrong = Server::start(&ca.leaf(&["old-wiki.lab.test"], -1, 90)).await;
    let (code, output, status, e) = run(
        d,
        "wrong-name",
        &format!("http.check {} at wiki-new ca lab-ca.pem", url(&wrong)),
    )
    .await;
    assert_eq!(code, 1, "{output}");
    assert_eq!(status, "failed", "{output}");
    assert!(
        e.summary
            .contains("certificate for old-wiki.lab.test (issuer CN=cutover lab CA)"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_days_400_fails_a_certificate_valid_for_30_days() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = LabCa::new();
    ca.write_pem(&d.join("lab-ca.pem"));
    let server = Server::start(&ca.leaf(&["wiki.lab.test"], -1, 30)).await;
    let (code, output, status, e) = run(
        d,
        "soon",
        &format!(
            "http.check {} at wiki-new ca lab-ca.pem cert-days 400",
            url(&server)
        ),
    )
    .await;
    assert_eq!(code, 1, "{output}");
    assert_eq!(status, "failed", "{output}");
    assert!(e.summary.contains("within cert-days 400"), "{}", e.summary);
    let not_after = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    assert!(e.summary.contains(&not_after), "{}", e.summary);
}
