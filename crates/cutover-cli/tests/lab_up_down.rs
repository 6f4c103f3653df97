//! `cutover lab up` / `lab down` with the real binary: the background lab serves DNS, the
//! listeners and the files of a fixture runbook; `down` stops all of it. Every lab started
//! here also stops by itself (`--stop-after`) should a test fail before `down`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/lab")
        .join(name)
}

fn cutover(args: &[&str]) -> Output {
    Command::cargo_bin("cutover")
        .unwrap()
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

/// Runs `lab down` on drop, so a failing test leaves nothing running.
struct LabGuard(PathBuf);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = cutover(&["lab", "down", "--dir", self.0.to_str().unwrap()]);
    }
}

fn connects(address: &str) -> bool {
    let address: SocketAddr = address.parse().unwrap();
    TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
}

#[test]
fn lab_up_serves_the_runbook_world_and_lab_down_stops_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("lab");
    let dir_text = dir.to_str().unwrap();
    let file = fixture("cloud-2013.runbook");
    let up = cutover(&[
        "lab",
        "up",
        file.to_str().unwrap(),
        "--dir",
        dir_text,
        "--lag",
        "1s",
        "--fresh",
        "--stop-after",
        "5m",
    ]);
    let _guard = LabGuard(dir.clone());
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(
        up.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        stdout.contains("dns       primary 127.0.0.83:5304 webplatform.org"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dns       secondary 127.0.0.84:5304"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("manifest: {}", dir.join("lab.json").display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "next: cutover run {}",
            dir.join("cloud-2013.runbook").display()
        )),
        "{stdout}"
    );

    // The runbook was copied, its key written, its files generated.
    assert!(dir.join("cloud-2013.runbook").exists());
    assert!(dir.join("keys/wpd-update.key").exists());
    assert_eq!(
        std::fs::metadata(dir.join("hosts/hpcloud/wiki/srv/uploads.img"))
            .unwrap()
            .len(),
        64 << 20
    );
    assert!(dir.join("hosts/hpcloud/db/srv/mysql/wiki.sqlite").exists());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
    let pid = manifest["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // Listeners for checked ports; the port checked closed stays closed; DNS answers.
    assert!(connects("127.0.0.101:8080"), "wiki-new:8080 listens");
    assert!(
        connects("127.0.0.91:8080"),
        "the old wiki listens too (side by side)"
    );
    assert!(!connects("127.0.0.102:3306"), "db-new:3306 stays closed");
    assert!(connects("127.0.0.83:5304"), "the primary answers on TCP");

    let again = cutover(&["lab", "up", file.to_str().unwrap(), "--dir", dir_text]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("a lab is already running"),
        "{again:?}"
    );

    let down = cutover(&["lab", "down", "--dir", dir_text]);
    assert!(down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stdout).contains(&format!("stopped (process {pid})")),
        "{down:?}"
    );
    assert!(!dir.join("lab.json").exists());
    assert!(!connects("127.0.0.101:8080"));
    assert!(!connects("127.0.0.83:5304"));

    let twice = cutover(&["lab", "down", "--dir", dir_text]);
    assert!(twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stdout).contains("no lab running"));
}

#[test]
fn lab_up_refuses_a_runbook_that_is_not_on_loopback() {
    let temp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("maemo-2013.runbook"))
        .unwrap()
        .replace("127.0.0.54:5301", "192.0.2.54:53");
    let file = temp.path().join("public.runbook");
    std::fs::write(&file, text).unwrap();
    let dir = temp.path().join("lab");
    let up = cutover(&[
        "lab",
        "up",
        file.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(up.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(
        stderr.contains("192.0.2.54:53 is not a loopback address"),
        "{stderr}"
    );
    assert!(!dir.exists(), "nothing was built");
}

#[test]
fn lab_up_reports_runbook_errors_with_exit_code_1() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("broken.runbook");
    std::fs::write(&file, "runbook broken\n\nstep a after nowhere\n  wait 1s\n").unwrap();
    let up = cutover(&[
        "lab",
        "up",
        file.to_str().unwrap(),
        "--dir",
        temp.path().join("lab").to_str().unwrap(),
    ]);
    assert_eq!(up.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&up.stderr).contains("nowhere"));
}
