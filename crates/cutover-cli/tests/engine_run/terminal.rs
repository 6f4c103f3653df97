//! What a coordinator sees: `cutover run` in a pseudo-terminal, its output
//! fed to a terminal emulator (vt100), against a lab with a DNS primary, a
//! lagging secondary and two hosts. The run copies an image, lowers a TTL,
//! waits at a manual gate typed into the terminal, and switches the record
//! after waiting out the old TTL. Every screen along the way is kept: the
//! copy's bar with bytes, percent, rate and ETA, the countdown, the
//! verification naming the server that lags, the gate's prompt with the
//! answer echoed and no progress line left under it; the final screen, with
//! a line of what each step changed and the recap, is snapshotted.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROWS: u16 = 48;
const COLS: u16 = 120;

const RUNBOOK: &str = r#"runbook tty
  link old -> new 200Mbit

key tty-update hmac-sha256 file:keys/tty-update.key

zone shop.example
  primary 127.0.0.53:5301 key tty-update
  verify 127.0.0.53:5301, 127.0.0.54:5301

host app site old addr 127.0.0.10 via local hosts/old/app
host app-new site new addr 127.0.0.20 via local hosts/new/app

step precopy
  image.copy app:/srv/app.img -> app-new:/srv/app.img size 96MiB

step lower-ttl
  dns.ttl shop.example www A 2 was 8

step freeze after precopy, lower-ttl
  manual "Stop the shop on the old host"

step switch after freeze
  dns.switch shop.example www A 127.0.0.10 -> 127.0.0.20
"#;

/// Output of a program in a pseudo-terminal, as a terminal shows it: every
/// screen it showed, and the screen now.
struct Terminal {
    process: rexpect::process::PtyProcess,
    input: std::fs::File,
    seen: Arc<Mutex<Screens>>,
}

struct Screens {
    parser: vt100::Parser,
    /// Each screen shown, as text, in order (consecutive repeats once).
    history: Vec<String>,
    ended: bool,
}

impl Terminal {
    /// Starts `program args` in a `ROWS`x`COLS` terminal that echoes what is
    /// typed, as a person's terminal does.
    fn start(dir: &Path, program: &Path, args: &[&str]) -> Terminal {
        let mut cmd = Command::new("sh");
        cmd.current_dir(dir)
            .env("USER", "tester")
            .env("TERM", "xterm-256color")
            .env("NO_COLOR", "1")
            .env_remove("CI")
            .arg("-c")
            .arg(format!(
                "stty rows {ROWS} cols {COLS} echo && exec \"$0\" \"$@\""
            ))
            .arg(program)
            .args(args);
        let mut process = rexpect::process::PtyProcess::new(cmd).unwrap();
        process.set_kill_timeout(Some(5_000));
        let mut output = process.get_file_handle().unwrap();
        let input = process.get_file_handle().unwrap();
        let seen = Arc::new(Mutex::new(Screens {
            parser: vt100::Parser::new(
                std::num::NonZeroU16::new(ROWS).unwrap(),
                std::num::NonZeroU16::new(COLS).unwrap(),
                0,
            ),
            history: Vec::new(),
            ended: false,
        }));
        let feed = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = output.read(&mut buf).unwrap_or(0);
                let mut screens = feed.lock().unwrap();
                if n == 0 {
                    screens.ended = true;
                    break;
                }
                screens.parser.process(&buf[..n]);
                let now = text(screens.parser.screen());
                if screens.history.last() != Some(&now) {
                    screens.history.push(now);
                }
            }
        });
        Terminal {
            process,
            input,
            seen,
        }
    }

    /// Waits (at most `limit`) until the screen satisfies `test`; the screen then.
    fn wait_for(&self, what: &str, limit: Duration, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            {
                let screens = self.seen.lock().unwrap();
                let now = text(screens.parser.screen());
                if test(&now) {
                    return now;
                }
                assert!(
                    !screens.ended && Instant::now() < deadline,
                    "waited for {what}; the screen:\n{now}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, text: &str) {
        self.input
            .write_all(format!("{text}\n").as_bytes())
            .unwrap();
        self.input.flush().unwrap();
    }

    /// Waits (at most `limit`) for the program to end; its exit code.
    fn exit_code(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.process.status()
                && !matches!(status, rexpect::process::wait::WaitStatus::StillAlive)
            {
                // The last output is read by the end of the stream.
                let until = Instant::now() + Duration::from_secs(5);
                while !self.seen.lock().unwrap().ended && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return match status {
                    rexpect::process::wait::WaitStatus::Exited(_, code) => code,
                    other => panic!("the run ended by {other:?}"),
                };
            }
            assert!(Instant::now() < deadline, "the run did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn history(&self) -> Vec<String> {
        self.seen.lock().unwrap().history.clone()
    }

    fn screen(&self) -> String {
        text(self.seen.lock().unwrap().parser.screen())
    }
}

/// The screen's rows as lines (a row filled to its last column is still
/// one line), trailing blanks dropped.
fn text(screen: &vt100::Screen) -> String {
    let rows: Vec<String> = screen
        .rows(0, COLS)
        .map(|row| row.trim_end().to_owned())
        .collect();
    rows.join("\n").trim_end().to_owned()
}

/// Stops the lab, should the test end early or not.
struct LabDown(std::path::PathBuf);

impl Drop for LabDown {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["lab", "down", "--dir"])
            .arg(&self.0)
            .output();
    }
}

fn any_screen(history: &[String], what: &str, test: impl Fn(&str) -> bool) -> String {
    history
        .iter()
        .find(|s| s.lines().any(&test))
        .unwrap_or_else(|| {
            panic!(
                "no screen showed {what}; the last:\n{}",
                history.last().map_or("", String::as_str)
            )
        })
        .clone()
}

#[test]
fn a_run_in_a_terminal_shows_bars_countdowns_the_gate_what_changed_and_a_recap() {
    let temp = tempfile::tempdir().unwrap();
    let src = temp.path().join("tty.runbook");
    std::fs::write(&src, RUNBOOK).unwrap();
    let lab = temp.path().join("lab");
    let up = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["lab", "up"])
        .arg(&src)
        .arg("--dir")
        .arg(&lab)
        .args(["--lag", "2s", "--fresh", "--stop-after", "5m"])
        .output()
        .unwrap();
    let _down = LabDown(lab.clone());
    assert!(
        up.status.success(),
        "lab up: {}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let runbook = lab.join("tty.runbook");
    let mut term = Terminal::start(
        &lab,
        Path::new(env!("CARGO_BIN_EXE_cutover")),
        &["run", runbook.to_str().unwrap(), "--t0", "now"],
    );

    // The gate asks once the copy and the TTL are done; nothing else runs.
    let prompt = "Stop the shop on the old host — type yes and Enter once done";
    let at_gate = term.wait_for("the gate's prompt", Duration::from_secs(120), |s| {
        s.contains(prompt)
    });
    // No progress line under the prompt: the bars are cleared while it asks.
    let below: Vec<&str> = at_gate
        .lines()
        .skip_while(|l| !l.contains(prompt))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        below.is_empty(),
        "lines under the prompt: {below:?}\n{at_gate}"
    );
    std::thread::sleep(Duration::from_millis(300));
    term.type_line("yes shop stopped");
    let code = term.exit_code(Duration::from_secs(120));
    let history = term.history();
    let last = term.screen();
    assert_eq!(code, 0, "{last}");

    // The copy's bar: bytes of the total, percent, rate and ETA.
    let bar = regex::Regex::new(
        r"precopy \[[=> ]{24}\] [\d.]+ [KMG]?i?B/96\.00 MiB +\d+%  [\d.]+ [KMG]?i?B/s  ETA \d+s",
    )
    .unwrap();
    any_screen(&history, "the copy's bar", |l| bar.is_match(l));
    // The overall line: steps done of the total, and an ETA.
    let overall = regex::Regex::new(r"\[[=> ]{24}\] [0-4]/4 steps  ETA \d").unwrap();
    any_screen(&history, "the overall line", |l| overall.is_match(l));
    // The switch counts down the old TTL, with the time it ends.
    let countdown =
        regex::Regex::new(r"switch old TTL 8s expiring: \ds left, until \d\d:\d\d:\d\d").unwrap();
    any_screen(&history, "the TTL countdown", |l| countdown.is_match(l));
    // Its verification names the server still serving the old zone.
    let lagging = regex::Regex::new(r"waiting on [\d.]+:\d+: serial \d+ < \d+").unwrap();
    any_screen(&history, "the lagging server", |l| lagging.is_match(l));
    // What was typed at the gate is on screen after it.
    assert!(
        last.contains(&format!("{prompt} (a note may follow): yes shop stopped")),
        "{last}"
    );

    // The final screen, times, rates and the lab's addresses made stable.
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d+\.\d+\.\d+\.\d+(:\d+)?", "[addr]");
    settings.add_filter(r"serial \d+", "serial [n]");
    settings.add_filter(r"< \d+", "< [n]");
    settings.add_filter(r"\d+\.\ds after", "[t]s after");
    settings.add_filter(r"(\d+[dhm])?\d+s (against|under|over)", "[took] $2");
    settings.add_filter(r"against [\dsmhd]+ planned", "against [plan] planned");
    settings.add_filter(r"\((\d+[dhm])?\d+s (under|over)\)", "([diff])");
    settings.add_filter(&regex::escape(lab.to_str().unwrap()), "[lab]");
    settings.add_filter(r" +\n", "\n");
    settings.bind(|| insta::assert_snapshot!("run_in_a_terminal", last.trim_end()));
}

/// `run --format json`: every line of stdout is one JSON event, from the
/// run's start through the gate and what each step changed to the recap.
#[test]
fn json_format_prints_one_event_per_line_through_the_gate_to_the_recap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    super::write(
        d,
        "bot.runbook",
        &format!(
            "runbook bot\n\n{}step gate after one\n  manual \"press the red button\"\n\n{}",
            super::exec_step("one", "", false),
            super::exec_step("two", " after gate", false)
        ),
    );
    let child = super::cutover(d)
        .args(["run", "bot.runbook", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = super::Reap(child);
    super::eventually("the gate to wait", || {
        super::status_of(d, "bot", "gate") == cutover_store::StepStatus::Running
    });
    let (code, out, err) = super::output(super::cutover(d).args([
        "confirm",
        "gate",
        "bot.runbook",
        "--note",
        "pressed",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let (status, stdout) = run.finish();
    assert!(status.success(), "{stdout}");

    assert!(
        !stdout.contains('\x1b'),
        "escape sequences in a pipe: {stdout:?}"
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .filter(|k| *k != "phase" && *k != "message")
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "step_started",
            "step_done",
            "step_started",
            "gate_waiting",
            "step_done",
            "step_started",
            "step_done",
            "run_finished"
        ],
        "{stdout}"
    );
    let find = |event: &str, step: &str| {
        events
            .iter()
            .find(|e| e["event"] == event && e["step"] == step)
            .unwrap_or_else(|| panic!("no {event} of {step}: {stdout}"))
            .clone()
    };
    assert_eq!(events[0]["total"], 3, "{stdout}");
    assert_eq!(events[0]["done"], 0, "{stdout}");
    let gate = find("gate_waiting", "gate");
    assert_eq!(gate["instructions"], "press the red button");
    assert_eq!(gate["confirm"], "cutover confirm gate");
    let done = find("step_done", "gate");
    assert_eq!(done["outcome"], "verified");
    assert_eq!(done["changed"], "confirmed by tester: pressed");
    let one = find("step_done", "one");
    assert!(
        one["changed"]
            .as_str()
            .unwrap()
            .starts_with("`echo one >> j` exited 0"),
        "{one}"
    );
    let recap = events.last().unwrap();
    assert_eq!(recap["event"], "run_finished");
    assert_eq!(recap["outcome"], "completed");
    assert_eq!(recap["total"], 3);
    assert_eq!(recap["done"], 3);
    assert_eq!(recap["already_satisfied"], 0);
    assert_eq!(recap["failed"], 0);
    assert_eq!(recap["deviations"], serde_json::json!([]));
}

/// `--step`: the question shows the step as written and what holds now,
/// comes before the step starts, and a step whose dependency was skipped
/// asks what to do with it instead of stopping the run.
#[test]
fn step_mode_asks_before_starting_and_asks_about_dependents_of_a_skipped_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = super::write(
        d,
        "walk.runbook",
        &format!(
            "runbook walk\n\nstep pause\n  wait 2s\n\n{}{}{}",
            super::exec_step("one", " after pause", false),
            super::exec_step("two", " after one", false),
            super::exec_step("three", " after two", false)
        ),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.current_dir(d)
        .env("USER", "tester")
        .arg("run")
        .arg(&file)
        .arg("--step");
    let mut pty = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    // The step as written (2s, not 2000 ms), what holds now, then the question.
    let before = pty.exp_string("`pause`: type run, skip or stop").unwrap();
    assert!(before.contains("step pause\r\n  wait 2s"), "{before}");
    assert!(before.contains("# now: not started"), "{before}");
    assert!(!before.contains("pause: started"), "{before}");
    pty.send_line("run").unwrap();
    pty.exp_string("pause: verified").unwrap();
    pty.exp_string("`one`: type run, skip or stop").unwrap();
    pty.send_line("skip").unwrap();
    pty.exp_string("`two` depends on `one`, which was skipped.")
        .unwrap();
    pty.exp_string("`two`: type skip (skip it too), run (run it anyway) or stop")
        .unwrap();
    pty.send_line("skip").unwrap();
    pty.exp_string("`three` depends on `two`, which was skipped.")
        .unwrap();
    pty.send_line("run").unwrap();
    // Run anyway: its own question follows.
    pty.exp_string("`three`: type run, skip or stop").unwrap();
    pty.send_line("run").unwrap();
    pty.exp_string("three: verified").unwrap();
    pty.exp_string("Run complete! 4 steps: 2 done, 0 already satisfied, 2 skipped, 0 failed.")
        .unwrap();
    pty.exp_string("Deviations (3):").unwrap();
    pty.exp_eof().unwrap();
    assert_eq!(super::journal(d), "three\n");
    assert_eq!(
        super::status_of(d, "walk", "two"),
        cutover_store::StepStatus::Skipped
    );
}
