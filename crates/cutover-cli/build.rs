//! Sets `CUTOVER_VERSION` for `cutover --version`: the crate version and,
//! when this crate is built from a git checkout that tracks it, the short
//! commit (`0.1.0 (1a2b3c4)`). Without git, outside a checkout (a tarball,
//! a registry copy) or when git fails, the crate version alone: the build
//! never fails for want of git.

use std::path::Path;
use std::process::Command;

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&manifest_dir);
    let full = match commit(dir) {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    };
    println!("cargo:rustc-env=CUTOVER_VERSION={full}");
    if let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) {
        let git_dir = Path::new(&git_dir);
        // A new commit moves the branch HEAD names (or HEAD itself when
        // detached); packed refs cover a branch packed by git gc. Only
        // files that exist: cargo reruns for a missing one on every build.
        let branch = git(dir, &["symbolic-ref", "-q", "HEAD"]);
        let watched = ["HEAD", "packed-refs"]
            .into_iter()
            .chain(branch.as_deref())
            .map(|name| git_dir.join(name))
            .filter(|path| path.is_file());
        for path in watched {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// The short commit of HEAD, when git tracks this crate (so that a copy
/// unpacked inside some other repository does not take that one's commit).
fn commit(dir: &Path) -> Option<String> {
    git(dir, &["ls-files", "--error-unmatch", "Cargo.toml"])?;
    git(dir, &["rev-parse", "--short", "HEAD"])
}

/// The trimmed stdout of `git ARGS` run in `dir`, when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}
