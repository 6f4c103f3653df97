//! Confinement to the root against races: while copies into a root run,
//! another process swaps the destination's folder for a link that leads
//! out of the root, or plants links to files outside beside the
//! destination (where the copy creates its partial, staging and journal
//! files). Nothing outside the root may be created, written or removed.

mod support;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use support::snapshot;

use cutover_copy::{CopyOptions, Location, copy_image};

/// How many copies each test runs at most, and for how long.
const COPIES: u64 = 400;
const BUDGET: Duration = Duration::from_secs(20);

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Copies `src` (new content each time) to `ROOT/dest_of(i)` up to
/// [`COPIES`] times within [`BUDGET`], while `meddle` runs on a thread of
/// its own until the copies end; some of them must succeed. Returns how
/// many did.
fn copies_while(
    root: &Path,
    src: &Path,
    dest_of: impl Fn(u64) -> String,
    meddle: impl Fn(u64) + Send + Sync,
) -> u64 {
    let stop = AtomicBool::new(false);
    let copied = AtomicU64::new(0);
    let last_error = std::sync::Mutex::new(None);
    thread::scope(|scope| {
        let meddler = scope.spawn(|| {
            let mut round = 0;
            while !stop.load(Ordering::SeqCst) && round < 1_000_000 {
                meddle(round);
                round += 1;
            }
        });
        let started = Instant::now();
        for i in 0..COPIES {
            if started.elapsed() > BUDGET {
                break;
            }
            fs::write(src, content(i, 96 << 10)).unwrap();
            let dest = Location::Rooted {
                root: root.to_path_buf(),
                path: dest_of(i),
            };
            let source = Location::Local(src.to_path_buf());
            match copy_image(&source, &dest, &CopyOptions::default()) {
                Ok(_) => {
                    copied.fetch_add(1, Ordering::SeqCst);
                }
                Err(err) => *last_error.lock().unwrap() = Some(err.to_string()),
            }
        }
        stop.store(true, Ordering::SeqCst);
        meddler.join().unwrap();
    });
    let copied = copied.into_inner();
    assert!(
        copied > 0,
        "no copy got through; the last error: {:?}",
        last_error.into_inner().unwrap()
    );
    copied
}

/// The destination's folder is swapped, again and again, for a link to a
/// folder outside the root (which holds an image of the same name).
#[test]
fn a_folder_swapped_for_a_link_out_of_the_root_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    fs::create_dir_all(root.join("disks")).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("disk.img"), b"outside the root").unwrap();
    fs::write(root.join("disks/disk.img"), content(99, 96 << 10)).unwrap();
    let before = snapshot(&outside);
    let src = dir.path().join("src.img");
    let (real, moved) = (root.join("disks"), root.join("disks.moved"));
    copies_while(
        &root,
        &src,
        // New files (built whole, renamed in) and the existing image
        // (patched in place behind a journal), in turn.
        |i| {
            if i % 2 == 0 {
                format!("disks/new-{i}.img")
            } else {
                "disks/disk.img".to_string()
            }
        },
        |_| {
            if fs::rename(&real, &moved).is_ok() {
                let _ = std::os::unix::fs::symlink(&outside, &real);
                thread::yield_now();
                let _ = fs::remove_file(&real);
                let _ = fs::rename(&moved, &real);
            }
        },
    );
    if !real.is_dir() {
        fs::rename(&moved, &real).unwrap();
    }
    assert_eq!(
        snapshot(&outside),
        before,
        "a copy reached outside the root"
    );
}

/// Links to files outside the root are planted, again and again, where
/// the copy creates its files beside the destination.
#[test]
fn links_planted_beside_the_destination_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    fs::create_dir_all(root.join("disks")).unwrap();
    fs::create_dir(&outside).unwrap();
    let suffixes = [
        "cutover-journal",
        "cutover-staged",
        "cutover-partial",
        "cutover-applied",
    ];
    for suffix in suffixes {
        fs::write(outside.join(suffix), format!("victim {suffix}")).unwrap();
    }
    fs::write(root.join("disks/disk.img"), content(99, 96 << 10)).unwrap();
    let before = snapshot(&outside);
    let src = dir.path().join("src.img");
    copies_while(
        &root,
        &src,
        |i| {
            if i % 2 == 0 {
                format!("disks/new-{}.img", i % 8)
            } else {
                "disks/disk.img".to_string()
            }
        },
        |round| {
            let name = ["disk.img", "new-0.img", "new-2.img", "new-4.img"][(round % 4) as usize];
            let links = suffixes.map(|suffix| root.join("disks").join(format!(".{name}.{suffix}")));
            for (link, suffix) in links.iter().zip(suffixes) {
                let _ = std::os::unix::fs::symlink(outside.join(suffix), link);
            }
            thread::yield_now();
            // Gone again now and then, so that copies can get through.
            for link in &links {
                if fs::symlink_metadata(link).is_ok_and(|m| m.is_symlink()) {
                    let _ = fs::remove_file(link);
                }
            }
            thread::sleep(Duration::from_millis(1));
        },
    );
    assert_eq!(
        snapshot(&outside),
        before,
        "a copy reached outside the root"
    );
}

/// Beneath `/` nothing can lead out, so an absolute link is followed as
/// usual (`--root /` is how agents over ssh usually run); beneath any
/// other root an absolute link is refused, even one that points inside.
#[test]
fn absolute_links_are_followed_beneath_slash_only() {
    let dir = tempfile::tempdir().unwrap();
    let (root, real) = (dir.path().join("root"), dir.path().join("root/real"));
    fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&real, root.join("link")).unwrap();
    let src = dir.path().join("src.img");
    fs::write(&src, content(1, 8192)).unwrap();
    let copy_to = |root: &Path, path: String| {
        let dest = Location::Rooted {
            root: root.to_path_buf(),
            path,
        };
        copy_image(
            &Location::Local(src.clone()),
            &dest,
            &CopyOptions::default(),
        )
    };
    let through_link = root.join("link/a.img").display().to_string();
    copy_to(Path::new("/"), through_link).unwrap();
    assert_eq!(fs::read(real.join("a.img")).unwrap(), content(1, 8192));
    let err = copy_to(&root, "link/b.img".to_string()).unwrap_err();
    assert_eq!(err.kind, cutover_copy::ErrorKind::OutsideRoot, "{err}");
    assert!(!real.join("b.img").exists());
}
