//! Image copies through the real `cutover agent --stdio` binary: the same
//! path as a copy over ssh, minus ssh (and, in an ignored test, with it).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cutover_copy::protocol::{PROTOCOL_VERSION, Request, Response, read_frame, write_frame};
use cutover_copy::{
    CopyError, CopyOptions, Endpoint, ErrorKind, Location, Outcome, Progress, copy_image, copy_with,
};

mod support;
use support::sshd::Sshd;

const BIN: &str = env!("CARGO_BIN_EXE_cutover");
const MIB: u64 = 1 << 20;

fn agent(root: &Path, path: &str) -> Location {
    Location::Agent {
        command: agent_command(root),
        path: path.to_string(),
    }
}

fn agent_command(root: &Path) -> Vec<String> {
    vec![
        BIN.into(),
        "agent".into(),
        "--stdio".into(),
        "--root".into(),
        root.display().to_string(),
    ]
}

/// `len` random bytes from the kernel, written at `offset` of `path`.
fn random_at(path: &Path, offset: u64, len: u64) {
    let mut data = vec![0u8; len as usize];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    let file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .unwrap();
    file.write_all_at(&data, offset).unwrap();
}

/// The data bytes of the whole records of a staging log
/// (`cutover-staged01`, then per record its start, its length and the bytes).
fn staged_bytes(log: &Path) -> u64 {
    let body = fs::read(log).unwrap();
    assert_eq!(&body[..16], b"cutover-staged01");
    let mut at = 16;
    let mut staged = 0;
    while at + 16 <= body.len() {
        let len = u64::from_le_bytes(body[at + 8..at + 16].try_into().unwrap()) as usize;
        if at + 16 + len > body.len() {
            break;
        }
        staged += len as u64;
        at += 16 + len;
    }
    staged
}

fn sized(path: &Path, size: u64) {
    fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .unwrap()
        .set_len(size)
        .unwrap();
}

fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn copy_through_the_agent_keeps_holes_and_sends_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.img");
    sized(&source, 100 * MIB + 7);
    random_at(&source, 0, 2 * MIB);
    random_at(&source, 80 * MIB, 3 * MIB);
    let root = dir.path().join("far");
    fs::create_dir(&root).unwrap();

    let first = copy_image(
        &Location::Local(source.clone()),
        &agent(&root, "copy.img"),
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(first.outcome, Outcome::Copied);
    assert_eq!(first.bytes_sent, 5 * MIB);
    assert!(first.wire_bytes_out > 5 * MIB);
    let copy = root.join("copy.img");
    assert_eq!(fs::read(&copy).unwrap(), fs::read(&source).unwrap());
    assert!(
        allocated(&copy) <= 5 * MIB + 64 * 1024,
        "allocated {}",
        allocated(&copy)
    );

    random_at(&source, 81 * MIB, 4096);
    let second = copy_image(
        &Location::Local(source.clone()),
        &agent(&root, "copy.img"),
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(second.bytes_sent, 4096);
    assert_eq!(fs::read(&copy).unwrap(), fs::read(&source).unwrap());

    let third = copy_image(
        &agent(&root, "copy.img"),
        &Location::Local(source.clone()),
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(third.outcome, Outcome::AlreadyEqual);
}

/// `len` bytes of text-like data (words in a pseudo-random order):
/// compressible about as well as the files of a file system image.
fn compressible(len: usize) -> Vec<u8> {
    let words = [
        "copy ",
        "image ",
        "agent ",
        "link ",
        "wire ",
        "cutover ",
        "zstd ",
        "host\n",
        "runbook ",
        "step ",
        "0x7f3a ",
        "/usr/lib ",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(words[(state % words.len() as u64) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

/// Through `cutover run` and a `via agent` host, both told a fixed level
/// (`CUTOVER_WIRE_ZSTD=3`; left to adapt, a pipe on this machine is faster
/// than any compression and gets raw bytes, see `compress.rs`).
#[test]
fn compressible_data_crosses_the_wire_compressed_both_ways_and_arrives_equal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("near")).unwrap();
    fs::create_dir_all(d.join("far")).unwrap();
    let source = d.join("near/source.img");
    fs::write(&source, compressible((40 * MIB) as usize)).unwrap();
    // Incompressible data in the middle goes raw: it is not made larger.
    random_at(&source, 16 * MIB, 8 * MIB);
    let text = format!(
        "runbook wire\n\n\
         host near addr 127.0.0.1 via local ./near\n\
         host far addr 127.0.0.1 via agent \"env CUTOVER_WIRE_ZSTD=3 {BIN} agent --stdio --root {}\"\n\n\
         step push\n  image.copy near:/source.img -> far:/copy.img\n\n\
         step pull after push\n  image.copy far:/copy.img -> near:/back.img\n",
        d.join("far").display()
    );
    let ran = support::run::run(d, "wire", &text, &[("CUTOVER_WIRE_ZSTD", "3")]);
    assert_eq!(ran.code, 0, "{}", ran.output);
    let act = |step: &str| {
        ran.evidence
            .iter()
            .find(|e| e.step == step && e.phase.as_str() == "act")
            .unwrap_or_else(|| panic!("no act evidence of {step}: {}", ran.output))
            .data
            .clone()
    };
    let bound = 8 * MIB + 16 * MIB;
    for (step, wire) in [("push", "wire_bytes_out"), ("pull", "wire_bytes_in")] {
        let data = act(step);
        assert_eq!(
            data["bytes_sent"].as_u64(),
            Some(40 * MIB),
            "{step}: {data}"
        );
        // 32 MiB of text at least halved; 8 MiB of noise as it is.
        let on_wire = data[wire].as_u64().unwrap_or(u64::MAX);
        assert!(
            on_wire < bound,
            "{step}: {on_wire} bytes on the wire: {data}"
        );
        assert!(
            on_wire > 8 * MIB,
            "{step}: {on_wire} bytes on the wire: {data}"
        );
    }
    let original = fs::read(&source).unwrap();
    assert_eq!(fs::read(d.join("far/copy.img")).unwrap(), original);
    assert_eq!(fs::read(d.join("near/back.img")).unwrap(), original);
}

#[test]
fn killing_the_agent_mid_transfer_leaves_the_destination_and_the_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.img");
    random_at(&source, 0, 140 * MIB);
    let root = dir.path().join("far");
    fs::create_dir(&root).unwrap();
    random_at(&root.join("copy.img"), 0, MIB);
    let old = fs::read(root.join("copy.img")).unwrap();

    let (mut src, src_path) = Endpoint::connect(&Location::Local(source.clone())).unwrap();
    let (mut dst, dst_path) = Endpoint::connect(&agent(&root, "copy.img")).unwrap();
    let pid = dst.agent_pid().unwrap();
    let killed = AtomicBool::new(false);
    // Kill once the second window's changes are sent and the last one's not
    // yet: by then the agent has staged the first window's.
    let kill = |p: Progress| {
        if p.scanned >= 128 * MIB && !killed.swap(true, Ordering::SeqCst) {
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
        }
    };
    let options = CopyOptions {
        progress: Some(&kill),
        ..CopyOptions::default()
    };
    let err = copy_with(&mut src, &src_path, &mut dst, &dst_path, &options).unwrap_err();
    assert!(killed.load(Ordering::SeqCst));
    assert_eq!(err.kind, ErrorKind::AgentFailed, "{err}");
    assert!(err.message.contains("stopped unexpectedly"), "{err}");
    drop(dst);
    assert_eq!(
        fs::read(root.join("copy.img")).unwrap(),
        old,
        "destination changed"
    );
    // Patched in place: the blocks sent so far are staged beside it. By
    // the kill, every change of the first two windows had been handed to
    // the wire; at most a few 8 MiB batches were still on their way
    // (queued to compress, to write, in the pipe), so the agent had staged
    // at least the first window.
    let staged = staged_bytes(&root.join(".copy.img.cutover-staged"));
    assert!(
        staged >= 64 * MIB,
        "the agent had staged {staged} bytes when it was killed"
    );

    let rerun = copy_image(
        &Location::Local(source.clone()),
        &agent(&root, "copy.img"),
        &CopyOptions::default(),
    )
    .unwrap();
    assert!(rerun.resumed);
    // The rerun sends what was not staged, and nothing that was (a delta's
    // commands cost a little more than its bytes).
    assert!(
        rerun.bytes_sent <= (140 * MIB - staged) + MIB,
        "rerun sent {} with {staged} of {} bytes staged",
        rerun.bytes_sent,
        140 * MIB
    );
    assert_eq!(
        fs::read(root.join("copy.img")).unwrap(),
        fs::read(&source).unwrap()
    );
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_destination_survives() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.img");
    random_at(&source, 0, 16 * MIB);
    let root = dir.path().join("far");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("copy.img"), b"old contents").unwrap();
    // `ulimit -f` caps file size at a few MiB (512- or 1024-byte units).
    let limited = format!(
        "ulimit -f 4096; exec {BIN} agent --stdio --root {}",
        root.display()
    );
    let err = copy_image(
        &Location::Local(source),
        &Location::Agent {
            command: vec!["sh".into(), "-c".into(), limited],
            path: "copy.img".into(),
        },
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NoSpace, "{err}");
    assert!(
        err.message.contains("disk or the file size limit is full"),
        "{err}"
    );
    assert!(err.message.contains(".copy.img.cutover-staged"), "{err}");
    assert_eq!(fs::read(root.join("copy.img")).unwrap(), b"old contents");
}

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The agent as an unprivileged user (root may write anywhere), as a real
/// remote user would be.
fn unprivileged_agent_command(root: &Path) -> Vec<String> {
    let mut command = agent_command(root);
    if running_as_root() {
        let drop_privileges = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ];
        command.splice(0..0, drop_privileges.iter().map(|s| s.to_string()));
    }
    command
}

/// Copies `source` to `locked/copy.img` under `root` through an
/// unprivileged agent; the copy must fail.
fn copy_as_nobody(source: &Path, root: &Path) -> CopyError {
    copy_image(
        &Location::Local(source.to_path_buf()),
        &Location::Agent {
            command: unprivileged_agent_command(root),
            path: "locked/copy.img".into(),
        },
        &CopyOptions::default(),
    )
    .unwrap_err()
}

/// `path` under `root` (folders 0755) holding "old contents" with `mode`,
/// in a folder with `folder_mode`.
fn old_copy(root: &Path, folder_mode: u32, mode: u32) -> PathBuf {
    let folder = root.join("locked");
    fs::create_dir_all(&folder).unwrap();
    fs::set_permissions(root.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    let copy = folder.join("copy.img");
    fs::write(&copy, b"old contents").unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(mode)).unwrap();
    fs::set_permissions(&folder, fs::Permissions::from_mode(folder_mode)).unwrap();
    copy
}

#[test]
fn an_unwritable_destination_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.img");
    random_at(&source, 0, MIB);
    let root = dir.path().join("far");
    // The image could be patched, but nothing can be staged beside it.
    let copy = old_copy(&root, 0o555, 0o666);
    let err = copy_as_nobody(&source, &root);
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(err.message.contains("creating temporary file"), "{err}");
    assert_eq!(fs::read(copy).unwrap(), b"old contents");
}

#[test]
fn a_read_only_destination_is_a_clear_error_before_any_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.img");
    random_at(&source, 0, MIB);
    let root = dir.path().join("far");
    let copy = old_copy(&root, 0o777, 0o444);
    let err = copy_as_nobody(&source, &root);
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(err.message.contains("opening destination"), "{err}");
    assert_eq!(fs::read(&copy).unwrap(), b"old contents");
    assert!(!root.join("locked/.copy.img.cutover-staged").exists());
}

#[test]
fn the_agent_refuses_another_protocol_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["agent", "--stdio", "--root"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    write_frame(
        &mut stdin,
        &Request::Hello {
            version: PROTOCOL_VERSION + 41,
        }
        .encode(),
    )
    .unwrap();
    stdin.flush().unwrap();
    let answer = read_frame(child.stdout.as_mut().unwrap()).unwrap().unwrap();
    match Response::decode(&answer).unwrap() {
        Response::Error(err) => {
            assert_eq!(err.kind, ErrorKind::VersionMismatch);
            let expected = format!(
                "the coordinator speaks version {}, the agent speaks version {PROTOCOL_VERSION}",
                PROTOCOL_VERSION + 41
            );
            assert!(err.message.contains(&expected), "{err}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("protocol version mismatch"));
}

#[test]
fn the_agent_refuses_paths_outside_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("far");
    fs::create_dir(&root).unwrap();
    fs::write(dir.path().join("secret"), b"secret").unwrap();
    for path in ["../secret", "/../secret"] {
        let err = copy_image(
            &agent(&root, path),
            &Location::Local(dir.path().join("stolen")),
            &CopyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::OutsideRoot, "{err}");
        let err = copy_image(
            &Location::Local(dir.path().join("secret")),
            &agent(&root, path),
            &CopyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::OutsideRoot, "{err}");
    }
    assert!(!dir.path().join("stolen").exists());
    assert_eq!(fs::read(dir.path().join("secret")).unwrap(), b"secret");
}

#[test]
fn a_missing_agent_program_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("src"), b"x").unwrap();
    let err = copy_image(
        &Location::Local(dir.path().join("src")),
        &Location::Agent {
            command: vec!["/nonexistent/cutover".into()],
            path: "dst".into(),
        },
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::AgentFailed);
    assert!(
        err.message
            .contains("starting agent `/nonexistent/cutover`"),
        "{err}"
    );
}

/// A real OpenSSH server on a loopback port, with generated host and user
/// keys; the copy runs `ssh ... cutover agent --stdio` like rsync runs its server.
#[test]
#[ignore = "needs sshd (apt-get install openssh-server openssh-client)"]
fn copy_over_real_openssh() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let sshd = Sshd::start(base);

    let source = base.join("source.img");
    sized(&source, 40 * MIB);
    random_at(&source, 3 * MIB, 2 * MIB);
    let root = base.join("far");
    fs::create_dir(&root).unwrap();
    let ssh_agent = |path: &str| Location::Agent {
        command: ["ssh".to_string()]
            .into_iter()
            .chain(sshd.ssh_args())
            .chain([
                "-o".into(),
                "BatchMode=yes".into(),
                format!("{}@127.0.0.1", sshd.user),
                format!("{BIN} agent --stdio --root {}", root.display()),
            ])
            .collect(),
        path: path.to_string(),
    };
    let first = copy_image(
        &Location::Local(source.clone()),
        &ssh_agent("copy.img"),
        &CopyOptions::default(),
    );
    random_at(&source, 30 * MIB, 4096);
    let second = copy_image(
        &Location::Local(source.clone()),
        &ssh_agent("copy.img"),
        &CopyOptions::default(),
    );
    let outside = copy_image(
        &Location::Local(source.clone()),
        &ssh_agent("../escape.img"),
        &CopyOptions::default(),
    );
    drop(sshd);

    assert_eq!(first.unwrap().bytes_sent, 2 * MIB);
    assert_eq!(second.unwrap().bytes_sent, 4096);
    assert_eq!(
        fs::read(root.join("copy.img")).unwrap(),
        fs::read(&source).unwrap()
    );
    assert!(allocated(&root.join("copy.img")) <= 3 * MIB);
    assert_eq!(outside.unwrap_err().kind, ErrorKind::OutsideRoot);
}

/// `cutover run` killed with SIGKILL in the middle of an image.copy (the
/// coordinator; its agent sees the pipe close): the old image is as it was,
/// and the run taken over afterwards resumes the copy and sends less than a
/// fresh one.
#[test]
fn killing_the_coordinator_mid_copy_leaves_the_destination_and_the_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("old")).unwrap();
    fs::create_dir_all(d.join("new")).unwrap();
    random_at(&d.join("old/disk.img"), 0, 256 * MIB);
    random_at(&d.join("new/disk.img"), 0, MIB);
    let old = fs::read(d.join("new/disk.img")).unwrap();
    fs::write(
        d.join("killed.runbook"),
        format!(
            "runbook killed\n\nhost old addr 127.0.0.10 via local old\n\
             host far addr 127.0.0.20 via agent \"{BIN} agent --stdio --root /\"\n\n\
             step copy\n  image.copy old:/disk.img -> far:{}\n",
            d.join("new/disk.img").display()
        ),
    )
    .unwrap();
    let run = |take_over: bool| {
        let mut command = Command::new(BIN);
        command
            .current_dir(d)
            .arg("run")
            .args(take_over.then_some("--take-over"))
            .arg("killed.runbook")
            .env("USER", "tester")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };

    let mut first = run(false).spawn().unwrap();
    let staged = d.join("new/.disk.img.cutover-staged");
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::metadata(&staged).map(|m| m.len()).unwrap_or(0) < 16 * MIB {
        assert!(
            Instant::now() < deadline && first.try_wait().unwrap().is_none(),
            "the copy ended before 16 MiB were staged"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(
        fs::read(d.join("new/disk.img")).unwrap(),
        old,
        "destination changed"
    );
    // The agent stages what it already received, then sees its input end.
    let mut staged_len = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let len = fs::metadata(&staged).unwrap().len();
        if len == staged_len || Instant::now() > deadline {
            break;
        }
        staged_len = len;
    }

    let out = run(true).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(d.join("new/disk.img")).unwrap(),
        fs::read(d.join("old/disk.img")).unwrap()
    );
    assert!(!staged.exists());
    let store = cutover_store::Store::open_existing(&d.join(".cutover/killed.db")).unwrap();
    let run_id = store.latest_run().unwrap().unwrap().id;
    let copied = store
        .latest_evidence(run_id, "copy", cutover_store::Phase::Act)
        .unwrap()
        .unwrap()
        .data;
    assert_eq!(copied["resumed"], true, "{copied}");
    assert_eq!(copied["in_place"], true, "{copied}");
    // Everything staged before the kill is kept, not sent again (record
    // headers aside).
    assert!(
        copied["bytes_reused"].as_u64().unwrap() + (64 << 10) >= staged_len,
        "{staged_len} bytes were staged: {copied}"
    );
    assert!(
        copied["bytes_sent"].as_u64().unwrap() < 256 * MIB - 15 * MIB,
        "the rerun sent {copied}"
    );
}
