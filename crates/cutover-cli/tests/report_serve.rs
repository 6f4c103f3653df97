//! `cutover serve` end to end: the binary on a loopback port, the JSON it
//! serves while the store changes, and (with Chromium) the page in a real
//! headless browser updating itself without a reload.

use cutover_store::{NewRun, NewStep, Phase, RunStatus, StepStatus, Store, Transition};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "c2VydmUtdGVzdC10c2lnLXNlY3JldC12YWx1ZQ==";

const RUNBOOK: &str = r#"runbook lab
  title "Dashboard test"

key lab-key hmac-sha256 env:CUTOVER_SERVE_TEST_TSIG

zone lab.test
  primary 127.0.0.1:5353 key lab-key
  verify  127.0.0.1:5353

step freeze
  manual "Put the wiki into read-only mode"
  expect 1m

step settle after freeze
  wait 30s
"#;

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A run of [`RUNBOOK`] in `dir/.cutover/lab.db` with `freeze` waiting
/// for its confirmation.
fn start_run(dir: &Path) -> (PathBuf, Store, i64) {
    let runbook = dir.join("lab.runbook");
    std::fs::write(&runbook, RUNBOOK).unwrap();
    let store = Store::open(&dir.join(".cutover").join("lab.db")).unwrap();
    let run = store
        .create_run(&NewRun {
            runbook_name: "lab".into(),
            runbook_path: runbook.display().to_string(),
            content_hash: "0123456789abcdef".into(),
            operator: "tester".into(),
            t0: None,
            steps: ["freeze", "settle"]
                .iter()
                .map(|name| NewStep {
                    name: (*name).into(),
                    definition: format!("step {name}"),
                    planned_start: None,
                })
                .collect(),
        })
        .unwrap();
    store.set_run_status(run, RunStatus::Running).unwrap();
    store
        .transition(
            run,
            &Transition {
                step: "freeze",
                status: StepStatus::Running,
                phase: Some(Phase::Act),
                new_attempt: true,
                event_kind: "phase",
                message: "acting (attempt 1 of 1)".into(),
                evidence: None,
            },
        )
        .unwrap();
    (runbook, store, run)
}

/// What `cutover confirm freeze` and the engine then record.
fn confirm_freeze(store: &Store, run: i64) {
    store
        .confirm(run, "freeze", "bob", Some("read-only"))
        .unwrap();
    store
        .transition(
            run,
            &Transition {
                step: "freeze",
                status: StepStatus::Done,
                phase: Some(Phase::Verify),
                new_attempt: false,
                event_kind: "done",
                message: "verified: confirmed by bob".into(),
                evidence: Some((
                    Phase::Verify,
                    "confirmed by bob".into(),
                    serde_json::json!({ "user": "bob" }),
                )),
            },
        )
        .unwrap();
}

/// Starts `cutover serve ARGS --listen 127.0.0.1:0`; returns it and its address.
fn serve(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("cutover"))
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--exit-after", "120"])
        .env("CUTOVER_SERVE_TEST_TSIG", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .rsplit_once("http://")
        .map(|(_, a)| a.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (Running(child), address)
}

/// A minimal HTTP/1.1 client (Connection: close, chunked bodies decoded).
fn http(address: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || after.len() < size {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_owned()
    };
    (status, body)
}

fn api_run(address: &str) -> serde_json::Value {
    let (status, body) = http(address, "GET", "/api/run", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_api_follows_the_run_and_the_page_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let runbook = dir.path().join("lab.runbook");
    std::fs::write(&runbook, RUNBOOK).unwrap();
    let (_server, address) = serve(&[&runbook.display().to_string()]);

    // Started before the run: the API says what it waits for.
    let (status, body) = http(&address, "GET", "/api/run", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("does not exist"), "{body}");

    let (_, store, run) = start_run(dir.path());
    let state = api_run(&address);
    assert_eq!(state["report"]["run"]["runbook"], "lab");
    assert_eq!(state["report"]["steps"][0]["status"], "running");
    assert_eq!(
        state["report"]["steps"][0]["last_message"],
        "acting (attempt 1 of 1)"
    );
    assert!(state["gantt_svg"].as_str().unwrap().starts_with("<svg"));

    confirm_freeze(&store, run);
    let state = api_run(&address);
    assert_eq!(state["report"]["steps"][0]["status"], "done");
    assert_eq!(state["report"]["confirmations"][0]["user"], "bob");
    assert!(!state.to_string().contains(SECRET));

    let (status, page) = http(&address, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"/dashboard.js\">"));
    let (status, script) = http(&address, "GET", "/dashboard.js", None);
    assert_eq!(status, 200);
    assert!(script.contains("/api/run"));
    let (status, _) = http(&address, "GET", "/style.css", None);
    assert_eq!(status, 200);
    let (status, _) = http(&address, "GET", "/nothing-here", None);
    assert_eq!(status, 404);
}

#[test]
fn a_non_loopback_address_is_refused() {
    let out = Command::new(assert_cmd::cargo::cargo_bin("cutover"))
        .args(["serve", "--state", "x.db", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}

/// WebDriver commands to chromedriver.
struct Browser {
    driver: String,
    session: String,
}

impl Browser {
    fn command(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let body = body.to_string();
        let (status, text) = http(
            &self.driver,
            method,
            &format!("/session/{}{path}", self.session),
            (method != "GET").then_some(body.as_str()),
        );
        assert_eq!(status, 200, "{method} {path}: {text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["value"].take()
    }

    fn script(&self, script: &str) -> serde_json::Value {
        self.command(
            "POST",
            "/execute/sync",
            serde_json::json!({ "script": script, "args": [] }),
        )
    }

    /// Polls `script` until it returns `want`, for at most 15 s.
    fn wait_for(&self, script: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.script(script);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited 15 s for {want:?}; last {got}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian packages)"]
fn the_page_updates_in_a_real_browser_without_reloading() {
    let dir = tempfile::tempdir().unwrap();
    let (runbook, store, run) = start_run(dir.path());
    let (_server, address) = serve(&[&runbook.display().to_string()]);

    let port = free_port();
    let _driver = Running(
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver)"),
    );
    let driver = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(&driver).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start within 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = dir.path().join("chromium-profile");
    let capabilities = serde_json::json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     format!("--user-data-dir={}", profile.display()), "--window-size=1200,900"]
        }
    }}});
    let (status, body) = http(&driver, "POST", "/session", Some(&capabilities.to_string()));
    assert_eq!(status, 200, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let browser = Browser {
        driver: driver.clone(),
        session: created["value"]["sessionId"].as_str().unwrap().to_owned(),
    };

    browser.command(
        "POST",
        "/url",
        serde_json::json!({ "url": format!("http://{address}/") }),
    );
    let status_of_freeze = "const e = document.querySelector('[data-step=\"freeze\"]'); return e ? e.dataset.status : 'absent';";
    browser.wait_for(status_of_freeze, "running");
    browser.script("window.cutoverNoReload = 'still here'; return true;");

    confirm_freeze(&store, run);
    browser.wait_for(status_of_freeze, "done");
    assert_eq!(
        browser.script("return window.cutoverNoReload || 'reloaded';"),
        "still here"
    );
    browser.wait_for(
        "return document.getElementById('outcome').textContent.includes('1 of 2 steps done') ? 'yes' : 'no';",
        "yes",
    );

    let page = browser.command("GET", "/source", serde_json::Value::Null);
    let page = page.as_str().unwrap();
    assert!(page.contains("freeze") && page.contains("<svg"), "{page}");
    assert!(!page.contains(SECRET), "the secret is in the page");
    http(
        &driver,
        "DELETE",
        &format!("/session/{}", browser.session),
        None,
    );
}
