//! The file side of a copy: what either end does to its own disk.
//!
//! The agent serves protocol requests with it, and a `Location::Local`
//! endpoint calls it directly, so local and remote copies run the same code.
//! The destination is never written in place: changes go to a temporary
//! file beside it (`.NAME.cutover-partial`), which is fsynced, verified
//! against the source's content hash and renamed over the destination. Each
//! window of the temporary file is hashed as soon as the coordinator seals
//! it (still in the page cache, while the next window is compared) and its
//! write-back starts then, so finishing costs little more than a sync. An
//! interrupted run leaves that file behind; the next run hashes it and keeps
//! what it already holds.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::thread;

use fast_rsync::{Signature, SignatureOptions};
use memmap2::{Mmap, MmapOptions};

use crate::blocks::{self, BLOCK_SIZE, Want};
use crate::error::{CopyError, ErrorKind};
use crate::protocol::{PatchOp, Request, Response, Role};
use crate::sqlite;

/// Largest single read a peer may ask for.
const MAX_READ: u64 = 16 << 20;
/// Largest range a signature or delta may cover.
const MAX_DELTA_RANGE: u64 = 32 << 20;
/// fast_rsync strong-hash bytes per block (MD4, truncated).
const RSYNC_HASH_BYTES: u32 = 8;

struct SourceFile {
    path: PathBuf,
    file: File,
    size: u64,
}

struct DestFile {
    path: PathBuf,
    size: u64,
    basis: Option<(File, u64)>,
    temp_path: PathBuf,
    /// Shared, not duplicated per request: closing a duplicate descriptor
    /// makes ext4 allocate the file's delayed blocks.
    temp: Option<Arc<File>>,
    /// Content digests of the temporary file's sealed windows.
    sealed: Vec<Option<[u8; 32]>>,
    /// The window being hashed on a thread of its own, so that hashing it
    /// overlaps with the next request.
    sealing: Option<(usize, Sealing)>,
}

/// The hashing of one sealed window: its content digest.
type Sealing = thread::JoinHandle<io::Result<Option<[u8; 32]>>>;

/// One end's files: an optional confinement root, the open source and the
/// open destination.
pub struct FileSide {
    root: Option<PathBuf>,
    source: Option<SourceFile>,
    dest: Option<DestFile>,
}

impl FileSide {
    /// Serves any path on this machine (a `Location::Local`).
    pub fn unconfined() -> FileSide {
        FileSide {
            root: None,
            source: None,
            dest: None,
        }
    }

    /// Serves only paths under `root` (the agent).
    pub fn confined(root: &Path) -> Result<FileSide, CopyError> {
        let root = fs::canonicalize(root).map_err(|e| CopyError::io("agent root", root, e))?;
        if !root.is_dir() {
            return Err(CopyError::new(
                ErrorKind::InvalidInput,
                format!("agent root {} is not a folder", root.display()),
            ));
        }
        Ok(FileSide {
            root: Some(root),
            source: None,
            dest: None,
        })
    }

    /// Answers one request.
    pub fn handle(&mut self, request: Request) -> Result<Response, CopyError> {
        match request {
            Request::Hello { .. } => Err(CopyError::protocol("protocol error: a second hello")),
            Request::OpenSource { path } => self.open_source(&path),
            Request::OpenDest { path, size } => self.open_dest(&path, size),
            Request::Hash {
                role,
                start,
                end,
                want,
            } => self.hash(role, start, end, want),
            Request::Read { ranges } => self.read(&ranges),
            Request::Signature { start, end } => self.signature(start, end),
            Request::Delta {
                signature,
                start,
                end,
            } => self.delta(signature, start, end),
            Request::Patch { ops } => {
                for op in ops {
                    self.patch(op)?;
                }
                Ok(Response::Ok)
            }
            Request::Finish { hash, sqlite } => self.finish(hash, sqlite),
            Request::DiscardPartial => self.discard_partial(),
            Request::Snapshot { path } => {
                let db = self.resolve(&path)?;
                let snapshot_name = format!(".{}.cutover-snapshot", file_name(&db)?);
                let method = sqlite::snapshot(&db, &db.with_file_name(&snapshot_name))?;
                let reply_path = match path.rfind('/') {
                    Some(slash) => format!("{}{snapshot_name}", &path[..=slash]),
                    None => snapshot_name,
                };
                Ok(Response::Snapshot {
                    path: reply_path,
                    method: method.to_string(),
                })
            }
            Request::Checksums { path } => Ok(Response::Checksums(sqlite::table_checksums(
                &self.resolve(&path)?,
            )?)),
            Request::Remove { path } => {
                let target = self.resolve(&path)?;
                if !file_name(&target)?.ends_with(".cutover-snapshot") {
                    return Err(CopyError::new(
                        ErrorKind::InvalidInput,
                        format!("refusing to remove {path}: only snapshots may be removed"),
                    ));
                }
                fs::remove_file(&target).map_err(|e| CopyError::io("removing", &target, e))?;
                Ok(Response::Ok)
            }
        }
    }

    /// Maps a requested path to a path on disk, refusing anything outside
    /// the root: `..`, absolute paths elsewhere, symbolic links that lead out.
    /// Relative paths are taken from the root; absolute ones must lie under it.
    fn resolve(&self, requested: &str) -> Result<PathBuf, CopyError> {
        let Some(root) = &self.root else {
            return Ok(PathBuf::from(requested));
        };
        let outside = || {
            CopyError::new(
                ErrorKind::OutsideRoot,
                format!(
                    "path {requested} is outside the agent's root {}",
                    root.display()
                ),
            )
        };
        let path = Path::new(requested);
        let relative = if path.is_absolute() {
            path.strip_prefix(root).map_err(|_| outside())?
        } else {
            path
        };
        let mut joined = root.clone();
        for component in relative.components() {
            match component {
                Component::Normal(part) => joined.push(part),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(outside());
                }
            }
        }
        // The deepest part that exists decides where symbolic links lead.
        let mut existing = joined.as_path();
        loop {
            if fs::symlink_metadata(existing).is_ok() {
                break;
            }
            match existing.parent() {
                Some(parent) => existing = parent,
                None => return Err(outside()),
            }
        }
        match fs::canonicalize(existing) {
            Ok(real) if real.starts_with(root) => Ok(joined),
            Ok(_) => Err(outside()),
            // A dangling link: refuse rather than guess where it leads.
            Err(_) => Err(outside()),
        }
    }

    fn open_source(&mut self, path: &str) -> Result<Response, CopyError> {
        let path = self.resolve(path)?;
        let file = File::open(&path).map_err(|e| CopyError::io("opening source", &path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| CopyError::io("reading", &path, e))?;
        if !meta.is_file() {
            return Err(CopyError::new(
                ErrorKind::InvalidInput,
                format!("source {} is not a regular file", path.display()),
            ));
        }
        let size = meta.len();
        self.source = Some(SourceFile { path, file, size });
        Ok(Response::Opened { size })
    }

    fn open_dest(&mut self, path: &str, size: u64) -> Result<Response, CopyError> {
        let path = self.resolve(path)?;
        let name = file_name(&path)?;
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match fs::metadata(parent) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(CopyError::new(
                    ErrorKind::InvalidInput,
                    format!("destination folder {} is not a folder", parent.display()),
                ));
            }
            Err(e) => return Err(CopyError::io("destination folder", parent, e)),
        }
        let basis = match File::open(&path) {
            Ok(file) => {
                let meta = file
                    .metadata()
                    .map_err(|e| CopyError::io("reading", &path, e))?;
                if !meta.is_file() {
                    return Err(CopyError::new(
                        ErrorKind::InvalidInput,
                        format!("destination {} is not a regular file", path.display()),
                    ));
                }
                Some((file, meta.len()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(CopyError::io("opening destination", &path, e)),
        };
        let temp_path = parent.join(format!(".{name}.cutover-partial"));
        let temp = match OpenOptions::new().read(true).write(true).open(&temp_path) {
            Ok(file) if file.metadata().map(|m| m.is_file()).unwrap_or(false) => {
                file.set_len(size)
                    .map_err(|e| CopyError::io("resizing", &temp_path, e))?;
                Some(Arc::new(file))
            }
            Ok(_) => {
                return Err(CopyError::new(
                    ErrorKind::InvalidInput,
                    format!("{} is in the way and not a file", temp_path.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(CopyError::io("opening", &temp_path, e)),
        };
        let resumed = temp.is_some();
        let basis_size = basis.as_ref().map(|(_, len)| *len);
        self.dest = Some(DestFile {
            path,
            size,
            basis,
            temp_path,
            temp,
            sealed: vec![None; blocks::window_count(size) as usize],
            sealing: None,
        });
        Ok(Response::DestOpened {
            basis_size,
            resumed,
        })
    }

    fn source(&self) -> Result<&SourceFile, CopyError> {
        self.source
            .as_ref()
            .ok_or_else(|| CopyError::protocol("protocol error: no source is open"))
    }

    fn dest(&mut self) -> Result<&mut DestFile, CopyError> {
        self.dest
            .as_mut()
            .ok_or_else(|| CopyError::protocol("protocol error: no destination is open"))
    }

    fn hash(
        &mut self,
        role: Role,
        start: u64,
        end: u64,
        want: Want,
    ) -> Result<Response, CopyError> {
        let (file, size, path) =
            match role {
                Role::Source => {
                    let source = self.source()?;
                    (&source.file, source.size, &source.path)
                }
                Role::Basis => {
                    let dest = self.dest.as_ref().ok_or_else(|| {
                        CopyError::protocol("protocol error: no destination is open")
                    })?;
                    let (file, size) = dest.basis.as_ref().ok_or_else(|| {
                        CopyError::protocol("protocol error: the destination has no old copy")
                    })?;
                    (file, *size, &dest.path)
                }
                Role::Partial => {
                    let dest = self.dest.as_ref().ok_or_else(|| {
                        CopyError::protocol("protocol error: no destination is open")
                    })?;
                    let file = dest.temp.as_ref().ok_or_else(|| {
                        CopyError::protocol("protocol error: there is no partial copy")
                    })?;
                    (&**file, dest.size, &dest.temp_path)
                }
            };
        let hashes = blocks::hash_window(file, size, start, end, want)
            .map_err(|e| CopyError::io("reading", path, e))?;
        Ok(Response::Hashes(hashes))
    }

    fn read(&self, ranges: &[(u64, u64)]) -> Result<Response, CopyError> {
        let source = self.source()?;
        let total = ranges.iter().try_fold(0u64, |sum, (start, len)| {
            let in_file = start
                .checked_add(*len)
                .is_some_and(|end| end <= source.size);
            sum.checked_add(*len).filter(|t| in_file && *t <= MAX_READ)
        });
        let Some(total) = total else {
            return Err(CopyError::protocol(
                "protocol error: a read is out of range or too large",
            ));
        };
        let mut data = vec![0u8; total as usize];
        let mut at = 0usize;
        for (start, len) in ranges {
            let len = *len as usize;
            source
                .file
                .read_exact_at(&mut data[at..at + len], *start)
                .map_err(|e| CopyError::io("reading", &source.path, e))?;
            at += len;
        }
        Ok(Response::Data(data))
    }

    fn signature(&mut self, start: u64, end: u64) -> Result<Response, CopyError> {
        let dest = self.dest()?;
        let (file, size) = dest.basis.as_ref().ok_or_else(|| {
            CopyError::protocol("protocol error: the destination has no old copy")
        })?;
        let map = map_range(file, *size, start, end, MAX_DELTA_RANGE)
            .map_err(|e| CopyError::io("reading", &dest.path, e))?;
        let options = SignatureOptions {
            block_size: BLOCK_SIZE as u32,
            crypto_hash_size: RSYNC_HASH_BYTES,
        };
        let signature = Signature::calculate(map.as_deref().unwrap_or(&[]), options);
        Ok(Response::Data(signature.into_serialized()))
    }

    fn delta(&self, signature: Vec<u8>, start: u64, end: u64) -> Result<Response, CopyError> {
        let source = self.source()?;
        let map = map_range(&source.file, source.size, start, end, MAX_DELTA_RANGE)
            .map_err(|e| CopyError::io("reading", &source.path, e))?;
        let signature = Signature::deserialize(signature)
            .map_err(|_| CopyError::protocol("protocol error: invalid rsync signature"))?;
        let mut delta = Vec::new();
        fast_rsync::diff(
            &signature.index(),
            map.as_deref().unwrap_or(&[]),
            &mut delta,
        )
        .map_err(|e| CopyError::protocol(format!("protocol error: computing a delta: {e}")))?;
        Ok(Response::Data(delta))
    }

    fn patch(&mut self, op: PatchOp) -> Result<(), CopyError> {
        let dest = self.dest()?;
        let temp = dest.temp()?;
        if let Some((start, len)) = op.written_range() {
            dest.unseal(start, len)?;
        }
        let temp_path = dest.temp_path.clone();
        let in_range =
            |start: u64, len: u64| start.checked_add(len).is_some_and(|end| end <= dest.size);
        let wio = |e: io::Error| CopyError::io("writing", &temp_path, e);
        match op {
            PatchOp::CopyBasis { start, len } | PatchOp::CopyBasisSparse { start, len }
                if !in_range(start, len) =>
            {
                Err(CopyError::protocol(
                    "protocol error: a copy range is outside the file",
                ))
            }
            PatchOp::CopyBasis { start, len } => {
                let (basis, basis_size) = dest.basis.as_ref().ok_or_else(|| {
                    CopyError::protocol("protocol error: the destination has no old copy")
                })?;
                if start + len > *basis_size {
                    return Err(CopyError::protocol(
                        "protocol error: a copy range is outside the old copy",
                    ));
                }
                copy_range(basis, &temp, start, len).map_err(wio)
            }
            PatchOp::CopyBasisSparse { start, len } => {
                let (basis, basis_size) = dest.basis.as_ref().ok_or_else(|| {
                    CopyError::protocol("protocol error: the destination has no old copy")
                })?;
                copy_sparse(basis, *basis_size, &temp, start, start + len).map_err(wio)
            }
            PatchOp::Write { start, data } => {
                if !in_range(start, data.len() as u64) {
                    return Err(CopyError::protocol(
                        "protocol error: a write is outside the file",
                    ));
                }
                temp.write_all_at(&data, start).map_err(wio)
            }
            PatchOp::Punch { start, len } => {
                if !in_range(start, len) {
                    return Err(CopyError::protocol(
                        "protocol error: a hole is outside the file",
                    ));
                }
                punch_hole(&temp, start, len).map_err(wio)
            }
            PatchOp::ApplyDelta {
                basis_start,
                basis_end,
                start,
                len,
                delta,
            } => {
                if !in_range(start, len) || len > MAX_DELTA_RANGE {
                    return Err(CopyError::protocol(
                        "protocol error: a delta target is outside the file",
                    ));
                }
                let (basis, basis_size) = dest.basis.as_ref().ok_or_else(|| {
                    CopyError::protocol("protocol error: the destination has no old copy")
                })?;
                let map = map_range(basis, *basis_size, basis_start, basis_end, MAX_DELTA_RANGE)
                    .map_err(|e| CopyError::io("reading", &dest.path, e))?;
                let mut out = Vec::with_capacity(len as usize);
                fast_rsync::apply_limited(
                    map.as_deref().unwrap_or(&[]),
                    &delta,
                    &mut out,
                    len as usize,
                )
                .map_err(|e| {
                    CopyError::protocol(format!("protocol error: applying a delta: {e}"))
                })?;
                if out.len() as u64 != len {
                    return Err(CopyError::protocol(
                        "protocol error: a delta rebuilt the wrong length",
                    ));
                }
                write_sparse(&temp, start, &out).map_err(wio)
            }
            PatchOp::Seal { start, end } => {
                let index = start / blocks::WINDOW_SIZE;
                if start % blocks::WINDOW_SIZE != 0
                    || index >= dest.sealed.len() as u64
                    || blocks::window_range(dest.size, index) != (start, end)
                {
                    return Err(CopyError::protocol(
                        "protocol error: a seal is not one window of the file",
                    ));
                }
                dest.finish_sealing()?;
                start_writeback(&temp, start, end - start);
                let size = dest.size;
                let hashing = thread::spawn(move || {
                    blocks::hash_window(&temp, size, start, end, Want::CONTENT)
                        .map(|window| window.digest)
                });
                dest.sealing = Some((index as usize, hashing));
                Ok(())
            }
        }
    }

    fn finish(&mut self, hash: [u8; 32], sqlite_dest: bool) -> Result<Response, CopyError> {
        let dest = self.dest()?;
        let temp = dest.temp()?;
        let temp_path = dest.temp_path.clone();
        dest.finish_sealing()?;
        temp.set_len(dest.size)
            .map_err(|e| CopyError::io("resizing", &temp_path, e))?;
        temp.sync_all()
            .map_err(|e| CopyError::io("syncing", &temp_path, e))?;
        let mut content = blocks::ContentHasher::new(dest.size);
        for index in 0..blocks::window_count(dest.size) {
            let digest = match dest.sealed[index as usize] {
                Some(digest) => digest,
                None => {
                    let (start, end) = blocks::window_range(dest.size, index);
                    blocks::hash_window(&temp, dest.size, start, end, Want::CONTENT)
                        .map_err(|e| CopyError::io("verifying", &temp_path, e))?
                        .digest
                        .unwrap_or_default()
                }
            };
            content.push(&digest);
        }
        let written = content.finish();
        if written != hash {
            let _ = fs::remove_file(&temp_path);
            self.dest = None;
            return Err(CopyError::new(
                ErrorKind::Verification,
                format!(
                    "the copy written to {} has hash {} but the source has {} (did the source change during the copy?); the destination was left unchanged",
                    temp_path.display(),
                    blocks::hex(&written),
                    blocks::hex(&hash)
                ),
            ));
        }
        let path = dest.path.clone();
        if sqlite_dest {
            sqlite::settle_destination(&path)?;
        }
        fs::rename(&temp_path, &path)
            .map_err(|e| CopyError::io("renaming the copy over", &path, e))?;
        if sqlite_dest {
            sqlite::remove_stale_companions(&path)?;
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| CopyError::io("syncing folder", parent, e))?;
        self.dest = None;
        Ok(Response::Ok)
    }

    fn discard_partial(&mut self) -> Result<Response, CopyError> {
        let dest = self.dest()?;
        if dest.temp.take().is_some() {
            fs::remove_file(&dest.temp_path)
                .map_err(|e| CopyError::io("removing", &dest.temp_path, e))?;
        }
        Ok(Response::Ok)
    }
}

impl DestFile {
    /// Forgets the digests of the windows that `[start, start+len)` touches.
    fn unseal(&mut self, start: u64, len: u64) -> Result<(), CopyError> {
        if self.sealed.is_empty() {
            return Ok(());
        }
        let first = (start / blocks::WINDOW_SIZE) as usize;
        let last = (start.saturating_add(len.max(1) - 1) / blocks::WINDOW_SIZE) as usize;
        let last = last.min(self.sealed.len() - 1);
        if self
            .sealing
            .as_ref()
            .is_some_and(|(index, _)| (first..=last).contains(index))
        {
            self.finish_sealing()?;
        }
        for index in first..=last {
            self.sealed[index] = None;
        }
        Ok(())
    }

    /// Waits for the window being hashed and keeps its digest.
    fn finish_sealing(&mut self) -> Result<(), CopyError> {
        let Some((index, hashing)) = self.sealing.take() else {
            return Ok(());
        };
        let digest = hashing
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a hashing thread panicked")))
            .map_err(|e| CopyError::io("verifying", &self.temp_path, e))?;
        self.sealed[index] = digest;
        Ok(())
    }

    /// The temporary file, created (sparse, at the final size) on first use.
    fn temp(&mut self) -> Result<Arc<File>, CopyError> {
        if self.temp.is_none() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&self.temp_path)
                .map_err(|e| CopyError::io("creating temporary file", &self.temp_path, e))?;
            if let Some((basis, _)) = &self.basis
                && let Ok(meta) = basis.metadata()
            {
                let _ = file.set_permissions(meta.permissions());
            }
            file.set_len(self.size)
                .map_err(|e| CopyError::io("sizing", &self.temp_path, e))?;
            self.temp = Some(Arc::new(file));
        }
        self.temp
            .clone()
            .ok_or_else(|| CopyError::protocol("protocol error: no temporary file"))
    }
}

fn file_name(path: &Path) -> Result<String, CopyError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            CopyError::new(
                ErrorKind::InvalidInput,
                format!("{} does not name a file", path.display()),
            )
        })
}

/// Maps `[start, end)` of a file (clamped to its size); `None` when empty.
fn map_range(file: &File, size: u64, start: u64, end: u64, limit: u64) -> io::Result<Option<Mmap>> {
    let end = end.min(size);
    if start >= end {
        return Ok(None);
    }
    if end - start > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range too large",
        ));
    }
    // SAFETY: the map is read while the file may change underneath; changed
    // bytes are caught by the final hash verification. Truncation raises
    // SIGBUS, which the copy treats like any other failure of a live file.
    let map = unsafe {
        MmapOptions::new()
            .offset(start)
            .len((end - start) as usize)
            .map(file)?
    };
    Ok(Some(map))
}

/// Copies `[start, start+len)` between two files at the same offset, in the
/// kernel where it can (`copy_file_range`).
fn copy_range(from: &File, to: &File, start: u64, len: u64) -> io::Result<()> {
    let mut off_in = start as libc::loff_t;
    let mut off_out = start as libc::loff_t;
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // SAFETY: both descriptors are open; the offsets are valid pointers.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                &mut off_out,
                chunk,
                0,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                    copy_by_reading(from, to, off_in as u64, left)
                }
                _ => Err(err),
            };
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as u64;
    }
    Ok(())
}

fn copy_by_reading(from: &File, to: &File, mut start: u64, mut left: u64) -> io::Result<()> {
    let mut buffer = vec![0u8; (1 << 20).min(left as usize)];
    while left > 0 {
        let n = (buffer.len() as u64).min(left) as usize;
        from.read_exact_at(&mut buffer[..n], start)?;
        to.write_all_at(&buffer[..n], start)?;
        start += n as u64;
        left -= n as u64;
    }
    Ok(())
}

/// Copies the non-zero blocks of `[start, end)` (clamped to the old copy).
fn copy_sparse(from: &File, from_size: u64, to: &File, start: u64, end: u64) -> io::Result<()> {
    let end = end.min(from_size);
    for (extent_start, extent_end) in blocks::data_extents(from, start, end)? {
        // Align to blocks so zero checks see whole blocks.
        let mut chunk_start = extent_start - extent_start % BLOCK_SIZE;
        while chunk_start < extent_end {
            let chunk_end = (chunk_start + blocks::WINDOW_SIZE)
                .min(extent_end.div_ceil(BLOCK_SIZE) * BLOCK_SIZE)
                .min(end);
            let Some(map) =
                map_range(from, from_size, chunk_start, chunk_end, blocks::WINDOW_SIZE)?
            else {
                break;
            };
            let mut run: Option<(u64, u64)> = None;
            for (i, block) in map.chunks(BLOCK_SIZE as usize).enumerate() {
                let block_start = chunk_start + i as u64 * BLOCK_SIZE;
                if blocks::is_zero(block) {
                    if let Some((a, b)) = run.take() {
                        copy_range(from, to, a, b - a)?;
                    }
                } else {
                    let block_end = block_start + block.len() as u64;
                    run = Some(match run {
                        Some((a, _)) => (a, block_end),
                        None => (block_start, block_end),
                    });
                }
            }
            if let Some((a, b)) = run {
                copy_range(from, to, a, b - a)?;
            }
            chunk_start = chunk_end;
        }
    }
    Ok(())
}

/// Writes `data` at `start`, leaving (or making) holes where blocks are zero.
fn write_sparse(to: &File, start: u64, data: &[u8]) -> io::Result<()> {
    let mut offset = 0usize;
    let mut zero_run: Option<(u64, u64)> = None;
    for block in data.chunks(BLOCK_SIZE as usize) {
        let at = start + offset as u64;
        let end = at + block.len() as u64;
        if blocks::is_zero(block) {
            zero_run = Some(zero_run.map_or((at, end), |(a, _)| (a, end)));
        } else {
            if let Some((a, b)) = zero_run.take() {
                punch_hole(to, a, b - a)?;
            }
            to.write_all_at(block, at)?;
        }
        offset += block.len();
    }
    if let Some((a, b)) = zero_run {
        punch_hole(to, a, b - a)?;
    }
    Ok(())
}

/// Starts writing `[start, start+len)` to disk without waiting, so the final
/// sync has little left to do. Only a hint: failures are ignored.
fn start_writeback(file: &File, start: u64, len: u64) {
    // SAFETY: sync_file_range has no memory-safety preconditions.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            start as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Deallocates `[start, start+len)`; writes zeros where holes are unsupported.
fn punch_hole(file: &File, start: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: fallocate has no memory-safety preconditions.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            start as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(err);
    }
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut at = start;
    while at < start + len {
        let n = (start + len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}
