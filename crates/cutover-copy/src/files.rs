//! The file side of a copy: what either end does to its own disk.
//!
//! The agent serves protocol requests with it, and a `Location::Local` or
//! `Location::Rooted` endpoint calls it directly, so local and remote
//! copies run the same code, and a host path means the same under a
//! `via local` root as under an agent's root ([`FileSide::confined`]).
//! Nothing is written to the destination before the whole result has been
//! verified against the source's content hash. A new file (or a database)
//! is built whole in a temporary file beside it (`.NAME.cutover-partial`),
//! fsynced, verified and renamed over the destination. An existing image is
//! patched in place instead: only the changed blocks are staged in that
//! file, and after the verification they are applied behind a redo journal
//! (`inplace`). Each window of the result is hashed as soon as the
//! coordinator seals it (still in the page cache, while the next window is
//! compared), so finishing costs little more than a sync. An interrupted
//! run leaves the temporary file behind; the next run hashes it and keeps
//! what it already holds.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use fast_rsync::{Signature, SignatureOptions};
use rustix::fs::OFlags;

use crate::beneath::{Entry, Folder, Kind, Root, beside};
use crate::blocks::{self, BLOCK_SIZE, Want};
use crate::error::{CopyError, ErrorKind};
use crate::inplace::{self, Change, Changes, Run, StagingLog};
use crate::protocol::{PatchOp, Request, Response, Role};
use crate::sparse::{
    copy_range, copy_sparse, map_range, punch_hole, start_writeback, write_sparse,
};
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
    /// The destination's folder, held open: the temporary file, the
    /// journal and the final rename are all made in it, by name.
    folder: Folder,
    name: OsString,
    size: u64,
    /// The old destination and its size (open for writing when patched in
    /// place).
    basis: Option<(Arc<File>, u64)>,
    /// An SQLite database: settled before it is replaced.
    sqlite: bool,
    /// How the new content is built, in the file `temp_name` of the folder.
    build: Build,
    temp_name: OsString,
    /// Where that file is, for messages.
    temp_path: PathBuf,
    /// Segment hashes of the old copy's most recently hashed windows.
    basis_segments: Vec<BasisSegments>,
    /// Per window of the result: the old copy's digest of it and where that
    /// scan ended, once hashed. A window no change touches is sealed with it.
    /// (Kept by window index, for the windows hashed so far: a size alone
    /// allocates nothing.)
    basis_digests: BTreeMap<usize, (u64, [u8; 32])>,
    /// Content digests of the result's sealed windows, by window index.
    sealed: BTreeMap<usize, [u8; 32]>,
    /// How many windows the result has.
    windows: u64,
    /// The window being hashed on a thread of its own, so that hashing it
    /// overlaps with the next request.
    sealing: Option<(usize, Sealing)>,
}

/// How the new content of a destination is built.
enum Build {
    /// A whole new file, `.NAME.cutover-partial`, renamed over the
    /// destination at the end: for new files and databases.
    Whole {
        /// Shared, not duplicated per request: closing a duplicate
        /// descriptor makes ext4 allocate the file's delayed blocks.
        temp: Option<Arc<File>>,
    },
    /// Only the changed blocks, staged in `.NAME.cutover-staged` and applied
    /// to the old destination in place behind a journal: for images.
    InPlace {
        log: Option<StagingLog>,
        /// The ranges of the result that change.
        changes: Changes,
        /// What the log of an interrupted run had staged, for reuse.
        partial: Changes,
    },
}

/// How many windows' segment hashes of the old copy are kept: the window
/// being patched and the next one (hashed ahead).
const KEPT_SEGMENT_WINDOWS: usize = 2;

/// The blake3 hashes of the segments of `[start, end)` of the old copy.
struct BasisSegments {
    start: u64,
    end: u64,
    hashes: Vec<[u8; 32]>,
}

impl BasisSegments {
    /// The old copy's hash of segment `index` of a window starting at
    /// `self.start`, if that segment covered `[.., segment_end)` there too.
    fn segment(&self, index: usize, segment_start: u64, segment_end: u64) -> Option<[u8; 32]> {
        let old_end = (segment_start + blocks::SEGMENT_SIZE).min(self.end);
        (old_end == segment_end)
            .then(|| self.hashes.get(index).copied())
            .flatten()
    }
}

/// Where one window of the result is read from when it is verified.
enum WindowView {
    /// The window is the old copy's, unchanged, and its digest is known.
    Known([u8; 32]),
    /// The temporary file holds the whole result.
    Whole(Arc<File>, u64),
    /// The old destination patched by the staged changes of this window:
    /// segments no change touches keep the old copy's hashes, when known.
    Patched {
        basis: Arc<File>,
        basis_size: u64,
        staging: Option<Arc<File>>,
        runs: Vec<Run>,
        old_segments: Option<BasisSegments>,
    },
}

impl WindowView {
    fn digest(&self, start: u64, end: u64) -> io::Result<[u8; 32]> {
        let hashes = match self {
            WindowView::Known(digest) => return Ok(*digest),
            WindowView::Whole(file, size) => {
                blocks::hash_window(file, *size, start, end, Want::CONTENT)?
            }
            WindowView::Patched {
                basis,
                basis_size,
                staging,
                runs,
                old_segments,
            } => {
                let extents = inplace::merged_extents(
                    basis,
                    *basis_size,
                    staging.as_deref(),
                    runs,
                    start,
                    end,
                )?;
                let mut segments = Vec::new();
                let mut run = 0;
                let mut segment_start = start;
                while segment_start < end {
                    let segment_end = (segment_start + blocks::SEGMENT_SIZE).min(end);
                    while run < runs.len() && runs[run].1 <= segment_start {
                        run += 1;
                    }
                    let touched = run < runs.len() && runs[run].0 < segment_end;
                    let kept = old_segments
                        .as_ref()
                        .filter(|_| !touched)
                        .and_then(|old| old.segment(segments.len(), segment_start, segment_end));
                    segments.push(match kept {
                        Some(hash) => hash,
                        None => {
                            let from = extents.partition_point(|e| e.end <= segment_start);
                            blocks::segment_hash(segment_start, segment_end, &extents[from..])?
                        }
                    });
                    segment_start = segment_end;
                }
                return Ok(blocks::digest_of_segments(&segments));
            }
        };
        Ok(hashes.digest.unwrap_or_default())
    }
}

/// The hashing of one sealed window: its content digest.
type Sealing = thread::JoinHandle<io::Result<[u8; 32]>>;

/// One end's files: an optional confinement root, the open source and the
/// open destination.
pub struct FileSide {
    root: Root,
    source: Option<SourceFile>,
    dest: Option<DestFile>,
}

impl FileSide {
    /// Serves any path on this machine (a `Location::Local`).
    pub fn unconfined() -> FileSide {
        FileSide {
            root: Root::anywhere(),
            source: None,
            dest: None,
        }
    }

    /// Serves only paths under `root` (an agent's `--root`, a `via local`
    /// host's folder): every path, `/srv/a` or `srv/a`, is taken from the root.
    /// Links are followed only while they stay beneath the root, checked
    /// by the kernel as each file is opened ([`crate::beneath`]).
    pub fn confined(root: &Path) -> Result<FileSide, CopyError> {
        Ok(FileSide {
            root: Root::folder(root)?,
            source: None,
            dest: None,
        })
    }

    /// Answers one request.
    pub fn handle(&mut self, request: Request) -> Result<Response, CopyError> {
        match request {
            Request::Hello { .. } => Err(CopyError::protocol("protocol error: a second hello")),
            Request::Connect { .. } | Request::Tunnel { .. } => Err(CopyError::protocol(
                "protocol error: connects are the agent's to make, not a file side's",
            )),
            Request::OpenSource { path } => self.open_source(&path),
            Request::OpenDest { path, size, sqlite } => self.open_dest(&path, size, sqlite),
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
            Request::Finish { hash } => self.finish(hash),
            Request::Snapshot { path } => {
                let (db, folder) = self.database(&path)?;
                let snapshot_name =
                    OsString::from(format!(".{}.cutover-snapshot", text_name(&db)?));
                let method = sqlite::snapshot(&folder, db.name(), &snapshot_name)?;
                let reply_path = db.beside_path(&snapshot_name).ok_or_else(|| {
                    CopyError::new(
                        ErrorKind::InvalidInput,
                        format!("{} is not UTF-8", db.path.display()),
                    )
                })?;
                Ok(Response::Snapshot {
                    path: reply_path,
                    method: method.to_string(),
                })
            }
            Request::Checksums { path } => {
                let (db, folder) = self.database(&path)?;
                Ok(Response::Checksums(sqlite::table_checksums(
                    &folder,
                    db.name(),
                )?))
            }
            Request::Remove { path } => {
                let target = self.root.entry(&path)?;
                if !text_name(&target)?.ends_with(".cutover-snapshot") {
                    return Err(CopyError::new(
                        ErrorKind::InvalidInput,
                        format!("refusing to remove {path}: only snapshots may be removed"),
                    ));
                }
                let folder = target.folder("removing")?;
                match folder.remove(target.name()) {
                    Ok(true) => Ok(Response::Ok),
                    Ok(false) => Err(CopyError::io(
                        "removing",
                        &target.path,
                        io::ErrorKind::NotFound.into(),
                    )),
                    Err(e) => Err(CopyError::io("removing", &target.path, e)),
                }
            }
        }
    }

    /// A database's entry (a link to it followed beneath the root) and its
    /// folder, held: SQLite reaches the database and the files beside it
    /// through that folder.
    fn database(&self, requested: &str) -> Result<(Entry, Folder), CopyError> {
        let db = self.root.entry(requested)?.followed("opening database")?;
        let folder = db.folder("opening database")?;
        Ok((db, folder))
    }

    fn open_source(&mut self, path: &str) -> Result<Response, CopyError> {
        let entry = self.root.entry(path)?;
        if let Ok(folder) = entry.folder("opening source") {
            inplace::recover(&entry, &folder)?;
        }
        let file = entry.open("opening source", OFlags::RDONLY)?;
        let path = entry.path;
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

    fn open_dest(&mut self, path: &str, size: u64, sqlite: bool) -> Result<Response, CopyError> {
        let entry = self.root.entry(path)?;
        let folder = entry.folder("destination folder")?;
        inplace::recover(&entry, &folder)?;
        let flags = if sqlite { OFlags::RDONLY } else { OFlags::RDWR };
        let not_a_file = || {
            CopyError::new(
                ErrorKind::InvalidInput,
                format!("destination {} is not a regular file", entry.path.display()),
            )
        };
        // An image is patched in place, so it is opened for writing now:
        // one that can't be written fails before any transfer.
        let basis = match entry.open("opening destination", flags | OFlags::NONBLOCK) {
            Ok(file) => {
                let meta = file
                    .metadata()
                    .map_err(|e| CopyError::io("opening destination", &entry.path, e))?;
                if !meta.is_file() {
                    return Err(not_a_file());
                }
                Some((Arc::new(file), meta.len()))
            }
            Err(err) if err.kind == ErrorKind::NotFound => None,
            Err(err) if err.message.contains("Is a directory") => return Err(not_a_file()),
            Err(err) => return Err(err),
        };
        let in_place = basis.is_some() && !sqlite;
        let whole_name = beside(entry.name(), "cutover-partial");
        let staging_name = inplace::staging_name(entry.name());
        // A leftover of the other way of building is of no use now.
        let (temp_name, stale) = if in_place {
            (staging_name, whole_name)
        } else {
            (whole_name, staging_name)
        };
        let temp_path = folder.path_of(&temp_name);
        folder
            .remove(&stale)
            .map_err(|e| CopyError::io("removing", &folder.path_of(&stale), e))?;
        let leftover = match folder.kind(&temp_name) {
            Ok(Kind::File) => true,
            Ok(Kind::Other) => {
                return Err(CopyError::new(
                    ErrorKind::InvalidInput,
                    format!("{} is in the way and not a file", temp_path.display()),
                ));
            }
            Ok(Kind::Missing) => false,
            Err(e) => return Err(CopyError::io("opening", &temp_path, e)),
        };
        let opening = |e| CopyError::io("opening", &temp_path, e);
        let (build, resumed) = if in_place {
            let found = if leftover {
                StagingLog::open(&folder, &temp_name).map_err(opening)?
            } else {
                None
            };
            if leftover && found.is_none() {
                folder
                    .remove(&temp_name)
                    .map_err(|e| CopyError::io("removing", &temp_path, e))?;
            }
            let resumed = found.is_some();
            let (log, partial) = found.map_or((None, Changes::default()), |(log, partial)| {
                (Some(log), partial)
            });
            let changes = Changes::default();
            (
                Build::InPlace {
                    log,
                    changes,
                    partial,
                },
                resumed,
            )
        } else {
            let temp = if leftover {
                let file = folder.open(&temp_name, OFlags::RDWR).map_err(opening)?;
                file.set_len(size)
                    .map_err(|e| CopyError::io("resizing", &temp_path, e))?;
                Some(Arc::new(file))
            } else {
                None
            };
            (Build::Whole { temp }, leftover)
        };
        let basis_size = basis.as_ref().map(|(_, len)| *len);
        self.dest = Some(DestFile {
            name: entry.name().to_os_string(),
            path: entry.path,
            folder,
            size,
            basis,
            sqlite,
            build,
            temp_name,
            temp_path,
            basis_segments: Vec::new(),
            basis_digests: BTreeMap::new(),
            sealed: BTreeMap::new(),
            windows: blocks::window_count(size),
            sealing: None,
        });
        Ok(Response::DestOpened {
            basis_size,
            resumed,
            in_place,
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
        let no_dest = || CopyError::protocol("protocol error: no destination is open");
        let hashes = match role {
            Role::Source => {
                let source = self.source()?;
                blocks::hash_window(&source.file, source.size, start, end, want)
                    .map_err(|e| CopyError::io("reading", &source.path, e))?
            }
            Role::Basis => {
                let dest = self.dest.as_mut().ok_or_else(no_dest)?;
                let (file, size) = dest.basis.as_ref().ok_or_else(|| {
                    CopyError::protocol("protocol error: the destination has no old copy")
                })?;
                let reading = |e| CopyError::io("reading", &dest.path, e);
                if !matches!(dest.build, Build::InPlace { .. }) {
                    blocks::hash_window(file, *size, start, end, want).map_err(reading)?
                } else {
                    // Patched in place, most of the window stays as it is:
                    // keep its segment hashes for the verification.
                    let mut hashes = Vec::new();
                    let mut window = blocks::hash_window_keeping_segments(
                        file,
                        *size,
                        start,
                        end,
                        want,
                        &mut hashes,
                    )
                    .map_err(reading)?;
                    let end = end.min(*size);
                    let index = (start / blocks::WINDOW_SIZE) as usize;
                    if let Some(digest) = window.digest
                        && (index as u64) < dest.windows
                    {
                        dest.basis_digests.insert(index, (end, digest));
                    }
                    if !want.content {
                        window.digest = None;
                    }
                    if dest.basis_segments.len() >= KEPT_SEGMENT_WINDOWS {
                        dest.basis_segments.remove(0);
                    }
                    dest.basis_segments
                        .push(BasisSegments { start, end, hashes });
                    window
                }
            }
            Role::Partial => {
                let dest = self.dest.as_ref().ok_or_else(no_dest)?;
                let reading = |e| CopyError::io("reading", &dest.temp_path, e);
                let no_partial = || CopyError::protocol("protocol error: there is no partial copy");
                match &dest.build {
                    Build::Whole { temp } => {
                        let temp = temp.as_ref().ok_or_else(no_partial)?;
                        blocks::hash_window(temp, dest.size, start, end, want).map_err(reading)?
                    }
                    Build::InPlace { log, partial, .. } => {
                        let log = log.as_ref().ok_or_else(no_partial)?;
                        let end = end.min(dest.size);
                        let runs = partial.within(start, end);
                        let extents = inplace::staged_extents(log.file(), &runs);
                        blocks::hash_extents(start, end, &extents, want).map_err(reading)?
                    }
                }
            }
        };
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
        if let Some((start, len)) = op.written_range() {
            if start.checked_add(len).is_none_or(|end| end > dest.size) {
                return Err(CopyError::protocol(
                    "protocol error: a change is outside the file",
                ));
            }
            dest.unseal(start, len)?;
        }
        match op {
            PatchOp::Seal { start, end } => dest.seal(start, end),
            op if matches!(dest.build, Build::InPlace { .. }) => dest.stage_change(op),
            op => dest.write_change(op),
        }
    }

    fn finish(&mut self, hash: [u8; 32]) -> Result<Response, CopyError> {
        let dest = self.dest()?;
        let temp_path = dest.temp_path.clone();
        let syncing = |e| CopyError::io("syncing", &temp_path, e);
        dest.finish_sealing()?;
        match &dest.build {
            Build::Whole { .. } => {
                let temp = dest.temp()?;
                temp.set_len(dest.size)
                    .map_err(|e| CopyError::io("resizing", &temp_path, e))?;
                temp.sync_all().map_err(syncing)?;
            }
            Build::InPlace { log, .. } => {
                if let Some(log) = log {
                    log.file().sync_all().map_err(syncing)?;
                }
            }
        }
        let mut content = blocks::ContentHasher::new(dest.size);
        for index in 0..dest.windows {
            let digest = match dest.sealed.get(&(index as usize)) {
                Some(digest) => *digest,
                None => {
                    let (start, end) = blocks::window_range(dest.size, index);
                    dest.window_view(start, end)?
                        .digest(start, end)
                        .map_err(|e| CopyError::io("verifying", &temp_path, e))?
                }
            };
            content.push(&digest);
        }
        let written = content.finish();
        if written != hash {
            let _ = dest.folder.remove(&dest.temp_name);
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
        let folder = &dest.folder;
        if let (Build::InPlace { log, changes, .. }, Some((basis, _))) = (&dest.build, &dest.basis)
        {
            let journal = inplace::journal_name(&dest.name);
            let journal_path = folder.path_of(&journal);
            let runs = changes.runs();
            inplace::commit(folder, &journal, dest.size, &runs)
                .map_err(|e| CopyError::io("writing journal", &journal_path, e))?;
            inplace::apply(basis, log.as_ref().map(|l| &**l.file()), dest.size, &runs)
                .map_err(|e| CopyError::io("patching", &path, e))?;
            inplace::complete(folder, &dest.name)
                .map_err(|e| CopyError::io("removing", &journal_path, e))?;
            self.dest = None;
            return Ok(Response::Ok);
        }
        // SQLite reaches the database and its companions through the
        // folder held since the destination was opened.
        if dest.sqlite {
            sqlite::settle_destination(folder, &dest.name)?;
        }
        folder
            .rename(&dest.temp_name, &dest.name)
            .map_err(|e| CopyError::io("renaming the copy over", &path, e))?;
        if dest.sqlite {
            sqlite::remove_stale_companions(folder, &dest.name)?;
        }
        folder
            .sync()
            .map_err(|e| CopyError::io("syncing the folder of", &path, e))?;
        self.dest = None;
        Ok(Response::Ok)
    }
}

impl DestFile {
    /// Forgets the digests of the windows that `[start, start+len)` touches.
    fn unseal(&mut self, start: u64, len: u64) -> Result<(), CopyError> {
        if self.windows == 0 {
            return Ok(());
        }
        let first = (start / blocks::WINDOW_SIZE) as usize;
        let last = (start.saturating_add(len.max(1) - 1) / blocks::WINDOW_SIZE) as usize;
        let last = last.min(self.windows as usize - 1);
        if self
            .sealing
            .as_ref()
            .is_some_and(|(index, _)| (first..=last).contains(index))
        {
            self.finish_sealing()?;
        }
        let touched: Vec<usize> = self.sealed.range(first..=last).map(|(&i, _)| i).collect();
        for index in touched {
            self.sealed.remove(&index);
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
        self.sealed.insert(index, digest);
        Ok(())
    }

    /// Where window `[start, end)` of the result is read from.
    fn window_view(&mut self, start: u64, end: u64) -> Result<WindowView, CopyError> {
        let old_segments = self
            .basis_segments
            .iter()
            .position(|old| old.start == start)
            .map(|at| self.basis_segments.remove(at));
        match (&self.build, &self.basis) {
            (Build::InPlace { log, changes, .. }, Some((basis, basis_size))) => {
                let runs = changes.within(start, end);
                let index = (start / blocks::WINDOW_SIZE) as usize;
                if let Some((scanned_to, digest)) = self.basis_digests.get(&index)
                    && runs.is_empty()
                    && *scanned_to == end
                {
                    return Ok(WindowView::Known(*digest));
                }
                Ok(WindowView::Patched {
                    basis: basis.clone(),
                    basis_size: *basis_size,
                    staging: log.as_ref().map(|log| log.file().clone()),
                    runs,
                    old_segments,
                })
            }
            _ => Ok(WindowView::Whole(self.temp()?, self.size)),
        }
    }

    /// Seals window `[start, end)`: starts writing what was written for it
    /// to disk and hashes it on a thread of its own.
    fn seal(&mut self, start: u64, end: u64) -> Result<(), CopyError> {
        let index = start / blocks::WINDOW_SIZE;
        if !start.is_multiple_of(blocks::WINDOW_SIZE)
            || index >= self.windows
            || blocks::window_range(self.size, index) != (start, end)
        {
            return Err(CopyError::protocol(
                "protocol error: a seal is not one window of the file",
            ));
        }
        self.finish_sealing()?;
        let view = self.window_view(start, end)?;
        match &view {
            WindowView::Whole(temp, _) => start_writeback(temp, start, end - start),
            // The log is appended to: start writing back whatever is dirty.
            WindowView::Patched {
                staging: Some(log), ..
            } => start_writeback(log, 0, 0),
            WindowView::Patched { staging: None, .. } | WindowView::Known(_) => {}
        }
        let hashing = thread::spawn(move || view.digest(start, end));
        self.sealing = Some((index as usize, hashing));
        Ok(())
    }

    /// The old destination and its size.
    fn basis(&self) -> Result<(&File, u64), CopyError> {
        self.basis
            .as_ref()
            .map(|(file, size)| (&**file, *size))
            .ok_or_else(|| CopyError::protocol("protocol error: the destination has no old copy"))
    }

    /// The bytes of `[start, start+len)` rebuilt from an rsync delta against
    /// the old destination's `[basis_start, basis_end)`.
    fn rebuild(
        &self,
        basis_start: u64,
        basis_end: u64,
        len: u64,
        delta: &[u8],
    ) -> Result<Vec<u8>, CopyError> {
        if len > MAX_DELTA_RANGE {
            return Err(CopyError::protocol(
                "protocol error: a delta target is too large",
            ));
        }
        let (basis, basis_size) = self.basis()?;
        let map = map_range(basis, basis_size, basis_start, basis_end, MAX_DELTA_RANGE)
            .map_err(|e| CopyError::io("reading", &self.path, e))?;
        let mut out = Vec::with_capacity(len as usize);
        fast_rsync::apply_limited(map.as_deref().unwrap_or(&[]), delta, &mut out, len as usize)
            .map_err(|e| CopyError::protocol(format!("protocol error: applying a delta: {e}")))?;
        if out.len() as u64 != len {
            return Err(CopyError::protocol(
                "protocol error: a delta rebuilt the wrong length",
            ));
        }
        Ok(out)
    }

    /// Applies a change to the whole new file.
    fn write_change(&mut self, op: PatchOp) -> Result<(), CopyError> {
        let temp = self.temp()?;
        let wio = |e: io::Error| CopyError::io("writing", &self.temp_path, e);
        match op {
            PatchOp::CopyBasis { start, len } => {
                let (basis, basis_size) = self.basis()?;
                if start + len > basis_size {
                    return Err(CopyError::protocol(
                        "protocol error: a copy range is outside the old copy",
                    ));
                }
                copy_range(basis, start, &temp, start, len).map_err(wio)
            }
            PatchOp::CopyBasisSparse { start, len } => {
                let (basis, basis_size) = self.basis()?;
                copy_sparse(basis, basis_size, &temp, start, start + len).map_err(wio)
            }
            // The interrupted run's temporary file is this one: kept as it is.
            PatchOp::KeepPartial { .. } | PatchOp::Seal { .. } => Ok(()),
            PatchOp::Write { start, data } => temp.write_all_at(&data, start).map_err(wio),
            PatchOp::Punch { start, len } => punch_hole(&temp, start, len).map_err(wio),
            PatchOp::ApplyDelta {
                basis_start,
                basis_end,
                start,
                len,
                delta,
            } => {
                let out = self.rebuild(basis_start, basis_end, len, &delta)?;
                write_sparse(&temp, start, &out).map_err(wio)
            }
        }
    }

    /// Records a change of an in-place patch, staging any new bytes.
    fn stage_change(&mut self, op: PatchOp) -> Result<(), CopyError> {
        let basis_size = self.basis()?.1;
        let rebuilt = match &op {
            PatchOp::ApplyDelta {
                basis_start,
                basis_end,
                len,
                delta,
                ..
            } => self.rebuild(*basis_start, *basis_end, *len, delta)?,
            _ => Vec::new(),
        };
        let Build::InPlace {
            log,
            changes,
            partial,
        } = &mut self.build
        else {
            return Err(CopyError::protocol("internal error: not patched in place"));
        };
        let (folder, temp_name, temp_path) = (&self.folder, &self.temp_name, &self.temp_path);
        let mut stage_bytes = |start: u64, data: &[u8]| -> Result<(), CopyError> {
            let log = match log {
                Some(log) => log,
                None => log.insert(
                    StagingLog::create(folder, temp_name)
                        .map_err(|e| CopyError::io("creating temporary file", temp_path, e))?,
                ),
            };
            stage(changes, log, start, data).map_err(|e| CopyError::io("writing", temp_path, e))
        };
        match op {
            PatchOp::Write { start, data } => stage_bytes(start, &data),
            PatchOp::ApplyDelta { start, .. } => stage_bytes(start, &rebuilt),
            PatchOp::CopyBasis { start, len } | PatchOp::CopyBasisSparse { start, len } => {
                if start + len > basis_size {
                    return Err(CopyError::protocol(
                        "protocol error: a copy range is outside the old copy",
                    ));
                }
                changes.set(start, start + len, None);
                Ok(())
            }
            PatchOp::KeepPartial { start, len } => {
                for (run_start, run_end, change) in partial.within(start, start + len) {
                    changes.set(run_start, run_end, Some(change));
                }
                Ok(())
            }
            PatchOp::Punch { start, len } => {
                changes.set(start, start + len, Some(Change::Zero));
                Ok(())
            }
            PatchOp::Seal { .. } => Ok(()),
        }
    }

    /// The whole new file, created (sparse, at the final size) on first use.
    fn temp(&mut self) -> Result<Arc<File>, CopyError> {
        let Build::Whole { temp } = &mut self.build else {
            return Err(CopyError::protocol("internal error: not built whole"));
        };
        if let Some(file) = temp {
            return Ok(file.clone());
        }
        let file = self
            .folder
            .create_new(&self.temp_name)
            .map_err(|e| CopyError::io("creating temporary file", &self.temp_path, e))?;
        if let Some((basis, _)) = &self.basis
            && let Ok(meta) = basis.metadata()
        {
            let _ = file.set_permissions(meta.permissions());
        }
        file.set_len(self.size)
            .map_err(|e| CopyError::io("sizing", &self.temp_path, e))?;
        let file = Arc::new(file);
        *temp = Some(file.clone());
        Ok(file)
    }
}

/// Stages `data` (new bytes of `[start, start+len)`) for an in-place patch:
/// non-zero blocks into the staging log, zero blocks as holes to punch.
fn stage(changes: &mut Changes, log: &mut StagingLog, start: u64, data: &[u8]) -> io::Result<()> {
    let mut at = 0usize;
    while at < data.len() {
        let zero = blocks::is_zero(&data[at..(at + BLOCK_SIZE as usize).min(data.len())]);
        let mut end = at;
        while end < data.len() {
            let block = &data[end..(end + BLOCK_SIZE as usize).min(data.len())];
            if blocks::is_zero(block) != zero {
                break;
            }
            end += block.len();
        }
        let (run_start, run_end) = (start + at as u64, start + end as u64);
        if zero {
            changes.set(run_start, run_end, Some(Change::Zero));
        } else {
            let staged_at = log.append(run_start, &data[at..end])?;
            changes.set(run_start, run_end, Some(Change::Staged { at: staged_at }));
        }
        at = end;
    }
    Ok(())
}

/// An entry's name as text (a snapshot's name is sent back to the peer).
fn text_name(entry: &Entry) -> Result<&str, CopyError> {
    entry.name().to_str().ok_or_else(|| {
        CopyError::new(
            ErrorKind::InvalidInput,
            format!("{} is not UTF-8", entry.path.display()),
        )
    })
}
