//! `cutover serve` end to end: the binary on a loopback port, the JSON it
//! serves while the store changes, and (with Chromium) the page in a real
//! headless browser: following a real lab run without a reload, and showing
//! a copy's progress and a countdown that ticks on even when the server is
//! gone. All traffic is plain HTTP on 127.0.0.1, every request has a
//! timeout, every wait a bound, and every process started here is stopped
//! however the test ends.

use cutover_store::{NewRun, NewStep, Phase, RunStatus, StepStatus, Store, Transition};
use reqwest::Method;
use reqwest::blocking::Client;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

const SECRET: &str = "c2VydmUtdGVzdC10c2lnLXNlY3JldC12YWx1ZQ==";

const RUNBOOK: &str = r#"runbook lab
  title "Dashboard test"

key lab-key hmac-sha256 env:CUTOVER_SERVE_TEST_TSIG

zone lab.test
  primary 127.0.0.1:5353 key lab-key
  verify  127.0.0.1:5353

host old site a addr 127.0.0.10 via local old
host new site b addr 127.0.0.20 via local new

step freeze
  manual "Put the wiki into read-only mode"
  expect 1m

step copy after freeze
  image.copy old:/srv/wiki.img -> new:/srv/wiki.img size 64MiB

step settle after freeze
  wait 2m

step sync-db
  db.sync postgres old/wiki user wiki password env:CUTOVER_SERVE_TEST_DB_PW -> new/wiki user wiki password env:CUTOVER_SERVE_TEST_DB_PW freeze freeze
"#;

/// Every HTTP request here gives up after this long (chromedriver answers
/// a new session, the slowest request, in a few seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest the lab run may take (it takes well under a minute).
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// One client for every request: plain HTTP, never through a proxy.
static HTTP: LazyLock<Client> = LazyLock::new(|| {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
        .expect("an HTTP client")
});

/// Sends a request; its status and body.
fn request(
    method: Method,
    url: &str,
    body: Option<&serde_json::Value>,
) -> reqwest::Result<(u16, String)> {
    let mut request = HTTP.request(method, url);
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let response = request.send()?;
    let status = response.status().as_u16();
    Ok((status, response.text()?))
}

fn get(address: &str, path: &str) -> (u16, String) {
    request(Method::GET, &format!("http://{address}{path}"), None)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn api_run(address: &str) -> serde_json::Value {
    let (status, body) = get(address, "/api/run");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

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
            steps: ["freeze", "copy", "settle", "sync-db"]
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
    act(&store, run, "freeze");
    (runbook, store, run)
}

/// What the engine records when `step` starts acting.
fn act(store: &Store, run: i64, step: &str) {
    store
        .transition(
            run,
            &Transition {
                step,
                status: StepStatus::Running,
                phase: Some(Phase::Act),
                new_attempt: true,
                event_kind: "phase",
                message: "acting (attempt 1 of 1)".into(),
                evidence: None,
            },
        )
        .unwrap();
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

/// After [`confirm_freeze`]: `copy` acting, 24 of 64 MiB copied,
/// `sync-db`'s initial copy at 3 of 12 MiB (a database's unit, "bytes
/// copied") and `settle` counting down 90 s from now, as the engine logs
/// them.
fn copy_and_wait(store: &Store, run: i64) {
    act(store, run, "copy");
    for done in [16u64 << 20, 24 << 20] {
        let data = serde_json::json!({ "done": done, "total": 64u64 << 20, "unit": "bytes" });
        store
            .append_event(run, Some("copy"), "progress", "copying", Some(&data))
            .unwrap();
    }
    act(store, run, "sync-db");
    let data =
        serde_json::json!({ "done": 3u64 << 20, "total": 12u64 << 20, "unit": "bytes copied" });
    store
        .append_event(run, Some("sync-db"), "progress", "copying", Some(&data))
        .unwrap();
    act(store, run, "settle");
    let until = chrono::Utc::now() + chrono::TimeDelta::seconds(90);
    let data = serde_json::json!({ "until": until, "label": "waiting" });
    store
        .append_event(run, Some("settle"), "countdown", "waiting", Some(&data))
        .unwrap();
}

/// Starts `cutover serve ARGS --listen 127.0.0.1:0`; returns it and its address.
fn serve(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("cutover"))
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--exit-after", "600"])
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

#[test]
fn the_api_follows_the_run_and_the_page_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let runbook = dir.path().join("lab.runbook");
    std::fs::write(&runbook, RUNBOOK).unwrap();
    let (_server, address) = serve(&[&runbook.display().to_string()]);

    // Started before the run: the API says what it waits for.
    let (status, body) = get(&address, "/api/run");
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

    copy_and_wait(&store, run);
    let state = api_run(&address);
    assert_eq!(state["report"]["steps"][1]["progress"]["done"], 24 << 20);
    assert_eq!(state["countdowns"][0]["step"], "settle");
    assert_eq!(state["countdowns"][0]["label"], "waiting");
    let left = state["countdowns"][0]["left_s"].as_i64().unwrap();
    assert!((80..=90).contains(&left), "{left}");
    let logged = state["report"]["events"].as_array().unwrap();
    assert!(
        logged.iter().all(|e| e["kind"] != "progress"),
        "progress is not in the event list"
    );

    let (status, page) = get(&address, "/");
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"/dashboard.js\">"));
    let (status, script) = get(&address, "/dashboard.js");
    assert_eq!(status, 200);
    assert!(script.contains("/api/run"));
    let (status, _) = get(&address, "/style.css");
    assert_eq!(status, 200);
    let (status, _) = get(&address, "/nothing-here");
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

/// Headless Chromium driven through chromedriver's WebDriver API. Dropping
/// it ends the session (which closes Chromium), then stops chromedriver.
struct Browser {
    driver: String,
    session: String,
    _chromedriver: Running,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session with
    /// a fresh profile in `profile`, in a window `width` × `height`.
    fn start(profile: &Path, width: u32, height: u32) -> Browser {
        let port = free_port();
        let chromedriver = Running(
            Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (apt-get install chromium-driver)"),
        );
        let driver = format!("http://127.0.0.1:{port}");
        eventually("chromedriver to be ready", Duration::from_secs(20), || {
            let (_, body) = request(Method::GET, &format!("{driver}/status"), None)
                .map_err(|e| e.to_string())?;
            let ready = serde_json::from_str::<serde_json::Value>(&body)
                .is_ok_and(|status| status["value"]["ready"] == true);
            if ready { Ok(()) } else { Err(body) }
        });
        let capabilities = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         format!("--user-data-dir={}", profile.display()),
                         format!("--window-size={width},{height}")]
            }
        }}});
        let (status, body) = request(
            Method::POST,
            &format!("{driver}/session"),
            Some(&capabilities),
        )
        .expect("a WebDriver session");
        assert_eq!(status, 200, "{body}");
        let created: serde_json::Value = serde_json::from_str(&body).unwrap();
        Browser {
            driver,
            session: created["value"]["sessionId"].as_str().unwrap().to_owned(),
            _chromedriver: chromedriver,
        }
    }

    fn command(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let url = format!("{}/session/{}{path}", self.driver, self.session);
        let (status, text) = request(method.clone(), &url, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, 200, "{method} {path}: {text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["value"].take()
    }

    fn open(&self, url: &str) {
        self.command(
            Method::POST,
            "/url",
            Some(serde_json::json!({ "url": url })),
        );
    }

    fn script(&self, script: &str) -> serde_json::Value {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(serde_json::json!({ "script": script, "args": [] })),
        )
    }

    /// The text of the first element matching `selector` within the step
    /// `step`, or "" when there is none.
    fn text_in_step(&self, step: &str, selector: &str) -> String {
        let script = format!(
            "const e = document.querySelector('[data-step={}] {selector}'); return e ? e.textContent : '';",
            serde_json::Value::from(step)
        );
        self.script(&script).as_str().unwrap_or("").to_owned()
    }

    fn status_of(&self, step: &str) -> String {
        let script = format!(
            "const e = document.querySelector('[data-step={}]'); return e ? e.dataset.status : 'absent';",
            serde_json::Value::from(step)
        );
        self.script(&script).as_str().unwrap_or("").to_owned()
    }

    /// Polls `script` until it returns `want`, for at most `limit`.
    fn wait_for(&self, limit: Duration, script: &str, want: &str) {
        eventually(&format!("{want:?} from {script}"), limit, || {
            let got = self.script(script);
            if got == want {
                Ok(())
            } else {
                Err(got.to_string())
            }
        });
    }

    fn wait_for_status(&self, limit: Duration, step: &str, want: &str) {
        eventually(&format!("`{step}` to show {want}"), limit, || {
            let got = self.status_of(step);
            if got == want { Ok(()) } else { Err(got) }
        });
    }

    fn source(&self) -> String {
        self.command(Method::GET, "/source", None)
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.driver, self.session);
        let _ = request(Method::DELETE, &url, None);
    }
}

/// Polls `check` every 200 ms until it is `Ok`; fails after `limit` with
/// what it last saw.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        let last = match check() {
            Ok(()) => return,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}; last saw {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cutover(args: &[&str]) -> std::process::Output {
    assert_cmd::Command::cargo_bin("cutover")
        .unwrap()
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

/// A lab started with `cutover lab up`, stopped when the test ends.
struct Lab(PathBuf);

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = cutover(&["lab", "down", "--dir", &self.0.display().to_string()]);
    }
}

/// The secrets of the TSIG keys the lab wrote (`secret "…";` of each key file).
fn lab_secrets(lab: &Path) -> Vec<String> {
    let mut secrets = Vec::new();
    for entry in std::fs::read_dir(lab.join("keys")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        secrets.extend(text.lines().filter_map(|line| {
            let value = line.trim().strip_prefix("secret \"")?.strip_suffix("\";")?;
            Some(value.to_owned())
        }));
    }
    secrets
}

/// Records in the page, without changing it, every step that showed a
/// countdown or a progress figure (with the first text seen), and marks the
/// window: a reload would lose both.
const WATCH: &str = r#"
window.cutoverNoReload = "still here";
window.cutoverSeen = { countdown: {}, progress: {} };
const note = (kind, selector) => {
  for (const e of document.querySelectorAll(selector)) {
    const step = e.closest("[data-step]").dataset.step;
    if (e.textContent && !(step in window.cutoverSeen[kind])) window.cutoverSeen[kind][step] = e.textContent;
  }
};
new MutationObserver(() => { note("countdown", ".countdown"); note("progress", ".progress-figure"); })
  .observe(document.body, { subtree: true, childList: true, characterData: true });
return true;
"#;

#[test]
#[ignore = "needs chromium and chromium-driver (Debian packages)"]
fn the_page_follows_a_lab_run_in_a_real_browser_without_reloading() {
    let started = Instant::now();
    let name = "evacuation-2015";
    let gate = "maintenance";
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/lab")
        .join(format!("{name}.runbook"));
    let text = std::fs::read_to_string(&fixture).unwrap();
    let steps = text.lines().filter(|l| l.starts_with("step ")).count();
    assert!(text.contains(&format!("step {gate} ")) && text.contains("  manual "));
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("lab");
    let _lab = Lab(dir.clone());
    let up = cutover(&[
        "lab",
        "up",
        fixture.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
        "--lag",
        "2s",
        "--fresh",
        "--stop-after",
        "10m",
    ]);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let secrets = lab_secrets(&dir);
    assert!(!secrets.is_empty(), "the lab wrote its key");
    let runbook = dir.join(format!("{name}.runbook"));
    let runbook_text = runbook.display().to_string();

    // The dashboard and the page first, the run second: the page waits.
    let (_server, address) = serve(&[&runbook_text]);
    let browser = Browser::start(&temp.path().join("chromium-profile"), 390, 844);
    browser.open(&format!("http://{address}/"));
    browser.wait_for(
        Duration::from_secs(15),
        "const w = document.getElementById('waiting'); return !w.hidden && w.textContent.includes('does not exist') ? 'waiting' : w.textContent;",
        "waiting",
    );
    browser.script(WATCH);

    let log = |which: &str| temp.path().join(format!("run.{which}"));
    let mut run = Running(
        Command::new(assert_cmd::cargo::cargo_bin("cutover"))
            .args(["run", &runbook_text, "--t0", "now"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log("stdout")).unwrap())
            .stderr(std::fs::File::create(log("stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let logs = || {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(log("stdout")).unwrap_or_default(),
            std::fs::read_to_string(log("stderr")).unwrap_or_default()
        )
    };

    // The gate waits in the page; it is confirmed from another process and
    // turns done in the same page.
    browser.wait_for_status(Duration::from_secs(120), gate, "running");
    let confirm = cutover(&["confirm", gate, &runbook_text, "--note", "browser test"]);
    assert!(
        confirm.status.success(),
        "confirm: {}",
        String::from_utf8_lossy(&confirm.stderr)
    );
    browser.wait_for_status(Duration::from_secs(30), gate, "done");
    assert_eq!(
        browser.script("return window.cutoverNoReload || 'reloaded';"),
        "still here"
    );

    // The run ends; the page's outcome follows.
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the run took more than {RUN_LIMIT:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(status.success(), "the run failed\n{}", logs());
    let completed = format!("completed: {steps} of {steps} steps done");
    browser.wait_for(
        Duration::from_secs(15),
        &format!(
            "const o = document.getElementById('outcome').textContent; return o.startsWith({}) ? 'yes' : o;",
            serde_json::Value::from(completed.as_str())
        ),
        "yes",
    );
    assert_eq!(
        browser.script("return window.cutoverNoReload || 'reloaded';"),
        "still here",
        "the page was never reloaded"
    );

    // What the page showed on the way: the waits' countdowns for sure; a
    // copy's bytes when a poll fell while one was running.
    let seen = browser.script("return window.cutoverSeen;");
    let countdowns = seen["countdown"].as_object().unwrap();
    assert!(
        countdowns.contains_key("heal"),
        "the 5 s wait's countdown was shown: {seen}"
    );
    assert!(
        countdowns
            .values()
            .all(|t| t.as_str().unwrap().contains(" left (until ")),
        "{seen}"
    );
    for (step, text) in seen["progress"].as_object().unwrap() {
        let text = text.as_str().unwrap();
        // The review database's db.sync counts its copy in bytes copied,
        // shown in IEC sizes with the unit once ("0 B of 8.0 MiB copied
        // (0%)", not "0 bytes copied of ... bytes copied"); a copy polled
        // before its first block shows "0 B of".
        if step == "sync-review-db" {
            assert!(
                text.contains(" of ") && text.ends_with("%)") && !text.contains("bytes"),
                "{step}: {text}"
            );
            continue;
        }
        assert!(
            text.contains(" of ") && text.contains(" MiB") && text.ends_with("%)"),
            "{step}: {text}"
        );
    }
    eprintln!("the page showed: {seen}");

    // Readable on a phone: at 390 px nothing makes the page scroll sideways.
    assert_eq!(
        browser.script(
            "return document.documentElement.scrollWidth <= window.innerWidth ? 'fits' : document.documentElement.scrollWidth + ' > ' + window.innerWidth;"
        ),
        "fits"
    );

    // No secret in the page or its data.
    let page = browser.source();
    assert!(page.contains(gate) && page.contains("<svg"), "{page}");
    let (_, api) = get(&address, "/api/run");
    for secret in &secrets {
        assert!(
            !page.contains(secret.as_str()),
            "a key's secret is in the page"
        );
        assert!(
            !api.contains(secret.as_str()),
            "a key's secret is in /api/run"
        );
    }

    // The engine logged each copy's progress: throttled, ending at its total.
    let store = Store::open_existing(&dir.join(".cutover").join(format!("{name}.db"))).unwrap();
    let run_id = store.latest_run().unwrap().unwrap().id;
    let events = store.events(run_id).unwrap();
    let copies: Vec<String> = store
        .steps(run_id)
        .unwrap()
        .into_iter()
        .filter(|s| s.definition.contains("image.copy"))
        .map(|s| s.name)
        .collect();
    assert!(!copies.is_empty());
    for copy in &copies {
        let progress: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "progress" && e.step.as_deref() == Some(copy.as_str()))
            .collect();
        let last = progress.last().and_then(|e| e.data.as_ref());
        let last = last.unwrap_or_else(|| panic!("`{copy}` logged no progress"));
        assert_eq!(last["done"], last["total"], "`{copy}` logged its total");
        for pair in progress.windows(2).take(progress.len().saturating_sub(2)) {
            assert!(
                pair[1].at - pair[0].at >= chrono::TimeDelta::milliseconds(990),
                "`{copy}`: progress logged {} apart",
                pair[1].at - pair[0].at
            );
        }
    }
    eprintln!("the browser test took {:?}", started.elapsed());
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian packages)"]
fn progress_and_a_countdown_show_and_the_countdown_ticks_without_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store, run) = start_run(dir.path());
    confirm_freeze(&store, run);
    copy_and_wait(&store, run);
    let state = dir.path().join(".cutover").join("lab.db");
    let (server, address) = serve(&["--state", &state.display().to_string()]);

    let browser = Browser::start(&dir.path().join("chromium-profile"), 390, 844);
    browser.open(&format!("http://{address}/"));
    let progress = "24.0 MiB of 64.0 MiB (37%)";
    eventually("the copy's progress", Duration::from_secs(15), || {
        let shown = browser.text_in_step("copy", ".progress-figure");
        if shown == progress {
            Ok(())
        } else {
            Err(shown)
        }
    });
    assert_eq!(
        browser.script(
            "const p = document.querySelector('[data-step=\"copy\"] progress'); return p.value / p.max;"
        ),
        0.375
    );
    // A database's copy: sizes in IEC units, the unit once.
    assert_eq!(
        browser.text_in_step("sync-db", ".progress-figure"),
        "3.0 MiB of 12.0 MiB copied (25%)"
    );
    let countdown = browser.text_in_step("settle", ".countdown");
    assert!(countdown.starts_with("· waiting: 1m"), "{countdown}");
    assert!(countdown.contains(" left (until "), "{countdown}");

    // Without the server the page says so, and the countdown goes on.
    drop(server);
    browser.wait_for(
        Duration::from_secs(15),
        "return document.getElementById('live-text').textContent.startsWith('cannot reach') ? 'gone' : 'live';",
        "gone",
    );
    let before = browser.text_in_step("settle", ".countdown");
    eventually("the countdown to tick", Duration::from_secs(5), || {
        let now = browser.text_in_step("settle", ".countdown");
        if now != before && now.starts_with("· waiting: 1m") {
            Ok(())
        } else {
            Err(now)
        }
    });
}

/// The runbook of the screenshots: DNS steps verified at three servers,
/// a gate, a copy, a wait, long names.
const SCREENSHOT_RUNBOOK: &str = r#"runbook wiki-move-2026
  title "Screenshots: the wiki moves to its new host, with a long title that must wrap on a phone"

zone lab.test
  primary 127.0.0.1:5353
  verify  127.0.0.1:5353, 127.0.0.1:5354, 127.0.0.1:5355

host wiki-old-primary-host site old addr 127.0.0.10 via local old
host wiki-new-primary-host site new addr 127.0.0.20 via local new

step lower-ttl-of-the-wiki-record
  dns.ttl lab.test wiki A 5 was 3600

step freeze-the-wiki after lower-ttl-of-the-wiki-record
  manual "Put the wiki into read-only mode and post the maintenance banner on every front page"
  expect 2m

step final-sync-of-the-wiki-image after freeze-the-wiki
  image.copy wiki-old-primary-host:/srv/wiki.img -> wiki-new-primary-host:/srv/wiki.img size 64MiB

step switch-the-wiki-record after final-sync-of-the-wiki-image
  dns.switch lab.test wiki A 127.0.0.10 -> 127.0.0.20

step settle after freeze-the-wiki
  wait 2m
"#;

const SCREENSHOT_STEPS: [&str; 5] = [
    "lower-ttl-of-the-wiki-record",
    "freeze-the-wiki",
    "final-sync-of-the-wiki-image",
    "switch-the-wiki-record",
    "settle",
];

/// A DNS verification at the runbook's three servers, as the DNS kinds
/// record it (with first sightings when `first_seen`).
fn three_server_round(value: &str, first_seen: bool) -> serde_json::Value {
    let at = chrono::Utc::now();
    let servers: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            serde_json::json!({
                "server": format!("127.0.0.1:{}", 5353 + i), "values": [value], "ttl": 5,
                "serial": 2026120104 + u32::from(i == 2), "agrees": true, "error": null,
                "at": at.to_rfc3339(),
            })
        })
        .collect();
    let mut round = serde_json::json!({ "records": [{
        "name": "wiki.lab.test.", "type": "A",
        "expected": { "values": [value], "ttl": null, "min_serial": 2026120104 },
        "verified": true, "servers": servers, "stale": null,
    }] });
    if first_seen {
        round["servers"] = (0..3)
            .map(|i| {
                serde_json::json!({
                    "server": format!("127.0.0.1:{}", 5353 + i),
                    "first_served_at": (at - chrono::TimeDelta::seconds(20 - 8 * i)).to_rfc3339(),
                    "serial": 2026120104 + i64::from(i == 2),
                    "lag_seconds": 0.4 + 8.0 * f64::from(i as u8),
                })
            })
            .collect();
    }
    round
}

fn step_done(store: &Store, run: i64, step: &str, summary: &str, data: serde_json::Value) {
    act(store, run, step);
    store
        .transition(
            run,
            &Transition {
                step,
                status: StepStatus::Done,
                phase: Some(Phase::Verify),
                new_attempt: false,
                event_kind: "done",
                message: format!("verified: {summary}"),
                evidence: Some((Phase::Verify, summary.into(), data)),
            },
        )
        .unwrap();
}

/// Standard base64 (what WebDriver's screenshots are in).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|&c| c != b'=' && c != b'\n')
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | (u32::from(d) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

impl Browser {
    /// Resizes the window to `width` × `height` and checks that the page
    /// then has that width.
    fn resize(&self, width: u32, height: u32) {
        self.command(
            Method::POST,
            "/window/rect",
            Some(serde_json::json!({ "width": width, "height": height })),
        );
        self.wait_for(
            Duration::from_secs(10),
            "return String(window.innerWidth);",
            &width.to_string(),
        );
    }

    /// `fits` when nothing makes the page scroll sideways, else the widths.
    fn page_fits(&self) -> String {
        self.script(
            "return document.documentElement.scrollWidth <= window.innerWidth ? 'fits' : document.documentElement.scrollWidth + ' > ' + window.innerWidth;",
        )
        .as_str()
        .unwrap_or("")
        .to_owned()
    }

    /// Saves a PNG of the window to `path`.
    fn screenshot(&self, path: &Path) {
        let png = base64_decode(
            self.command(Method::GET, "/screenshot", None)
                .as_str()
                .unwrap(),
        );
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        std::fs::write(path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}

/// The HTML report and the live dashboard in headless Chromium, at a
/// desktop's 1280 px and a phone's 390 px: the page never scrolls
/// sideways, and at 1280 px the report's timeline table and Gantt chart
/// fit without scrolling either. Screenshots of each go to
/// `target/tmp/screenshots/` (paths printed) for a person to look at.
#[test]
#[ignore = "needs chromium and chromium-driver (Debian packages)"]
fn screenshots_of_the_report_and_the_dashboard_fit_1280_and_390_px() {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runbook = dir.path().join("wiki-move-2026.runbook");
    std::fs::write(&runbook, SCREENSHOT_RUNBOOK).unwrap();
    let state = dir.path().join(".cutover").join("wiki-move-2026.db");
    let store = Store::open(&state).unwrap();
    let run = store
        .create_run(&NewRun {
            runbook_name: "wiki-move-2026".into(),
            runbook_path: runbook.display().to_string(),
            content_hash: "0123456789abcdef".into(),
            operator: "alice".into(),
            t0: None,
            steps: SCREENSHOT_STEPS
                .iter()
                .map(|name| NewStep {
                    name: (*name).into(),
                    definition: format!("step {name}"),
                    planned_start: None,
                })
                .collect(),
        })
        .unwrap();
    // This process is the run's coordinator, as `cutover run` would be.
    let me = cutover_store::LockHolder::current();
    store.acquire_lock(&me, false).unwrap();
    store.set_run_status(run, RunStatus::Running).unwrap();
    step_done(
        &store,
        run,
        SCREENSHOT_STEPS[0],
        "wiki.lab.test. A served by all 3 verify servers",
        three_server_round("127.0.0.10", false),
    );
    act(&store, run, SCREENSHOT_STEPS[1]);
    store
        .confirm(
            run,
            SCREENSHOT_STEPS[1],
            "bob",
            Some("read-only, banner up"),
        )
        .unwrap();
    store
        .transition(
            run,
            &Transition {
                step: SCREENSHOT_STEPS[1],
                status: StepStatus::Done,
                phase: Some(Phase::Verify),
                new_attempt: false,
                event_kind: "done",
                message: "verified: confirmed by bob".into(),
                evidence: Some((
                    Phase::Verify,
                    "confirmed by bob".into(),
                    serde_json::json!({ "user": "bob", "note": "read-only, banner up" }),
                )),
            },
        )
        .unwrap();
    // During the run: the copy at 24 of 64 MiB, the wait counting down.
    act(&store, run, SCREENSHOT_STEPS[2]);
    let progress =
        serde_json::json!({ "done": 24u64 << 20, "total": 64u64 << 20, "unit": "bytes" });
    store
        .append_event(
            run,
            Some(SCREENSHOT_STEPS[2]),
            "progress",
            "copying",
            Some(&progress),
        )
        .unwrap();
    act(&store, run, "settle");
    let until = chrono::Utc::now() + chrono::TimeDelta::seconds(90);
    let countdown = serde_json::json!({ "until": until, "label": "waiting" });
    store
        .append_event(
            run,
            Some("settle"),
            "countdown",
            "waiting",
            Some(&countdown),
        )
        .unwrap();

    let (_server, address) = serve(&["--state", &state.display().to_string()]);
    let browser = Browser::start(&dir.path().join("chromium-profile"), 1280, 900);
    browser.open(&format!("http://{address}/"));
    eventually("the copy's progress", Duration::from_secs(15), || {
        let shown = browser.text_in_step(SCREENSHOT_STEPS[2], ".progress-figure");
        if shown == "24.0 MiB of 64.0 MiB (37%)" {
            Ok(())
        } else {
            Err(shown)
        }
    });
    let mut failures = Vec::new();
    for (width, height) in [(1280, 900), (390, 844)] {
        browser.resize(width, height);
        let fits = browser.page_fits();
        if fits != "fits" {
            failures.push(format!("dashboard at {width} px: {fits}"));
        }
        browser.screenshot(&shots.join(format!("dashboard-{width}.png")));
    }

    // The run goes on to its end; its HTML report.
    store
        .transition(
            run,
            &Transition {
                step: SCREENSHOT_STEPS[2],
                status: StepStatus::Done,
                phase: Some(Phase::Verify),
                new_attempt: false,
                event_kind: "done",
                message: "verified: blake3 equal at both ends".into(),
                evidence: Some((
                    Phase::Verify,
                    "blake3 equal at both ends".into(),
                    serde_json::json!({ "size": 64u64 << 20, "bytes_sent": 9_123_840u64, "hash": "9f1e6b0c4d2a" }),
                )),
            },
        )
        .unwrap();
    step_done(
        &store,
        run,
        SCREENSHOT_STEPS[3],
        "wiki.lab.test. A served by all 3 verify servers",
        three_server_round("127.0.0.20", true),
    );
    store
        .transition(
            run,
            &Transition {
                step: "settle",
                status: StepStatus::Done,
                phase: Some(Phase::Verify),
                new_attempt: false,
                event_kind: "done",
                message: "verified: the time has come".into(),
                evidence: None,
            },
        )
        .unwrap();
    store.set_run_status(run, RunStatus::Completed).unwrap();
    store.release_lock(&me).unwrap();
    let report = dir.path().join("report.html");
    let export = cutover(&[
        "export",
        "--state",
        &state.display().to_string(),
        "--format",
        "html",
        "-o",
        &report.display().to_string(),
    ]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    browser.open(&format!("file://{}", report.display()));
    browser.wait_for(
        Duration::from_secs(10),
        "return document.querySelectorAll('.facts-table th').length > 0 ? 'shown' : 'not yet';",
        "shown",
    );
    for (width, height) in [(1280, 900), (390, 844)] {
        browser.resize(width, height);
        let fits = browser.page_fits();
        if fits != "fits" {
            failures.push(format!("report at {width} px: {fits}"));
        }
        if width == 1280 {
            // The timeline table and the chart fit the page as they are.
            let inner = browser.script(
                "const out = []; for (const box of document.querySelectorAll('.scroll, .gantt-box')) { if (box.scrollWidth > box.clientWidth) out.push(box.className + ' ' + box.scrollWidth + ' > ' + box.clientWidth); } return out.join('; ') || 'fits';",
            );
            if inner != "fits" {
                failures.push(format!("report at 1280 px, inside: {inner}"));
            }
        }
        browser.screenshot(&shots.join(format!("report-{width}.png")));
        // The whole page, for reading its evidence tables.
        let full = browser
            .script("return Math.min(document.documentElement.scrollHeight, 12000);")
            .as_u64()
            .unwrap_or(u64::from(height));
        browser.resize(width, u32::try_from(full).unwrap_or(height));
        browser.screenshot(&shots.join(format!("report-{width}-whole.png")));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
