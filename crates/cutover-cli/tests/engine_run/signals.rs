//! Stopping: SIGTERM and SIGHUP are clean stops like the first Ctrl-C; the
//! first Ctrl-C lets a running command finish and cancels a countdown before
//! its change; the second kills what runs and returns at once.

use super::{Reap, cutover, eventually, journal, output, status_of, write};
use cutover_store::{RunStatus, StepStatus, Store};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn run_status(dir: &Path, runbook: &str) -> RunStatus {
    let store = Store::open_existing(&dir.join(format!(".cutover/{runbook}.db"))).unwrap();
    store.latest_run().unwrap().unwrap().status
}

fn process_alive(pid: i32) -> bool {
    // Signal 0 only asks whether the process exists.
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

const WAITING: &str = "runbook waiting

step pause
  wait 1m

step later after pause
  exec \"echo later >> j\"
";

#[test]
fn sigterm_and_sighup_are_clean_stops_recorded_as_stops() {
    use rustix::process::Signal;
    for (signal, name) in [(Signal::TERM, "SIGTERM"), (Signal::HUP, "SIGHUP")] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "waiting.runbook", WAITING);
        let mut run = Reap(
            cutover(d)
                .args(["run", "waiting.runbook", "--state", "run state.db"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        eventually("the wait to start", || {
            let Ok(store) = Store::open_existing(&d.join("run state.db")) else {
                return false;
            };
            let Some(run) = store.latest_run().unwrap() else {
                return false;
            };
            store
                .step(run.id, "pause")
                .unwrap()
                .is_some_and(|s| s.status == StepStatus::Running)
        });
        let sent = Instant::now();
        let _ = rustix::process::kill_process(rustix::process::Pid::from_child(&run.0), signal);
        let (status, stdout) = run.finish();
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{name}: took {:?}",
            sent.elapsed()
        );
        assert_eq!(status.code(), Some(1), "{name}: {stdout}");
        assert!(
            stdout.contains(&format!("{name}: stopping at the next safe point")),
            "{stdout}"
        );
        // The hint resumes this very run: same state file, quoted.
        assert!(
            stdout.contains("`cutover run waiting.runbook --state 'run state.db'` resumes it"),
            "{stdout}"
        );
        let store = Store::open_existing(&d.join("run state.db")).unwrap();
        let run = store.latest_run().unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Stopped, "{name}");
        assert!(
            store.lock_holder().unwrap().is_none(),
            "{name}: lock released"
        );
        assert_eq!(journal(d), "", "{name}: nothing after the stop");
    }
}

fn spawn_in_pty(dir: &Path, args: &[&str]) -> rexpect::session::PtySession {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.current_dir(dir)
        .env("USER", "tester")
        .env("NO_COLOR", "1")
        .args(args);
    rexpect::session::spawn_command(cmd, Some(30_000)).unwrap()
}

#[test]
fn the_first_ctrl_c_lets_a_running_command_finish_and_the_second_kills_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "cmds.runbook",
        "runbook cmds

step slow
  exec \"echo $$ > slow.pid; sleep 2; echo slow >> j\"
  verify exec \"grep -qx slow j\"

step next after slow
  exec \"echo next >> j\"
",
    );
    // The first Ctrl-C: the command is not killed; it finishes, and the run
    // stops after it without starting `next`.
    let mut pty = spawn_in_pty(d, &["run", "cmds.runbook", "--step"]);
    pty.exp_string("`slow`: type run, skip or stop").unwrap();
    pty.send_line("run").unwrap();
    eventually("the command to start", || d.join("slow.pid").exists());
    pty.send_control('c').unwrap();
    pty.exp_string("Ctrl-C: stopping at the next safe point")
        .unwrap();
    pty.exp_string("run stopped; `cutover run cmds.runbook --step` resumes it")
        .unwrap();
    pty.exp_eof().unwrap();
    assert_eq!(journal(d), "slow\n", "the command ran to its end");
    assert_eq!(status_of(d, "cmds", "next"), StepStatus::Pending);
    assert_eq!(run_status(d, "cmds"), RunStatus::Stopped);

    // The second Ctrl-C: the command's whole process group goes, and the
    // coordinator returns within 2 s.
    write(
        d,
        "hang.runbook",
        "runbook hang

step hang
  exec \"sh -c 'echo $$ > hang.pid; exec sleep 300'\"
",
    );
    let mut pty = spawn_in_pty(d, &["run", "hang.runbook"]);
    eventually("the command to start", || {
        std::fs::read_to_string(d.join("hang.pid")).is_ok_and(|t| t.trim().parse::<i32>().is_ok())
    });
    let pid: i32 = std::fs::read_to_string(d.join("hang.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    pty.send_control('c').unwrap();
    pty.exp_string("stopping at the next safe point").unwrap();
    assert!(
        process_alive(pid),
        "the first Ctrl-C leaves the command running"
    );
    let second = Instant::now();
    pty.send_control('c').unwrap();
    pty.exp_string("stopping now").unwrap();
    pty.exp_eof().unwrap();
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "the second Ctrl-C took {:?}",
        second.elapsed()
    );
    eventually("the command's process to be gone", || !process_alive(pid));
    assert_eq!(run_status(d, "hang"), RunStatus::Stopped);
}

/// A zone on an embedded authoritative server, updated with a TSIG key.
pub(super) struct DnsLab {
    pub runtime: tokio::runtime::Runtime,
    pub server: Option<cutover_dns::ServerHandle>,
    pub addr: std::net::SocketAddr,
}

impl DnsLab {
    pub(super) fn start(dir: &Path, records: &str) -> DnsLab {
        std::fs::write(
            dir.join("lab.zone"),
            format!(
                "$ORIGIN lab.test.\n$TTL 60\n@ IN SOA ns1.lab.test. hostmaster.lab.test. 1 60 60 600 5\n@ IN NS ns1.lab.test.\nns1 IN A 127.0.0.1\n{records}"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("update.key"), "c2VjcmV0LWZvci10aGUtbGFiLXpvbmU=\n").unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let key = cutover_dns::TsigKey::new(
            "update",
            cutover_dns::TsigAlgorithm::HmacSha256,
            b"secret-for-the-lab-zone".to_vec(),
        )
        .unwrap();
        let server = runtime
            .block_on(cutover_dns::serve(cutover_dns::ServeConfig {
                zones: vec![cutover_dns::ZoneSource {
                    name: "lab.test".into(),
                    file: dir.join("lab.zone"),
                }],
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                keys: vec![key],
                state_dir: dir.join("dns-state"),
                allow_transfer: Vec::new(),
            }))
            .unwrap();
        let addr = server.addresses()[0];
        DnsLab {
            runtime,
            server: Some(server),
            addr,
        }
    }

    /// The runbook header for the zone.
    pub(super) fn header(&self, name: &str) -> String {
        format!(
            "runbook {name}\n\nkey update hmac-sha256 file:update.key\n\nzone lab.test\n  primary {} key update\n  verify {}\n\n",
            self.addr, self.addr
        )
    }

    /// What the server answers for `name` A now.
    pub(super) fn a(&self, name: &str) -> Vec<String> {
        self.runtime
            .block_on(cutover_dns::query(
                self.addr,
                "lab.test",
                name,
                cutover_dns::RecordType::A,
                Duration::from_secs(2),
            ))
            .unwrap()
            .values
    }
}

impl Drop for DnsLab {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

#[test]
fn a_ctrl_c_during_the_old_ttl_countdown_leaves_dns_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lab = DnsLab::start(d, "www 60 IN A 192.0.2.1\n");
    let text = format!(
        "{}step lower\n  dns.ttl lab.test www A 1 was 30\n\nstep switch after lower\n  dns.switch lab.test www A 192.0.2.1 -> 192.0.2.2\n  undo dns.switch lab.test www A 192.0.2.2 -> 192.0.2.1\n",
        lab.header("countdown")
    );
    write(d, "countdown.runbook", &text);
    let mut pty = spawn_in_pty(d, &["run", "countdown.runbook"]);
    eventually("the switch to count down the old TTL", || {
        d.join(".cutover/countdown.db").exists()
            && status_of(d, "countdown", "switch") == StepStatus::Running
    });
    std::thread::sleep(Duration::from_millis(500));
    pty.send_control('c').unwrap();
    pty.exp_string("stopping at the next safe point").unwrap();
    pty.exp_string("run stopped").unwrap();
    pty.exp_eof().unwrap();
    assert_eq!(lab.a("www"), vec!["192.0.2.1".to_owned()], "DNS unchanged");
    assert_eq!(run_status(d, "countdown"), RunStatus::Stopped);
    // Nothing acted after the stop: no act evidence for the switch.
    let store = Store::open_existing(&d.join(".cutover/countdown.db")).unwrap();
    let id = store.latest_run().unwrap().unwrap().id;
    assert!(
        store
            .latest_evidence(id, "switch", cutover_store::Phase::Act)
            .unwrap()
            .is_none()
    );
    drop(store);
    let (code, _, _) = output(cutover(d).args(["status", "countdown.runbook"]));
    assert_eq!(code, 0);
}
