//! `http.check` of `https://` URLs through the real engine, against a TLS
//! server on 127.0.0.1 with certificates from a lab CA: `at HOST` sends the
//! URL's name (SNI and `Host`) to the host's address, `ca FILE` trusts the
//! lab CA, and the evidence names the certificate's names, issuer and
//! expiry — also when the handshake fails (expired, wrong name, unknown
//! CA). A certificate near its end warns; `cert-days N` fails it.

mod tls_lab;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use cutover_engine::{Controls, Engine, NoPrompter, NoReporter, Opened, RunOptions, open_run};
use cutover_steps::Kinds;
use cutover_store::{EvidenceRecord, StepStatus, Store};
use tls_lab::{LabCa, Server};

/// Runs a runbook whose one step `check` is `line` (with `timeout 3s`),
/// the host `wiki-new` at 127.0.0.1, and returns the step's status and its
/// evidence.
async fn run_check(dir: &Path, line: &str) -> (StepStatus, Vec<EvidenceRecord>) {
    let text = format!(
        "runbook tls\n\nhost wiki-new addr 127.0.0.1 via local ./n\n\nstep check\n  {line}\n  timeout 3s\n"
    );
    let path = dir.join("test.runbook");
    std::fs::write(&path, text).unwrap();
    let loaded = cutover_lang::load_file(&path);
    let runbook = loaded.runbook.unwrap_or_else(|| {
        panic!(
            "{}",
            cutover_lang::render_human(&loaded.sources, &loaded.diagnostics, false)
        )
    });
    let db = dir.join(".cutover/test.db");
    let _ = std::fs::remove_file(&db);
    let store = Store::open(&db).unwrap();
    let state = match open_run(store, &runbook, "test.runbook", "hash", Some(Utc::now())).unwrap() {
        Opened::New(state) | Opened::Resumed(state) => state,
        Opened::Changed { .. } => panic!("a fresh state file holds a changed run"),
    };
    let options = RunOptions {
        runbook_dir: dir.to_path_buf(),
        default_timeout: Duration::from_secs(3),
        ..RunOptions::default()
    };
    let engine = Engine {
        runbook: &runbook,
        kinds: &Kinds,
        reporter: &NoReporter,
        prompter: &NoPrompter,
        options: &options,
    };
    let controls = Controls::default();
    let _ = tokio::time::timeout(Duration::from_secs(30), engine.run(&state, &controls))
        .await
        .expect("the run did not end within 30 s");
    drop(state);
    let store = Store::open(&db).unwrap();
    let run = store.latest_run().unwrap().unwrap();
    let status = store
        .steps(run.id)
        .unwrap()
        .into_iter()
        .find(|s| s.name == "check")
        .unwrap()
        .status;
    (status, store.evidence(run.id).unwrap())
}

/// The last evidence of the run (the verdict the step ended on).
fn last(evidence: &[EvidenceRecord]) -> &EvidenceRecord {
    evidence.last().expect("the step left no evidence")
}

fn url(server: &Server) -> String {
    format!("https://wiki.lab.test:{}/", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_certificate_passes_at_the_new_host_with_the_name_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LabCa::new();
    ca.write_pem(&dir.path().join("lab-ca.pem"));
    let server = Server::start(&ca.leaf(&["wiki.lab.test"], -1, 90)).await;
    let (status, evidence) = run_check(
        dir.path(),
        &format!(
            "http.check {} at wiki-new ca lab-ca.pem status 200 body \"new wiki\"",
            url(&server)
        ),
    )
    .await;
    let e = last(&evidence);
    assert_eq!(status, StepStatus::Done, "{evidence:#?}");
    assert!(
        e.summary.contains("answered 200 with \"new wiki\""),
        "{}",
        e.summary
    );
    assert!(!e.summary.contains("warning"), "{}", e.summary);
    let cert = &e.data["certificate"];
    assert_eq!(
        cert["names"],
        serde_json::json!(["wiki.lab.test"]),
        "{}",
        e.data
    );
    assert!(
        cert["issuer"].as_str().unwrap().contains("cutover lab CA"),
        "{}",
        e.data
    );
    assert!(cert["days_left"].as_i64().unwrap() >= 88, "{}", e.data);
    assert!(cert["not_after"].is_string());
    assert_eq!(e.data["addr"], format!("127.0.0.1:{}", server.port()));
    let seen = server.seen();
    assert!(!seen.is_empty());
    for s in seen {
        assert_eq!(s.sni.as_deref(), Some("wiki.lab.test"));
        assert_eq!(s.host, Some(format!("wiki.lab.test:{}", server.port())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_lab_ca_the_certificate_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LabCa::new();
    let server = Server::start(&ca.leaf(&["wiki.lab.test"], -1, 90)).await;
    let (status, evidence) = run_check(
        dir.path(),
        &format!("http.check {} at wiki-new", url(&server)),
    )
    .await;
    let e = last(&evidence);
    assert_eq!(status, StepStatus::Failed, "{evidence:#?}");
    // The whole chain, down to rustls' reason, not just "error sending request".
    assert!(e.summary.contains("UnknownIssuer"), "{}", e.summary);
    assert!(
        e.summary.contains("certificate for wiki.lab.test"),
        "{}",
        e.summary
    );
    assert_eq!(
        e.data["certificate"]["names"],
        serde_json::json!(["wiki.lab.test"])
    );
    assert!(server.seen().is_empty(), "no request was answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_fails_naming_its_dates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LabCa::new();
    ca.write_pem(&dir.path().join("lab-ca.pem"));
    let server = Server::start(&ca.leaf(&["wiki.lab.test"], -60, -3)).await;
    let (status, evidence) = run_check(
        dir.path(),
        &format!(
            "http.check {} at wiki-new ca lab-ca.pem body \"new wiki\"",
            url(&server)
        ),
    )
    .await;
    let e = last(&evidence);
    assert_eq!(status, StepStatus::Failed, "{evidence:#?}");
    assert!(e.summary.contains("certificate expired"), "{}", e.summary);
    let not_after = (Utc::now() - chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        e.summary.contains(&format!("to {not_after} 00:00 UTC")),
        "{}",
        e.summary
    );
    assert!(e.summary.contains("expired 3 days ago"), "{}", e.summary);
    assert!(e.data["certificate"]["days_left"].as_i64().unwrap() < 0);
    assert!(
        e.data["certificate"]["not_after"]
            .as_str()
            .unwrap()
            .starts_with(&not_after)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_fails_naming_the_names_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LabCa::new();
    ca.write_pem(&dir.path().join("lab-ca.pem"));
    let server = Server::start(&ca.leaf(&["old-wiki.lab.test", "www.lab.test"], -1, 90)).await;
    let (status, evidence) = run_check(
        dir.path(),
        &format!("http.check {} at wiki-new ca lab-ca.pem", url(&server)),
    )
    .await;
    let e = last(&evidence);
    assert_eq!(status, StepStatus::Failed, "{evidence:#?}");
    assert!(
        e.summary
            .contains("certificate not valid for name \"wiki.lab.test\""),
        "{}",
        e.summary
    );
    assert!(
        e.summary
            .contains("certificate for old-wiki.lab.test, www.lab.test"),
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
        serde_json::json!(["old-wiki.lab.test", "www.lab.test"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_days_fails_a_certificate_valid_for_30_days() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LabCa::new();
    ca.write_pem(&dir.path().join("lab-ca.pem"));
    let server = Server::start(&ca.leaf(&["wiki.lab.test"], -1, 30)).await;
    let (status, evidence) = run_check(
        dir.path(),
        &format!(
            "http.check {} at wiki-new ca lab-ca.pem cert-days 400",
            url(&server)
        ),
    )
    .await;
    let e = last(&evidence);
    assert_eq!(status, StepStatus::Failed, "{evidence:#?}");
    assert!(e.summary.contains("within cert-days 400"), "{}", e.summary);
    assert!(e.summary.contains("expires"), "{}", e.summary);

    // The same certificate passes a check that asks for 20 days.
    let (status, evidence) = run_check(
        dir.path(),
        &format!(
            "http.check {} at wiki-new ca lab-ca.pem cert-days 20",
            url(&server)
        ),
    )
    .await;
    assert_eq!(status, StepStatus::Done, "{evidence:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_near_its_end_passes_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LabCa::new();
    ca.write_pem(&dir.path().join("lab-ca.pem"));
    let server = Server::start(&ca.leaf(&["wiki.lab.test"], -80, 7)).await;
    let (status, evidence) = run_check(
        dir.path(),
        &format!("http.check {} at wiki-new ca lab-ca.pem", url(&server)),
    )
    .await;
    let e = last(&evidence);
    assert_eq!(status, StepStatus::Done, "{evidence:#?}");
    assert!(
        e.summary
            .contains("warning: the certificate for wiki.lab.test expires"),
        "{}",
        e.summary
    );
    assert!(e.data["warning"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_ca_file_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LabCa::new();
    let server = Server::start(&ca.leaf(&["wiki.lab.test"], -1, 90)).await;
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let started = std::time::Instant::now();
    let (status, evidence) = run_check(
        dir.path(),
        &format!("http.check {} at wiki-new ca missing.pem", url(&server)),
    )
    .await;
    assert_eq!(status, StepStatus::Failed, "{evidence:#?}");
    let text = format!("{evidence:?}");
    assert!(text.contains("cannot read the CA file"), "{text}");
    assert!(text.contains("missing.pem"), "{text}");
    let (status, evidence) = run_check(
        dir.path(),
        &format!("http.check {} at wiki-new ca empty.pem", url(&server)),
    )
    .await;
    assert_eq!(status, StepStatus::Failed, "{evidence:#?}");
    assert!(format!("{evidence:?}").contains("holds no PEM certificate"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fatal, not polled"
    );
}
