//! Opening paths beneath a root without following links out of it.
//!
//! An agent runs as root on the far host and writes where it is told under
//! its `--root`; anyone who can write in a folder there could swap that
//! folder, or a file beside the destination, for a link out of the root.
//! Checking a path first and opening it later leaves a window for exactly
//! that. So a path is checked and opened in one step, by the kernel:
//! `openat2` from a descriptor of the root with `RESOLVE_BENEATH` (links
//! that stay beneath the root are followed, none that leave it, nor
//! absolute ones, except beneath `/`). The destination's folder is held open as a descriptor
//! ([`Folder`]), and the files a copy creates, renames and removes beside
//! the destination (partial, staging, journal) are reached by name from it
//! with `O_NOFOLLOW`: never through a link, and always in that folder.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{CopyError, ErrorKind};

/// Where paths are taken from: anywhere on this machine, or only beneath a
/// root folder.
pub(crate) struct Root {
    /// The root folder, held open, and how paths are resolved beneath it;
    /// `None` for this whole machine.
    fd: Option<(Arc<OwnedFd>, ResolveFlags)>,
    path: PathBuf,
}

/// How links are resolved beneath a root: none may lead out, none is a
/// `/proc` magic link. Beneath `/` nothing can lead out, and absolute links
/// (which `RESOLVE_BENEATH` refuses) are followed as usual.
fn resolve_beneath(root: &Path) -> ResolveFlags {
    if root == Path::new("/") {
        ResolveFlags::empty()
    } else {
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
    }
}

impl Root {
    /// Any path on this machine, as the operating system resolves it.
    pub(crate) fn anywhere() -> Root {
        Root {
            fd: None,
            path: PathBuf::new(),
        }
    }

    /// Only paths beneath the folder `path`.
    pub(crate) fn folder(path: &Path) -> Result<Root, CopyError> {
        let real = std::fs::canonicalize(path).map_err(|e| CopyError::io("root", path, e))?;
        let fd = rustix::fs::open(
            &real,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOTDIR => CopyError::new(
                ErrorKind::InvalidInput,
                format!("root {} is not a folder", real.display()),
            ),
            e => CopyError::io("root", &real, e.into()),
        })?;
        Ok(Root {
            fd: Some((Arc::new(fd), resolve_beneath(&real))),
            path: real,
        })
    }

    /// The entry `requested` names. Beneath a root every path is taken
    /// from the root (`/srv/a` and `srv/a` are both `ROOT/srv/a`) and `..`
    /// is refused; nothing is looked up on disk yet.
    pub(crate) fn entry(&self, requested: &str) -> Result<Entry, CopyError> {
        let outside = || {
            CopyError::new(
                ErrorKind::OutsideRoot,
                format!(
                    "path {requested} is outside the root {}",
                    self.path.display()
                ),
            )
        };
        let relative = match &self.fd {
            None => PathBuf::from(requested),
            Some(_) => {
                let mut relative = PathBuf::new();
                for component in Path::new(requested).components() {
                    match component {
                        Component::Normal(part) => relative.push(part),
                        Component::CurDir | Component::RootDir => {}
                        Component::ParentDir | Component::Prefix(_) => return Err(outside()),
                    }
                }
                relative
            }
        };
        let name = relative
            .file_name()
            .filter(|_| !requested.ends_with('/'))
            .map(OsStr::to_os_string)
            .ok_or_else(|| {
                CopyError::new(
                    ErrorKind::InvalidInput,
                    format!("{requested} does not name a file"),
                )
            })?;
        let folder = match relative.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Entry {
            root: self.fd.clone(),
            path: self.path.join(&relative),
            folder_path: self.path.join(&folder),
            folder,
            relative,
            name,
            requested: requested.to_string(),
            root_path: self.path.clone(),
        })
    }
}

/// A file named beneath a [`Root`], not yet opened.
pub(crate) struct Entry {
    root: Option<(Arc<OwnedFd>, ResolveFlags)>,
    /// From the root (or as given, on this whole machine).
    relative: PathBuf,
    folder: PathBuf,
    name: OsString,
    /// Where it is on this machine, for messages.
    pub(crate) path: PathBuf,
    folder_path: PathBuf,
    requested: String,
    root_path: PathBuf,
}

impl Entry {
    /// An error of `what` on this entry: a link that leads out of the root
    /// is [`ErrorKind::OutsideRoot`], anything else an I/O error.
    fn error(&self, what: &str, path: &Path, err: io::Error) -> CopyError {
        if self.root.is_some() && matches!(Errno::from_io_error(&err), Some(Errno::XDEV)) {
            return CopyError::new(
                ErrorKind::OutsideRoot,
                format!(
                    "path {} is outside the root {}: a link on the way leads out of it",
                    self.requested,
                    self.root_path.display()
                ),
            );
        }
        CopyError::io(what, path, err)
    }

    /// Whether the entry is beneath a root other than `/`.
    fn confined(&self) -> bool {
        matches!(&self.root, Some((_, resolve)) if !resolve.is_empty())
    }

    /// Opens the entry itself (links beneath the root are followed).
    pub(crate) fn open(&self, what: &str, flags: OFlags) -> Result<File, CopyError> {
        open_at(self.root.as_ref(), &self.relative, flags)
            .map(File::from)
            .map_err(|e| self.error(what, &self.path, e))
    }

    /// Opens the folder that holds the entry.
    pub(crate) fn folder(&self, what: &str) -> Result<Folder, CopyError> {
        let fd = open_at(
            self.root.as_ref(),
            &self.folder,
            OFlags::RDONLY | OFlags::DIRECTORY,
        )
        .map_err(|e| match Errno::from_io_error(&e) {
            Some(Errno::NOTDIR) => CopyError::new(
                ErrorKind::InvalidInput,
                format!("{what} {} is not a folder", self.folder_path.display()),
            ),
            _ => self.error(what, &self.folder_path, e),
        })?;
        Ok(Folder {
            fd: Arc::new(fd),
            path: self.folder_path.clone(),
            confined: self.confined(),
        })
    }

    /// The entry's own name in its folder.
    pub(crate) fn name(&self) -> &OsStr {
        &self.name
    }

    /// The entry a link at this entry leads to (itself when it is none),
    /// followed beneath the root as when opened and named again from the
    /// root, so that the folder holding the file itself can be held.
    pub(crate) fn followed(&self, what: &str) -> Result<Entry, CopyError> {
        let root = Root {
            fd: self.root.clone(),
            path: self.root_path.clone(),
        };
        if !self.confined() {
            // Nothing leads out of `/`: the path is opened as it is.
            return root.entry(&self.requested);
        }
        let file = match open_at(self.root.as_ref(), &self.relative, OFlags::PATH) {
            Ok(fd) => File::from(fd),
            // Nothing there yet (a destination before its first sync): the
            // entry itself is where the database will be. A link to nothing
            // is not followed later either: SQLite opens with O_NOFOLLOW.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return root.entry(&self.requested);
            }
            Err(e) => return Err(self.error(what, &self.path, e)),
        };
        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(|e| CopyError::io(what, &self.path, e))?;
        let within = match root.fd {
            Some(_) => real.strip_prefix(&self.root_path).ok(),
            None => Some(real.as_path()),
        };
        match within.and_then(Path::to_str) {
            Some(within) => root.entry(within),
            None => Err(CopyError::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} leads to {}, which cannot be named from the root {}",
                    self.requested,
                    real.display(),
                    self.root_path.display()
                ),
            )),
        }
    }

    /// The path, as the entry was named from the root, of `name` beside
    /// this entry.
    pub(crate) fn beside_path(&self, name: &OsStr) -> Option<String> {
        self.relative
            .with_file_name(name)
            .into_os_string()
            .into_string()
            .ok()
    }
}

/// Opens `path` (an existing file or folder) from `root`, beneath it, or
/// as given without a root.
fn open_at(
    root: Option<&(Arc<OwnedFd>, ResolveFlags)>,
    path: &Path,
    flags: OFlags,
) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC;
    let fd = match root {
        Some((root, resolve)) => rustix::fs::openat2(&**root, path, flags, Mode::empty(), *resolve),
        None => rustix::fs::open(path, flags, Mode::empty()),
    };
    Ok(fd?)
}

/// A folder held open: the entries in it are reached by name from it,
/// never through a link.
#[derive(Clone)]
pub(crate) struct Folder {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    /// Beneath a root other than `/`: paths handed to code that opens by
    /// path (SQLite) must lead through the descriptor. Beneath `/`, or on
    /// the whole machine, nothing can lead out, and `/proc` may be absent
    /// (a lab's agent runs in a chroot without it).
    confined: bool,
}

/// What a name in a folder is, not following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Missing,
    File,
    /// A folder, a link or anything else that is not a regular file.
    Other,
}

impl Folder {
    /// Where `name` in this folder is, for messages.
    pub(crate) fn path_of(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// A path of `name` in this folder that leads through the folder's
    /// descriptor (`/proc/self/fd/N/NAME`): for code that can only open
    /// files by path (SQLite), so that whatever it opens there, and beside
    /// it, is in this folder even if the folder's own path now leads
    /// elsewhere. Valid while this folder is held.
    pub(crate) fn held_path(&self, name: &OsStr) -> PathBuf {
        if !self.confined {
            return self.path.join(name);
        }
        Path::new(&format!("/proc/self/fd/{}", self.fd.as_raw_fd())).join(name)
    }

    /// Opens `name` in this folder with `flags`, never through a link
    /// (`O_NOFOLLOW`); created (0666 less the umask) when `flags` say so.
    pub(crate) fn open(&self, name: &OsStr, flags: OFlags) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &*self.fd,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        Ok(File::from(fd))
    }

    /// Creates `name`, which must not exist yet (not even as a link), for
    /// reading and writing.
    pub(crate) fn create_new(&self, name: &OsStr) -> io::Result<File> {
        self.open(name, OFlags::RDWR | OFlags::CREATE | OFlags::EXCL)
    }

    /// The whole content of `name`; `None` when it does not exist.
    pub(crate) fn read(&self, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
        let mut file = match self.open(name, OFlags::RDONLY) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut body = Vec::new();
        file.read_to_end(&mut body)?;
        Ok(Some(body))
    }

    /// What `name` is, without following a link.
    pub(crate) fn kind(&self, name: &OsStr) -> io::Result<Kind> {
        match rustix::fs::statat(&*self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {
                Ok(Kind::File)
            }
            Ok(_) => Ok(Kind::Other),
            Err(Errno::NOENT) => Ok(Kind::Missing),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `name` (a link is removed, not what it leads to); `false`
    /// when there was nothing to remove.
    pub(crate) fn remove(&self, name: &OsStr) -> io::Result<bool> {
        match rustix::fs::unlinkat(&*self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames `from` to `to`, both in this folder.
    pub(crate) fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::renameat(&*self.fd, from, &*self.fd, to)?)
    }

    /// fsyncs the folder, so a rename or removal in it lasts.
    pub(crate) fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&*self.fd)?)
    }
}

/// `.NAME.SUFFIX`: the name of a file a copy keeps beside `name`.
pub(crate) fn beside(name: &OsStr, suffix: &str) -> OsString {
    let mut out = OsString::from(".");
    out.push(name);
    out.push(".");
    out.push(suffix);
    out
}
