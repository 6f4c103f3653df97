//! Patching an existing destination in place, behind a redo journal.
//!
//! Replacing an image means writing all of it again and syncing it to disk,
//! even when 1 % of its blocks changed: on a file system without shared
//! extents (ext4) that costs more than everything else in the copy. So when
//! the destination already exists, a copy *stages* only the changed blocks,
//! appended densely to a log beside it ([`StagingLog`],
//! `.NAME.cutover-staged`), and records which ranges of the result become
//! staged bytes or zeros ([`Changes`]); the old destination is not touched
//! while data crosses the wire. The result — old bytes where nothing
//! changed, staged bytes, zeros — is hashed and verified against the source
//! before the destination is written ([`merged_extents`]). Then the list of
//! changes is committed to a redo journal (`.NAME.cutover-journal`,
//! checksummed and fsynced), applied in place, the destination synced and
//! the journal removed.
//!
//! A crash before the commit leaves the destination as it was (and the
//! staged blocks for the rerun to reuse). A crash after it leaves a journal
//! that [`recover`] rolls forward; every open of a path by a copy, a check
//! or a hash runs it first, so cutover never reads a half-applied file.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustix::fs::OFlags;

use crate::beneath::{Entry, Folder, beside};
use crate::blocks::{self, Extent};
use crate::error::{CopyError, ErrorKind};
use crate::sparse::{copy_range, punch_hole, start_writeback};

/// Identifies a journal and its format.
const JOURNAL_MAGIC: &[u8; 16] = b"cutover-journal1";
/// Identifies a staging log and its format.
const STAGING_MAGIC: &[u8; 16] = b"cutover-staged01";
/// Bytes of a staging record's header: start and length.
const RECORD_HEADER: u64 = 16;
/// Bytes of one journal entry: start, end, kind, staging offset.
const JOURNAL_ENTRY: usize = 25;

/// What a range of the destination becomes (ranges without one keep the
/// old destination's bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The bytes staged in the staging log, from offset `at` on.
    Staged { at: u64 },
    /// Zeros (a hole).
    Zero,
}

impl Change {
    /// The same change seen `by` bytes further on.
    fn advanced(self, by: u64) -> Change {
        match self {
            Change::Staged { at } => Change::Staged { at: at + by },
            Change::Zero => Change::Zero,
        }
    }

    /// Whether `next`, starting right after `len` bytes of `self`, continues it.
    fn continued_by(self, len: u64, next: Change) -> bool {
        match (self, next) {
            (Change::Staged { at }, Change::Staged { at: next_at }) => next_at == at + len,
            (Change::Zero, Change::Zero) => true,
            _ => false,
        }
    }
}

/// A run of the destination that changes: `[start, end)` becomes `change`.
pub type Run = (u64, u64, Change);

/// The changed ranges of a destination patched in place, without overlaps.
#[derive(Debug, Default)]
pub struct Changes {
    /// start → (end, change); adjacent runs that continue each other are merged.
    runs: BTreeMap<u64, (u64, Change)>,
}

impl Changes {
    /// Records that `[start, end)` becomes `change`, or keeps the old
    /// destination's bytes when `change` is `None`.
    pub fn set(&mut self, start: u64, end: u64, change: Option<Change>) {
        if start >= end {
            return;
        }
        if let Some((&before, &(before_end, kind))) = self.runs.range(..start).next_back()
            && before_end > start
        {
            self.runs.insert(before, (start, kind));
            if before_end > end {
                self.runs
                    .insert(end, (before_end, kind.advanced(end - before)));
            }
        }
        let inside: Vec<u64> = self.runs.range(start..end).map(|(&s, _)| s).collect();
        for run_start in inside {
            if let Some((run_end, kind)) = self.runs.remove(&run_start)
                && run_end > end
            {
                self.runs
                    .insert(end, (run_end, kind.advanced(end - run_start)));
            }
        }
        let Some(mut change) = change else { return };
        let (mut start, mut end) = (start, end);
        if let Some((&before, &(before_end, kind))) = self.runs.range(..start).next_back()
            && before_end == start
            && kind.continued_by(start - before, change)
        {
            self.runs.remove(&before);
            start = before;
            change = kind;
        }
        if let Some(&(after_end, kind)) = self.runs.get(&end)
            && change.continued_by(end - start, kind)
        {
            self.runs.remove(&end);
            end = after_end;
        }
        self.runs.insert(start, (end, change));
    }

    /// The runs that overlap `[start, end)`, clipped to it.
    pub fn within(&self, start: u64, end: u64) -> Vec<Run> {
        let mut runs = Vec::new();
        if let Some((&before, &(before_end, kind))) = self.runs.range(..start).next_back()
            && before_end > start
        {
            runs.push((start, before_end.min(end), kind.advanced(start - before)));
        }
        runs.extend(
            self.runs
                .range(start..end)
                .map(|(&s, &(e, kind))| (s, e.min(end), kind)),
        );
        runs
    }

    /// Every run, in order.
    pub fn runs(&self) -> Vec<Run> {
        self.runs
            .iter()
            .map(|(&s, &(e, kind))| (s, e, kind))
            .collect()
    }
}

/// The staged blocks of an in-place patch, `.NAME.cutover-staged`: a header,
/// then records `[start u64][length u64][bytes]` appended in order. The
/// blocks lie densely (sequential to write, cheap to free: a file of
/// thousands of scattered blocks takes ext4 half a second to delete), and the
/// records let a rerun find what an interrupted run already staged.
pub struct StagingLog {
    file: Arc<File>,
    end: u64,
}

impl StagingLog {
    /// Starts a new log, `name` in `folder` (which must not exist yet).
    pub fn create(folder: &Folder, name: &OsStr) -> io::Result<StagingLog> {
        let file = folder.create_new(name)?;
        file.write_all_at(STAGING_MAGIC, 0)?;
        Ok(StagingLog {
            file: Arc::new(file),
            end: STAGING_MAGIC.len() as u64,
        })
    }

    /// Opens the log an interrupted run left, with what its records stage
    /// (later records win). A torn last record is cut off; `None` when the
    /// file is not a staging log.
    pub fn open(folder: &Folder, name: &OsStr) -> io::Result<Option<(StagingLog, Changes)>> {
        let file = folder.open(name, OFlags::RDWR)?;
        let len = file.metadata()?.len();
        let mut magic = [0u8; 16];
        if len < magic.len() as u64 || file.read_exact_at(&mut magic, 0).is_err() {
            return Ok(None);
        }
        if &magic != STAGING_MAGIC {
            return Ok(None);
        }
        let mut staged = Changes::default();
        let mut at = magic.len() as u64;
        let mut header = [0u8; RECORD_HEADER as usize];
        while at + RECORD_HEADER <= len {
            file.read_exact_at(&mut header, at)?;
            let start = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
            let length = u64::from_le_bytes(header[8..].try_into().unwrap_or_default());
            let data = at + RECORD_HEADER;
            let whole = data.checked_add(length).is_some_and(|end| end <= len)
                && start.checked_add(length).is_some();
            if !whole {
                break;
            }
            staged.set(start, start + length, Some(Change::Staged { at: data }));
            at = data + length;
        }
        if at < len {
            file.set_len(at)?;
        }
        Ok(Some((
            StagingLog {
                file: Arc::new(file),
                end: at,
            },
            staged,
        )))
    }

    /// Appends the new bytes of `[start, start+len(data))`; returns where
    /// they lie in the log.
    pub fn append(&mut self, start: u64, data: &[u8]) -> io::Result<u64> {
        let mut record = Vec::with_capacity(RECORD_HEADER as usize + data.len());
        record.extend_from_slice(&start.to_le_bytes());
        record.extend_from_slice(&(data.len() as u64).to_le_bytes());
        record.extend_from_slice(data);
        self.file.write_all_at(&record, self.end)?;
        let at = self.end + RECORD_HEADER;
        self.end += record.len() as u64;
        Ok(at)
    }

    pub fn file(&self) -> &Arc<File> {
        &self.file
    }
}

/// The data extents of `[start, end)` of the patched result: the old
/// destination's data where `runs` (those of this range) keep it, the
/// staging log where they stage bytes, nothing (zeros) elsewhere.
pub fn merged_extents<'a>(
    basis: &'a File,
    basis_size: u64,
    staging: Option<&'a File>,
    runs: &[Run],
    start: u64,
    end: u64,
) -> io::Result<Vec<Extent<'a>>> {
    let mut extents = Vec::new();
    let mut at = start;
    for &run in runs {
        extents.extend(blocks::file_extents(basis, at, run.0.min(basis_size))?);
        extents.extend(staging.and_then(|log| staged_extent(log, run)));
        at = run.1;
    }
    extents.extend(blocks::file_extents(basis, at, end.min(basis_size))?);
    Ok(extents)
}

/// The extents of `runs` that are staged bytes (zeros elsewhere): how a
/// leftover staging log is read as a partial copy.
pub fn staged_extents<'a>(staging: &'a File, runs: &[Run]) -> Vec<Extent<'a>> {
    runs.iter()
        .filter_map(|&run| staged_extent(staging, run))
        .collect()
}

fn staged_extent(staging: &File, (start, end, change): Run) -> Option<Extent<'_>> {
    match change {
        Change::Staged { at } => Some(Extent {
            start,
            end,
            file: staging,
            at,
        }),
        Change::Zero => None,
    }
}

/// The journal beside `dest`: `.NAME.cutover-journal`.
pub fn journal_name(dest: &OsStr) -> OsString {
    beside(dest, "cutover-journal")
}

/// The staging log beside `dest`: `.NAME.cutover-staged`.
pub fn staging_name(dest: &OsStr) -> OsString {
    beside(dest, "cutover-staged")
}

/// The staging log of a patch that was applied, `.NAME.cutover-applied`:
/// [`complete`] renames the log to it before it removes the journal, so a
/// crash between the two leaves a log that says it is spent.
pub fn applied_name(dest: &OsStr) -> OsString {
    beside(dest, "cutover-applied")
}

/// Makes the change list durable: once this returns, the patch will be
/// applied, now or by [`recover`]. The staged bytes must already be synced.
pub fn commit(folder: &Folder, journal: &OsStr, size: u64, runs: &[Run]) -> io::Result<()> {
    let mut body = Vec::with_capacity(32 + runs.len() * JOURNAL_ENTRY + 32);
    body.extend_from_slice(JOURNAL_MAGIC);
    body.extend_from_slice(&size.to_le_bytes());
    body.extend_from_slice(&(runs.len() as u64).to_le_bytes());
    for &(start, end, change) in runs {
        body.extend_from_slice(&start.to_le_bytes());
        body.extend_from_slice(&end.to_le_bytes());
        let (kind, at) = match change {
            Change::Staged { at } => (1, at),
            Change::Zero => (0, 0),
        };
        body.push(kind);
        body.extend_from_slice(&at.to_le_bytes());
    }
    let checksum = blake3::hash(&body);
    body.extend_from_slice(checksum.as_bytes());
    let file = folder.open(journal, OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC)?;
    file.write_all_at(&body, 0)?;
    file.sync_all()?;
    folder.sync()
}

/// A committed journal's size and runs; `None` when it is torn or not a
/// journal (a crash during [`commit`]: the patch was never started).
fn parse_journal(body: &[u8]) -> Option<(u64, Vec<Run>)> {
    let (content, checksum) = body.split_at_checked(body.len().checked_sub(32)?)?;
    if blake3::hash(content).as_bytes() != checksum || !content.starts_with(JOURNAL_MAGIC) {
        return None;
    }
    let number = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or_default());
    let header = JOURNAL_MAGIC.len();
    let size = number(content.get(header..header + 8)?);
    let count = number(content.get(header + 8..header + 16)?);
    let entries = &content[header + 16..];
    if entries.len() as u64 != count.checked_mul(JOURNAL_ENTRY as u64)? {
        return None;
    }
    let runs = entries
        .chunks_exact(JOURNAL_ENTRY)
        .map(|entry| {
            let change = match entry[16] {
                1 => Change::Staged {
                    at: number(&entry[17..25]),
                },
                _ => Change::Zero,
            };
            (number(&entry[..8]), number(&entry[8..16]), change)
        })
        .collect();
    Some((size, runs))
}

/// Writes the committed changes into the destination and syncs it.
/// Idempotent: a crash while applying is repaired by applying again.
///
/// Runs whose staged bytes lie close together in the log (scattered blocks
/// staged one after another) are read from it at once and written one by
/// one: one read instead of a kernel copy per block. Writing back starts
/// every [`APPLY_WRITEBACK`] bytes, so the disk writes while the rest is
/// applied and the final sync waits for little.
pub fn apply(dest: &File, staging: Option<&File>, size: u64, runs: &[Run]) -> io::Result<()> {
    dest.set_len(size)?;
    let mut buffer = Vec::new();
    let mut unsynced = 0;
    let mut i = 0;
    while i < runs.len() {
        let (start, end, change) = runs[i];
        let (at, staging) = match (change, staging) {
            (Change::Zero, _) => {
                punch_hole(dest, start, end - start)?;
                i += 1;
                continue;
            }
            (Change::Staged { .. }, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the staged bytes are missing",
                ));
            }
            (Change::Staged { at }, Some(staging)) => (at, staging),
        };
        let mut span_end = at + (end - start);
        let mut next = i + 1;
        while let Some(&(s, e, Change::Staged { at: from })) = runs.get(next) {
            if from < span_end || from - span_end > APPLY_GAP || from + (e - s) - at > APPLY_READ {
                break;
            }
            span_end = from + (e - s);
            next += 1;
        }
        unsynced += span_end - at;
        if next == i + 1 && end - start > APPLY_READ {
            copy_range(staging, at, dest, start, end - start)?;
        } else {
            buffer.resize((span_end - at) as usize, 0);
            staging.read_exact_at(&mut buffer, at)?;
            for &(s, e, change) in &runs[i..next] {
                if let Change::Staged { at: from } = change {
                    let offset = (from - at) as usize;
                    dest.write_all_at(&buffer[offset..offset + (e - s) as usize], s)?;
                }
            }
        }
        i = next;
        if unsynced >= APPLY_WRITEBACK {
            start_writeback(dest, 0, 0);
            unsynced = 0;
        }
    }
    dest.sync_data()
}

/// Bytes applied between two starts of writing back.
const APPLY_WRITEBACK: u64 = 8 << 20;

/// Staged bytes read from the log at once while applying.
const APPLY_READ: u64 = 8 << 20;
/// Log bytes between two staged runs read through rather than skipped to
/// (record headers, mostly).
const APPLY_GAP: u64 = 64 << 10;

/// Ends a patch of `dest` once applied and synced. The staging log is
/// renamed to [`applied_path`] first, then the journal goes (the
/// destination is final from then on), then the spent log. A crash at any
/// point leaves either the journal (rolled forward again by [`recover`],
/// from the log under either name) or a log named spent, which the next
/// open removes — never a log that looks like staged work to resume.
pub fn complete(folder: &Folder, dest: &OsStr) -> io::Result<()> {
    match folder.rename(&staging_name(dest), &applied_name(dest)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    folder.sync()?;
    if !folder.remove(&journal_name(dest))? {
        return Err(io::ErrorKind::NotFound.into());
    }
    folder.sync()?;
    folder.remove(&applied_name(dest)).map(|_| ())
}

/// Rolls forward a patch of `dest` (in `folder`) that a crash interrupted
/// after its commit, and drops a journal whose commit never finished.
/// Returns whether a patch was applied.
pub fn recover(dest: &Entry, folder: &Folder) -> Result<bool, CopyError> {
    let name = dest.name();
    let (journal, applied) = (journal_name(name), applied_name(name));
    let at = |name: &OsStr| folder.path_of(name);
    let remove = |name: &OsStr| {
        folder
            .remove(name)
            .map_err(|e| CopyError::io("removing", &at(name), e))
    };
    let body = match folder.read(&journal) {
        Ok(Some(body)) => body,
        // A spent log without its journal: the patch is complete.
        Ok(None) => return remove(&applied).map(|_| false),
        Err(e) => return Err(CopyError::io("reading journal", &at(&journal), e)),
    };
    let Some((size, runs)) = parse_journal(&body) else {
        remove(&journal)?;
        return Ok(false);
    };
    let staging = staging_name(name);
    // The log under its staging name, or already renamed as spent by a
    // `complete` that was interrupted before it removed the journal.
    let open_log = |name: &OsStr| match folder.open(name, OFlags::RDONLY) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CopyError::io("reading", &at(name), e)),
    };
    let staged = match open_log(&staging)? {
        Some(file) => Some(file),
        None => open_log(&applied)?,
    };
    let needs_staged = runs
        .iter()
        .any(|(_, _, change)| matches!(change, Change::Staged { .. }));
    if staged.is_none() && needs_staged {
        // Only removing the log by hand gets here. The patch can't be
        // finished; the next copy repairs the image against the source.
        remove(&journal)?;
        return Err(CopyError::new(
            ErrorKind::Io,
            format!(
                "{} was being patched when it was interrupted, and its staged bytes {} are gone: it may be half-patched; the journal was removed, copy the image again",
                dest.path.display(),
                at(&staging).display()
            ),
        ));
    }
    let target = dest.open("opening destination for writing", OFlags::WRONLY)?;
    apply(&target, staged.as_ref(), size, &runs).map_err(|e| {
        CopyError::new(
            ErrorKind::Io,
            format!(
                "{} records an unfinished patch of {} that cannot be finished now ({e}); it is finished at the next open of the image once that is fixed",
                at(&journal).display(),
                dest.path.display()
            ),
        )
    })?;
    complete(folder, name).map_err(|e| CopyError::io("removing", &at(&journal), e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::beneath::Root;

    fn entry(path: &Path) -> Entry {
        Root::anywhere().entry(&path.display().to_string()).unwrap()
    }

    fn folder_of(path: &Path) -> Folder {
        entry(path).folder("folder").unwrap()
    }

    fn named(dest: &Path, name: fn(&OsStr) -> OsString) -> PathBuf {
        dest.with_file_name(name(dest.file_name().unwrap()))
    }

    fn journal_path(dest: &Path) -> PathBuf {
        named(dest, journal_name)
    }

    fn staging_path(dest: &Path) -> PathBuf {
        named(dest, staging_name)
    }

    fn applied_path(dest: &Path) -> PathBuf {
        named(dest, applied_name)
    }

    fn staging_log(dest: &Path) -> StagingLog {
        StagingLog::create(&folder_of(dest), &staging_name(dest.file_name().unwrap())).unwrap()
    }

    fn commit_beside(dest: &Path, size: u64, runs: &[Run]) {
        let journal = journal_name(dest.file_name().unwrap());
        commit(&folder_of(dest), &journal, size, runs).unwrap();
    }

    fn recover_at(dest: &Path) -> Result<bool, CopyError> {
        recover(&entry(dest), &folder_of(dest))
    }

    #[test]
    fn changes_split_merge_and_clear() {
        let staged = |at| Change::Staged { at };
        let mut changes = Changes::default();
        changes.set(0, 100, Some(staged(1000)));
        changes.set(100, 200, Some(staged(1100)));
        // Continues the staged bytes: one run.
        assert_eq!(changes.runs(), vec![(0, 200, staged(1000))]);
        // Staged elsewhere in the log: a run of its own.
        changes.set(200, 300, Some(staged(5000)));
        assert_eq!(changes.runs().len(), 2);
        changes.set(50, 60, Some(Change::Zero));
        assert_eq!(
            changes.runs(),
            vec![
                (0, 50, staged(1000)),
                (50, 60, Change::Zero),
                (60, 200, staged(1060)),
                (200, 300, staged(5000)),
            ]
        );
        changes.set(40, 70, None);
        assert_eq!(
            changes.within(30, 250),
            vec![
                (30, 40, staged(1030)),
                (70, 200, staged(1070)),
                (200, 250, staged(5000)),
            ]
        );
        changes.set(0, 300, None);
        assert!(changes.runs().is_empty());
    }

    #[test]
    fn a_staging_log_is_found_again_and_a_torn_record_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log_name = OsStr::new("log");
        let mut log = StagingLog::create(&folder_of(&path), log_name).unwrap();
        let first = log.append(8192, &[1u8; 4096]).unwrap();
        let second = log.append(0, &[2u8; 100]).unwrap();
        let whole = fs::metadata(&path).unwrap().len();
        drop(log);
        // A crash in the middle of a third record.
        let file = OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut &file, &4096u64.to_le_bytes()).unwrap();
        std::io::Write::write_all(&mut &file, &4096u64.to_le_bytes()).unwrap();
        std::io::Write::write_all(&mut &file, &[3u8; 10]).unwrap();
        let (log, staged) = StagingLog::open(&folder_of(&path), log_name)
            .unwrap()
            .unwrap();
        assert_eq!(
            staged.runs(),
            vec![
                (0, 100, Change::Staged { at: second }),
                (8192, 12288, Change::Staged { at: first }),
            ]
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), whole);
        let mut bytes = [0u8; 4];
        log.file().read_exact_at(&mut bytes, first).unwrap();
        assert_eq!(bytes, [1; 4]);
        fs::write(&path, b"not a log at all").unwrap();
        assert!(
            StagingLog::open(&folder_of(&path), log_name)
                .unwrap()
                .is_none()
        );
    }

    /// A patch committed and then interrupted while being applied (here:
    /// after its first run) is finished by the next open of the file.
    #[test]
    fn an_interrupted_patch_is_rolled_forward_by_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("disk.img");
        let old: Vec<u8> = (0..5 * 4096).map(|i| (i % 251) as u8 + 1).collect();
        fs::write(&dest, &old).unwrap();
        let mut log = staging_log(&dest);
        let mut changes = Changes::default();
        let first = log.append(4096, &[7u8; 4096]).unwrap();
        changes.set(4096, 8192, Some(Change::Staged { at: first }));
        changes.set(8192, 12288, Some(Change::Zero));
        let second = log.append(16384, &[9u8; 4096]).unwrap();
        changes.set(16384, 20480, Some(Change::Staged { at: second }));
        changes.set(20480, 24576, Some(Change::Staged { at: second }));
        let mut expected = old.clone();
        expected[4096..8192].fill(7);
        expected[8192..12288].fill(0);
        expected[16384..20480].fill(9);
        expected.resize(24576, 9);
        let runs = changes.runs();
        commit_beside(&dest, 24576, &runs);
        let file = OpenOptions::new().write(true).open(&dest).unwrap();
        apply(&file, Some(log.file()), 24576, &runs[..1]).unwrap();
        drop((file, log));

        let mut side = crate::files::FileSide::unconfined();
        let opened = side
            .handle(crate::protocol::Request::OpenSource {
                path: dest.display().to_string(),
            })
            .unwrap();
        assert_eq!(opened, crate::protocol::Response::Opened { size: 24576 });
        assert_eq!(fs::read(&dest).unwrap(), expected);
        assert!(!journal_path(&dest).exists());
        assert!(!staging_path(&dest).exists());
    }

    /// `disk.img` holding "old contents", with a committed patch of its
    /// first three bytes staged beside it.
    fn committed_patch(dir: &Path) -> PathBuf {
        let dest = dir.join("disk.img");
        fs::write(&dest, b"old contents").unwrap();
        let mut log = staging_log(&dest);
        let at = log.append(0, b"new").unwrap();
        commit_beside(&dest, 12, &[(0, 3, Change::Staged { at })]);
        dest
    }

    /// A crash inside `complete`: after the log was renamed as spent, the
    /// journal still there — the next open rolls the patch forward from the
    /// renamed log; after the journal went — the next open removes the spent
    /// log, which no rerun could mistake for staged work.
    #[test]
    fn a_crash_while_a_patch_completes_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = committed_patch(dir.path());
        fs::rename(staging_path(&dest), applied_path(&dest)).unwrap();
        assert!(
            recover_at(&dest).unwrap(),
            "rolled forward from the spent log"
        );
        assert_eq!(fs::read(&dest).unwrap(), b"new contents");
        for leftover in [
            journal_path(&dest),
            staging_path(&dest),
            applied_path(&dest),
        ] {
            assert!(!leftover.exists(), "{} is left", leftover.display());
        }

        // Applied, journal gone, the spent log not yet removed.
        fs::write(applied_path(&dest), b"spent").unwrap();
        assert!(!recover_at(&dest).unwrap(), "nothing left to apply");
        assert_eq!(fs::read(&dest).unwrap(), b"new contents");
        assert!(!applied_path(&dest).exists(), "the spent log is removed");
    }

    /// A crash while the journal was written: the patch never started, the
    /// destination is as it was, and the staged blocks stay for a rerun.
    #[test]
    fn a_torn_journal_leaves_the_destination_and_the_staged_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let dest = committed_patch(dir.path());
        let journal = fs::read(journal_path(&dest)).unwrap();
        fs::write(journal_path(&dest), &journal[..journal.len() - 5]).unwrap();
        assert!(!recover_at(&dest).unwrap());
        assert_eq!(fs::read(&dest).unwrap(), b"old contents");
        assert!(!journal_path(&dest).exists());
        assert!(staging_path(&dest).exists());
    }

    /// A committed patch whose staged bytes were removed by hand can't be
    /// finished: the open says so once, and the next copy can proceed.
    #[test]
    fn a_patch_without_its_staged_bytes_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let dest = committed_patch(dir.path());
        fs::remove_file(staging_path(&dest)).unwrap();
        let err = recover_at(&dest).unwrap_err();
        assert!(err.message.contains("may be half-patched"), "{err}");
        assert!(err.message.contains("copy the image again"), "{err}");
        assert!(!journal_path(&dest).exists());
        assert!(!recover_at(&dest).unwrap());
    }

    #[test]
    fn a_torn_journal_is_not_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        let folder = folder_of(&journal);
        let runs = vec![
            (0, 4096, Change::Staged { at: 16 }),
            (8192, 12288, Change::Zero),
        ];
        commit(&folder, OsStr::new("j"), 12288, &runs).unwrap();
        let body = fs::read(&journal).unwrap();
        assert_eq!(parse_journal(&body), Some((12288, runs)));
        for cut in [0, 10, body.len() / 2, body.len() - 1] {
            assert_eq!(parse_journal(&body[..cut]), None, "cut at {cut}");
        }
        let mut flipped = body.clone();
        flipped[20] ^= 1;
        assert_eq!(parse_journal(&flipped), None);
    }
}
