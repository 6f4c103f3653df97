//! Image copy through local files and through an in-process agent (the
//! protocol over pipes, served by `agent::serve` on a thread).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use cutover_copy::agent::{AgentClient, serve};
use cutover_copy::protocol::{PROTOCOL_VERSION, Request, Response, read_frame, write_frame};
use cutover_copy::{
    Cancel, CopyOptions, Endpoint, ErrorKind, Location, Outcome, Progress, check_image, copy_image,
    copy_with,
};
use proptest::prelude::*;

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Writes `content`; with `sparse`, all-zero 4 KiB blocks become holes.
fn write_file(path: &Path, content: &[u8], sparse: bool) {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    file.set_len(content.len() as u64).unwrap();
    for (i, block) in content.chunks(4096).enumerate() {
        if !sparse || block.iter().any(|b| *b != 0) {
            file.write_all_at(block, i as u64 * 4096).unwrap();
        }
    }
}

fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

fn non_zero_block_bytes(content: &[u8]) -> u64 {
    content
        .chunks(4096)
        .filter(|b| b.iter().any(|x| *x != 0))
        .count() as u64
        * 4096
}

/// An agent served on a thread, spoken to over two pipes.
fn in_process_agent(root: &Path) -> Endpoint {
    let (request_reader, request_writer) = std::io::pipe().unwrap();
    let (response_reader, response_writer) = std::io::pipe().unwrap();
    let root = root.to_path_buf();
    std::thread::spawn(move || serve(&root, request_reader, response_writer));
    Endpoint::Agent(
        AgentClient::over(
            "in-process agent",
            Box::new(response_reader),
            Box::new(request_writer),
        )
        .unwrap(),
    )
}

fn local(path: &Path) -> (Endpoint, String) {
    Endpoint::connect(&Location::Local(path.to_path_buf())).unwrap()
}

#[derive(Debug, Clone)]
enum Edit {
    Insert { at: u32, seed: u64, len: u16 },
    Delete { at: u32, len: u32 },
    Overwrite { at: u32, seed: u64, len: u16 },
    Zeros { at: u32, len: u32 },
}

fn apply(content: &mut Vec<u8>, edit: &Edit) {
    let pos = |at: u32, content: &Vec<u8>| at as usize % (content.len() + 1);
    match *edit {
        Edit::Insert { at, seed, len } => {
            let at = pos(at, content);
            content.splice(at..at, noise(seed, len as usize));
        }
        Edit::Delete { at, len } => {
            let at = pos(at, content);
            let end = (at + len as usize).min(content.len());
            content.drain(at..end);
        }
        Edit::Overwrite { at, seed, len } => {
            let at = pos(at, content);
            let end = (at + len as usize).min(content.len());
            content[at..end].copy_from_slice(&noise(seed, end - at));
        }
        Edit::Zeros { at, len } => {
            let at = pos(at, content);
            let end = (at + len as usize).min(content.len());
            content[at..end].fill(0);
        }
    }
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<u32>(), any::<u64>(), 1u16..9000).prop_map(|(at, seed, len)| Edit::Insert {
            at,
            seed,
            len
        }),
        (any::<u32>(), 1u32..300_000).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<u32>(), any::<u64>(), 1u16..9000).prop_map(|(at, seed, len)| Edit::Overwrite {
            at,
            seed,
            len
        }),
        (any::<u32>(), 1u32..200_000).prop_map(|(at, len)| Edit::Zeros { at, len }),
    ]
}

/// An old file built from random data, zero runs and holes.
fn base_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((any::<bool>(), any::<u64>(), 0usize..200_000), 0..6).prop_map(|parts| {
        let mut content = Vec::new();
        for (is_data, seed, len) in parts {
            if is_data {
                content.extend(noise(seed, len));
            } else {
                content.extend(std::iter::repeat_n(0u8, len));
            }
        }
        content
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any old file, any edits: the destination ends byte-identical to the
    /// source, and holes in the source stay holes.
    #[test]
    fn copies_are_identical_and_sparse(
        base in base_strategy(),
        edits in prop::collection::vec(edit_strategy(), 0..5),
        dest_exists in any::<bool>(),
        sparse_source in any::<bool>(),
        through_agent in any::<bool>(),
        interrupt_after in prop::option::of(0u64..100_000),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut source = base.clone();
        for edit in &edits {
            apply(&mut source, edit);
        }
        write_file(&dir.path().join("src.img"), &source, sparse_source);
        if dest_exists {
            write_file(&dir.path().join("dst.img"), &base, true);
        }
        let (mut src, src_path) = local(&dir.path().join("src.img"));
        let (mut dst, dst_path) = if through_agent {
            (in_process_agent(dir.path()), "dst.img".to_string())
        } else {
            local(&dir.path().join("dst.img"))
        };
        if let Some(limit) = interrupt_after {
            // A first run cancelled once it has sent `limit` bytes (if it
            // gets that far) leaves the old destination as it was.
            let cancel = Cancel::new();
            let cancel_after = |p: Progress| {
                if p.sent > limit {
                    cancel.cancel();
                }
            };
            let options = CopyOptions { progress: Some(&cancel_after), cancel: Some(&cancel), limit: None };
            if copy_with(&mut src, &src_path, &mut dst, &dst_path, &options).is_err() {
                let left = fs::read(dir.path().join("dst.img")).ok();
                prop_assert!(left == dest_exists.then(|| base.clone()), "an interrupted copy changed the destination");
            }
        }
        let report = copy_with(&mut src, &src_path, &mut dst, &dst_path, &CopyOptions::default()).unwrap();
        let copied = fs::read(dir.path().join("dst.img")).unwrap();
        prop_assert!(copied == source, "destination differs from source");
        prop_assert!(!dir.path().join(".dst.img.cutover-staged").exists());
        prop_assert!(!dir.path().join(".dst.img.cutover-journal").exists());
        prop_assert!(allocated(&dir.path().join("dst.img")) <= non_zero_block_bytes(&source) + 16384);
        prop_assert!(!dir.path().join(".dst.img.cutover-partial").exists());
        prop_assert_eq!(report.size, source.len() as u64);
        prop_assert!(report.bytes_sent <= source.len() as u64 + 65536);
    }
}

#[test]
fn empty_and_one_byte_files_copy() {
    let dir = tempfile::tempdir().unwrap();
    for content in [&b""[..], &b"x"[..], &b"\0"[..]] {
        write_file(&dir.path().join("src"), content, false);
        let _ = fs::remove_file(dir.path().join("dst"));
        let src = Location::Local(dir.path().join("src"));
        let dst = Location::Local(dir.path().join("dst"));
        let report = copy_image(&src, &dst, &CopyOptions::default()).unwrap();
        assert_eq!(report.outcome, Outcome::Copied);
        assert_eq!(fs::read(dir.path().join("dst")).unwrap(), content);
        let again = copy_image(&src, &dst, &CopyOptions::default()).unwrap();
        assert_eq!(again.outcome, Outcome::AlreadyEqual);
        assert_eq!(again.bytes_sent, 0);
    }
}

/// A 150 MiB sparse image over three windows: a later in-place change sends
/// one block, an unchanged image sends nothing, holes stay holes.
#[test]
fn multi_window_sparse_image_sends_only_changed_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("big.img");
    let dst_path = dir.path().join("copy.img");
    let size = (150 << 20) + 123;
    let file = File::create(&src_path).unwrap();
    file.set_len(size).unwrap();
    file.write_all_at(&noise(1, 1 << 20), 0).unwrap();
    file.write_all_at(&noise(2, 1 << 20), 70 << 20).unwrap();
    file.write_all_at(&noise(3, 123), 150 << 20).unwrap();
    let src = Location::Local(src_path.clone());
    let dst = Location::Local(dst_path.clone());

    let first = copy_image(&src, &dst, &CopyOptions::default()).unwrap();
    assert!(!first.in_place, "a new file is written whole and renamed");
    assert_eq!(first.bytes_sent, (2 << 20) + 123);
    assert!(
        first.hole_bytes > 140 << 20,
        "holes found: {}",
        first.hole_bytes
    );
    assert!(
        allocated(&dst_path) < 3 << 20,
        "destination allocated {}",
        allocated(&dst_path)
    );

    file.write_all_at(&noise(4, 4096), (70 << 20) + 8192)
        .unwrap();
    let inode = fs::metadata(&dst_path).unwrap().ino();
    let second = copy_image(&src, &dst, &CopyOptions::default()).unwrap();
    assert_eq!(second.outcome, Outcome::Copied);
    assert!(second.in_place);
    assert_eq!(
        fs::metadata(&dst_path).unwrap().ino(),
        inode,
        "an existing image is patched in place, not replaced"
    );
    assert_eq!(second.bytes_sent, 4096);
    assert_eq!(second.blocks_sent, 1);
    assert_eq!(fs::read(&dst_path).unwrap(), fs::read(&src_path).unwrap());
    assert!(allocated(&dst_path) < 3 << 20);

    let third = copy_image(&src, &dst, &CopyOptions::default()).unwrap();
    assert_eq!(third.outcome, Outcome::AlreadyEqual);
    assert_eq!(third.bytes_sent, 0);
    let check = check_image(&src, &dst).unwrap();
    assert!(check.equal);
    assert_eq!(check.source_hash, third.hash);
}

/// Bytes inserted near the start shift everything after them; the rolling
/// delta still sends little.
#[test]
fn shifted_data_sends_a_small_delta() {
    let dir = tempfile::tempdir().unwrap();
    let old = noise(7, 3 << 20);
    let mut new = old.clone();
    new.splice(1000..1000, noise(8, 100));
    write_file(&dir.path().join("dst"), &old, false);
    write_file(&dir.path().join("src"), &new, false);
    let (mut src, src_path) = local(&dir.path().join("src"));
    let mut dst = in_process_agent(dir.path());
    let report = copy_with(
        &mut src,
        &src_path,
        &mut dst,
        "dst",
        &CopyOptions::default(),
    )
    .unwrap();
    assert!(report.delta_stretches >= 1);
    assert!(report.bytes_sent < 64 << 10, "sent {}", report.bytes_sent);
    assert_eq!(fs::read(dir.path().join("dst")).unwrap(), new);
}

/// Cancelling mid-transfer leaves the destination as it was; the rerun
/// reuses the partial copy and sends less than a fresh copy.
#[test]
fn cancelled_copy_leaves_destination_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let old = noise(11, 300_000);
    let new = noise(12, 48 << 20);
    write_file(&dir.path().join("dst"), &old, false);
    write_file(&dir.path().join("src"), &new, false);
    let cancel = Cancel::new();
    let cancel_when_sending = |p: Progress| {
        if p.sent > 0 {
            cancel.cancel();
        }
    };
    let options = CopyOptions {
        progress: Some(&cancel_when_sending),
        cancel: Some(&cancel),
        limit: None,
    };
    let (mut src, src_path) = local(&dir.path().join("src"));
    let mut dst = in_process_agent(dir.path());
    let err = copy_with(&mut src, &src_path, &mut dst, "dst", &options).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled);
    drop(dst);
    assert_eq!(fs::read(dir.path().join("dst")).unwrap(), old);
    // The old destination is patched in place: only changed blocks were staged.
    assert!(dir.path().join(".dst.cutover-staged").exists());

    let mut dst = in_process_agent(dir.path());
    let rerun = copy_with(
        &mut src,
        &src_path,
        &mut dst,
        "dst",
        &CopyOptions::default(),
    )
    .unwrap();
    assert!(rerun.resumed);
    assert!(
        rerun.bytes_sent < new.len() as u64 - (4 << 20),
        "rerun sent {}",
        rerun.bytes_sent
    );
    assert_eq!(fs::read(dir.path().join("dst")).unwrap(), new);
    assert!(rerun.in_place);
    assert!(!dir.path().join(".dst.cutover-staged").exists());
}

#[test]
fn missing_source_is_a_clear_error_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("dst"), b"keep me", false);
    let err = copy_image(
        &Location::Local(dir.path().join("nope.img")),
        &Location::Local(dir.path().join("dst")),
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(
        err.message.contains("opening source") && err.message.contains("nope.img"),
        "{err}"
    );
    assert_eq!(fs::read(dir.path().join("dst")).unwrap(), b"keep me");
}

#[test]
fn missing_destination_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("src"), b"data", false);
    let err = copy_image(
        &Location::Local(dir.path().join("src")),
        &Location::Local(dir.path().join("no/such/dir/dst")),
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("destination folder"), "{err}");
}

#[test]
fn agent_refuses_paths_outside_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(dir.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("out")).unwrap();
    let (mut src, src_path) = local(&dir.path().join("secret"));
    let outside: Vec<String> = vec![
        "../secret".into(),
        "a/../../secret".into(),
        "/../secret".into(),
        "out/secret".into(),
        "out/new-file".into(),
    ];
    for path in outside {
        let mut agent = in_process_agent(&root);
        let err = copy_with(
            &mut src,
            &src_path,
            &mut agent,
            &path,
            &CopyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::OutsideRoot, "{path}: {err}");
        assert!(err.message.contains("is outside the root"), "{err}");
        let mut agent = in_process_agent(&root);
        let (mut dst, dst_path) = local(&dir.path().join("copy"));
        let err = copy_with(
            &mut agent,
            &path,
            &mut dst,
            &dst_path,
            &CopyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::OutsideRoot, "{path}: {err}");
    }
    assert_eq!(fs::read(dir.path().join("secret")).unwrap(), b"secret");
    assert!(!dir.path().join("new-file").exists());
    assert!(!dir.path().join("copy").exists());
}

/// A host path means the same under an agent's `--root` as under a
/// `via local` folder: `/srv/disk.img` is `ROOT/srv/disk.img` both ways
/// (the absolute path of the file itself is not special).
#[test]
fn host_paths_are_taken_from_the_root_by_agents_and_local_roots_alike() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("srv")).unwrap();
    fs::write(dir.path().join("src"), vec![7u8; 10_000]).unwrap();
    let (mut src, src_path) = local(&dir.path().join("src"));
    let mut agent = in_process_agent(&root);
    copy_with(
        &mut src,
        &src_path,
        &mut agent,
        "/srv/by-agent.img",
        &CopyOptions::default(),
    )
    .unwrap();
    copy_image(
        &Location::Local(dir.path().join("src")),
        &Location::Rooted {
            root: root.clone(),
            path: "/srv/by-local.img".into(),
        },
        &CopyOptions::default(),
    )
    .unwrap();
    for name in ["by-agent.img", "by-local.img"] {
        assert_eq!(
            fs::read(root.join("srv").join(name)).unwrap(),
            vec![7u8; 10_000]
        );
    }
    // The file's own absolute path is taken from the root too: not found there.
    let err = copy_image(
        &Location::Rooted {
            root: root.clone(),
            path: dir.path().join("src").display().to_string(),
        },
        &Location::Local(dir.path().join("copy")),
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    let err = copy_image(
        &Location::Local(dir.path().join("src")),
        &Location::Rooted {
            root,
            path: "/../escape.img".into(),
        },
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::OutsideRoot, "{err}");
    assert!(!dir.path().join("escape.img").exists());
}

#[test]
fn coordinator_rejects_an_agent_of_another_version() {
    let (request_reader, request_writer) = std::io::pipe().unwrap();
    let (response_reader, mut response_writer) = std::io::pipe().unwrap();
    let fake = std::thread::spawn(move || {
        let mut request_reader = request_reader;
        let hello = read_frame(&mut request_reader).unwrap().unwrap();
        assert_eq!(
            Request::decode(&hello).unwrap(),
            Request::Hello {
                version: PROTOCOL_VERSION
            }
        );
        write_frame(
            &mut response_writer,
            &Response::Hello {
                version: PROTOCOL_VERSION + 1,
            }
            .encode(),
        )
        .unwrap();
    });
    let err = AgentClient::over(
        "fake agent",
        Box::new(response_reader),
        Box::new(request_writer),
    )
    .err()
    .unwrap();
    fake.join().unwrap();
    assert_eq!(err.kind, ErrorKind::VersionMismatch);
    assert!(
        err.message
            .contains(&format!("version {}", PROTOCOL_VERSION + 1)),
        "{err}"
    );
    assert!(
        err.message.contains(&format!("version {PROTOCOL_VERSION}")),
        "{err}"
    );
}

#[test]
fn agent_rejects_a_coordinator_of_another_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    write_frame(&mut input, &Request::Hello { version: 99 }.encode()).unwrap();
    let mut output = Vec::new();
    let err = serve(dir.path(), std::io::Cursor::new(input), &mut output).unwrap_err();
    assert_eq!(err.kind, ErrorKind::VersionMismatch);
    let answer = read_frame(&mut &output[..]).unwrap().unwrap();
    match Response::decode(&answer).unwrap() {
        Response::Error(err) => {
            assert!(
                err.message.contains("version 99")
                    && err.message.contains(&format!("version {PROTOCOL_VERSION}")),
                "{err}"
            )
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn garbage_from_the_peer_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut output = Vec::new();
    let err = serve(dir.path(), &b"SSH-2.0-OpenSSH_9.2\r\n"[..], &mut output).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
}

#[test]
fn temp_files_never_replace_a_destination_on_failure() {
    // A destination that is a folder cannot be replaced: the error names it.
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("src"), b"data", false);
    fs::create_dir(dir.path().join("dst")).unwrap();
    let err = copy_image(
        &Location::Local(dir.path().join("src")),
        &Location::Local(dir.path().join("dst")),
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(dir.path().join("dst").is_dir());
    let leftovers: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

/// `limit RATE`: the data goes no faster than the cap (a lower bound on
/// the time: the cap cannot be met by a slow machine by accident), and the
/// result is whole.
#[test]
fn a_limited_copy_moves_its_data_no_faster_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let new = noise(21, 3 << 20);
    write_file(&dir.path().join("src"), &new, false);
    let rate = 4 << 20;
    let options = CopyOptions {
        limit: Some(rate),
        ..CopyOptions::default()
    };
    let (mut src, src_path) = local(&dir.path().join("src"));
    let mut dst = in_process_agent(dir.path());
    let started = std::time::Instant::now();
    let report = copy_with(&mut src, &src_path, &mut dst, "dst", &options).unwrap();
    let took = started.elapsed().as_secs_f64();
    assert_eq!(fs::read(dir.path().join("dst")).unwrap(), new);
    assert_eq!(report.bytes_sent, 3 << 20);
    let floor = report.bytes_sent as f64 / rate as f64;
    assert!(
        took >= floor * 0.95,
        "{took:.3} s for {floor:.3} s of data at the limit"
    );
}

/// The limit holds the wire, not the data: data that compresses well moves
/// faster than the limit while the bytes written to the agent stay at it.
#[test]
fn a_limited_copy_of_compressible_data_holds_its_wire_bytes_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"the quick brown fox jumps over the lazy dog; ";
    let new: Vec<u8> = (0..8 << 20).map(|i| text[i % text.len()]).collect();
    write_file(&dir.path().join("src"), &new, false);
    let rate = 4 << 20;
    let options = CopyOptions {
        limit: Some(rate),
        ..CopyOptions::default()
    };
    let (mut src, src_path) = local(&dir.path().join("src"));
    let mut dst = in_process_agent(dir.path());
    let started = std::time::Instant::now();
    let report = copy_with(&mut src, &src_path, &mut dst, "dst", &options).unwrap();
    let took = started.elapsed().as_secs_f64();
    assert_eq!(fs::read(dir.path().join("dst")).unwrap(), new);
    let data_at_limit = report.bytes_sent as f64 / rate as f64;
    assert!(
        report.wire_bytes_out * 2 < report.bytes_sent,
        "the text was not compressed: {} wire bytes for {} data bytes",
        report.wire_bytes_out,
        report.bytes_sent
    );
    assert!(
        took < data_at_limit * 0.75,
        "{took:.3} s: paced by the data ({data_at_limit:.3} s at the limit), not by the wire"
    );
    assert!(
        took >= report.wire_bytes_out as f64 / rate as f64 * 0.9,
        "{took:.3} s for {} wire bytes at {rate} bytes a second",
        report.wire_bytes_out
    );
}
