//! The coordinator: compares, plans and drives a copy between two endpoints.
//!
//! Per 64 MiB window both ends hash their blocks at the same time (the
//! source on one thread, the destination on another thread or host). Equal
//! blocks are copied from the old destination on the destination's side,
//! zero blocks are skipped, and only differing blocks cross the wire. Where
//! most of a 16 MiB stretch differs, data has probably shifted: that stretch
//! goes as an rsync delta (fast_rsync) against the old destination around
//! it; a delta that matched next to nothing (data rewritten, not shifted)
//! has the next stretches go as blocks, twice as many each time. The
//! windows are pipelined: while the destination applies and seals window N
//! and hashes its old copy of window N+1, the source hashes window N+1.
//! The result is verified and swapped in by the destination (`files`). A
//! running copy estimates its time left (`Estimator`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::blocks::{self, BLOCK_SIZE, BlockHash, ContentHasher, Want, WindowHashes};
use crate::endpoint::{Endpoint, Location};
use crate::error::{CopyError, ErrorKind};
use crate::protocol::{PatchOp, Role};
use crate::sqlite::TableChecksum;

/// Bytes per stretch that may go as an rsync delta.
const DELTA_STRETCH: u64 = 16 << 20;
/// Old-destination bytes around a stretch that a shifted block may come from.
const DELTA_SLACK: u64 = 1 << 20;
/// Data bytes gathered into one write request.
const BATCH_BYTES: u64 = 8 << 20;
/// Fewer differing blocks than this in a stretch always go as blocks.
const DELTA_MIN_BLOCKS: usize = 64;
/// At most this many stretches in a row go as blocks after deltas that
/// found nothing, before a delta is tried again (64 are one GiB).
const DELTA_BACKOFF_MAX: u64 = 64;

/// A flag that stops a copy between blocks; a rerun resumes it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How far a copy has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Size of the source.
    pub total: u64,
    /// Source bytes compared so far.
    pub scanned: u64,
    /// Data and delta bytes sent to the destination so far.
    pub sent: u64,
    /// Estimated time left, once there is a rate to go by (docs/copy.md, ETA).
    pub eta: Option<Duration>,
}

/// How long back the rate of a copy's ETA looks.
const ETA_SPAN: Duration = Duration::from_secs(20);
/// Bytes a second an image patched in place is assumed to take its staged
/// changes in at the end (a copy and a sync at the destination, which the
/// coordinator cannot time): what the copy_eta bench measured a finish to
/// take them in (about 900 MB/s on an SSD; a slower disk takes longer).
const APPLY_RATE: f64 = 900e6;

/// The ETA of a running copy: the bytes left at the rate of the recent
/// past (the last [`ETA_SPAN`]) of the phase the copy is in. The phases
/// differ by far in cost per byte: comparing windows that turn out equal
/// reads at disk speed, while a window that differs also waits on the link
/// for what it sends. So the rate restarts when a copy's first differing
/// window begins, and the compare phase's speed never counts as copy
/// throughput. Within a window the position moves with the bytes sent of
/// those it has to send, so the estimate follows a slow link between
/// windows too, and a window's hashing and sending both count (whichever
/// bounds the copy dominates its time). The finish (the destination's
/// sync, and applying the staged changes of an image patched in place) is
/// added as an estimate of its own.
#[derive(Default)]
struct Estimator {
    /// (when, position) of recent reports of this phase, oldest first; the
    /// first is at most [`ETA_SPAN`] older than the second.
    marks: VecDeque<(Instant, u64)>,
    last: Option<Duration>,
    /// Where the phase began.
    from: u64,
}

impl Estimator {
    /// A new phase begins at `position`: its rate counts from here.
    fn restart(&mut self, position: u64) {
        self.marks.clear();
        self.marks.push_back((Instant::now(), position));
        self.from = position;
    }

    /// The time left for a copy at `position` of `total` bytes, with
    /// `finish` to follow the last window.
    fn estimate(&mut self, position: u64, total: u64, finish: Duration) -> Option<Duration> {
        let now = Instant::now();
        if position >= total {
            self.last = Some(finish);
            return self.last;
        }
        self.marks.push_back((now, position));
        while self.marks.len() > 2 && now.duration_since(self.marks[1].0) >= ETA_SPAN {
            self.marks.pop_front();
        }
        let (since, from) = self.marks.front().copied()?;
        let (took, moved) = (now.duration_since(since), position.saturating_sub(from));
        if moved > 0 && !took.is_zero() {
            let per_byte = took.as_secs_f64() / moved as f64;
            self.last =
                Some(Duration::from_secs_f64(per_byte * (total - position) as f64) + finish);
        }
        self.last
    }
}

/// Progress reporting, cancellation and a bandwidth cap for a copy.
#[derive(Default, Clone, Copy)]
pub struct CopyOptions<'a> {
    pub progress: Option<&'a (dyn Fn(Progress) + Sync)>,
    pub cancel: Option<&'a Cancel>,
    /// At most this many bytes a second go over the wire from the source's
    /// side to the destination's (`limit RATE`), so a copy over a
    /// production link leaves the rest of it to the services still running
    /// there. Counted as the link carries them: every protocol byte the
    /// data's way, after compression (see [`Pacer`]).
    pub limit: Option<u64>,
}

/// The longest a paced copy sleeps before looking at its stop flag again.
const PACE_SLICE: Duration = Duration::from_millis(50);

/// Keeps the bytes a copy puts on the wire at or under a rate: a batch
/// goes once the bytes already on the wire and the batch's own data would
/// have taken their time at that rate (its data as it is: what it
/// compresses to is known only once it went, so a batch that compresses
/// well costs at most one batch's time of early waiting). The bytes counted are those that travel the data's
/// way over an agent's stream, as framed and compressed: to a destination
/// agent, and from a source agent (hashes and requests included; a relay's
/// two links each count their own and the busier one is held). Data that
/// compresses well therefore moves faster than the limit while the link
/// carries no more than it. Between two files on this machine there is no
/// wire: the data and delta bytes themselves are counted.
struct Pacer {
    rate: u64,
    started: Instant,
    /// Data and delta bytes queued so far (what counts without a wire).
    paced: u64,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            rate: rate.max(1),
            started: Instant::now(),
            paced: 0,
        }
    }

    /// Bytes per batch that keep the flow smooth: a tenth of a second's worth.
    fn batch(&self) -> u64 {
        (self.rate / 10).clamp(64 << 10, BATCH_BYTES)
    }

    /// Waits until `bytes` more data may go, given the `wire` bytes that
    /// went so far (`None`: no wire); gives up early when cancelled (the
    /// caller checks the flag next).
    fn wait(&mut self, bytes: u64, wire: Option<u64>, cancel: Option<&Cancel>) {
        self.paced += bytes;
        let counted = wire.map_or(self.paced, |wire| wire + bytes);
        let due = self.started + Duration::from_secs_f64(counted as f64 / self.rate as f64);
        loop {
            let now = Instant::now();
            if now >= due || cancel.is_some_and(Cancel::is_cancelled) {
                return;
            }
            thread::sleep((due - now).min(PACE_SLICE));
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The destination already held the source's content; nothing was written.
    AlreadyEqual,
    /// A new copy was written, verified and swapped in.
    Copied,
}

/// Evidence of a copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    pub outcome: Outcome,
    /// Size of the source (and now the destination).
    pub size: u64,
    /// Source bytes compared.
    pub bytes_scanned: u64,
    /// Data and delta bytes sent to the destination.
    pub bytes_sent: u64,
    /// Bytes taken from the old destination or the partial copy instead.
    pub bytes_reused: u64,
    /// Source bytes in holes or all-zero blocks: neither sent nor written.
    pub zero_bytes_skipped: u64,
    /// Of those, bytes in the source's holes (never read).
    pub hole_bytes: u64,
    /// 4 KiB blocks whose content was sent.
    pub blocks_sent: u64,
    /// 16 MiB stretches sent as rsync deltas (shifted data).
    pub delta_stretches: u64,
    /// A partial copy left by an interrupted run was reused.
    pub resumed: bool,
    /// The old destination was patched in place (behind a journal) rather
    /// than replaced by a whole new file.
    pub in_place: bool,
    /// All protocol bytes written to agents (both ends).
    pub wire_bytes_out: u64,
    /// All protocol bytes read from agents (both ends).
    pub wire_bytes_in: u64,
    /// Content hash of the source and the destination (hex).
    pub hash: String,
    pub duration: Duration,
}

/// The outcome of comparing two files without changing either.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    pub equal: bool,
    pub source_size: u64,
    pub source_hash: String,
    /// `None` when the destination does not exist.
    pub dest_size: Option<u64>,
    /// `None` when the destination does not exist or its size differs.
    pub dest_hash: Option<String>,
}

/// Evidence of a database sync.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// `backup` or `vacuum-into`.
    pub method: String,
    /// Every table of the snapshot, as verified at the destination.
    pub tables: Vec<TableChecksum>,
    pub copy: CopyReport,
}

/// Copies `source` over `dest` (a delta against what `dest` holds).
pub fn copy_image(
    source: &Location,
    dest: &Location,
    options: &CopyOptions<'_>,
) -> Result<CopyReport, CopyError> {
    let (mut src, src_path) = Endpoint::connect(source)?;
    let (mut dst, dst_path) = Endpoint::connect(dest)?;
    copy_between(&mut src, &src_path, &mut dst, &dst_path, false, options)
}

/// Compares two files by content hash (the `check` and `verify` phases).
pub fn check_image(source: &Location, dest: &Location) -> Result<CheckReport, CopyError> {
    let (mut src, src_path) = Endpoint::connect(source)?;
    let (mut dst, dst_path) = Endpoint::connect(dest)?;
    let source_size = src.open_source(&src_path)?;
    let dest_size = match dst.open_source(&dst_path) {
        Ok(size) => Some(size),
        Err(err) if err.kind == ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    let scan_dest = dest_size == Some(source_size);
    let (source_hash, dest_hash) = thread::scope(|scope| {
        let source_scan = scope.spawn(|| scan(&mut src, source_size));
        let dest_hash = if scan_dest {
            Some(scan(&mut dst, source_size))
        } else {
            None
        };
        (join(source_scan), dest_hash)
    });
    let source_hash = blocks::hex(&source_hash?);
    let dest_hash = dest_hash.transpose()?.map(|h| blocks::hex(&h));
    Ok(CheckReport {
        equal: dest_hash.as_ref() == Some(&source_hash),
        source_size,
        source_hash,
        dest_size,
        dest_hash,
    })
}

fn scan(endpoint: &mut Endpoint, size: u64) -> Result<[u8; 32], CopyError> {
    let mut content = ContentHasher::new(size);
    for index in 0..blocks::window_count(size) {
        let (start, end) = blocks::window_range(size, index);
        let window = endpoint.hash(Role::Source, start, end, Want::CONTENT)?;
        content.push(&content_digest(&window)?);
    }
    Ok(content.finish())
}

fn content_digest(window: &WindowHashes) -> Result<[u8; 32], CopyError> {
    window
        .digest
        .ok_or_else(|| CopyError::protocol("protocol error: a content digest is missing"))
}

fn join<T>(handle: thread::ScopedJoinHandle<'_, Result<T, CopyError>>) -> Result<T, CopyError> {
    handle.join().unwrap_or_else(|_| {
        Err(CopyError::new(
            ErrorKind::Io,
            "internal error: a hashing thread panicked",
        ))
    })
}

/// Syncs an SQLite database: a consistent snapshot of the (possibly live)
/// source, copied and swapped in at the destination, then verified table by
/// table against the snapshot.
pub fn sync_sqlite(
    source: &Location,
    dest: &Location,
    options: &CopyOptions<'_>,
) -> Result<SyncReport, CopyError> {
    let (mut src, src_path) = Endpoint::connect(source)?;
    let (mut dst, dst_path) = Endpoint::connect(dest)?;
    sync_sqlite_with(&mut src, &src_path, &mut dst, &dst_path, options)
}

/// `sync_sqlite` between endpoints that are already connected.
pub fn sync_sqlite_with(
    src: &mut Endpoint,
    src_path: &str,
    dst: &mut Endpoint,
    dst_path: &str,
    options: &CopyOptions<'_>,
) -> Result<SyncReport, CopyError> {
    let (snapshot_path, method) = src.snapshot(src_path)?;
    let mut sync = || {
        let tables = src.checksums(&snapshot_path)?;
        let copy = copy_between(src, &snapshot_path, dst, dst_path, true, options)?;
        let dest_tables = dst.checksums(dst_path)?;
        let differing: Vec<String> = tables
            .iter()
            .filter(|t| !dest_tables.contains(t))
            .map(|t| t.name.clone())
            .chain(
                dest_tables
                    .iter()
                    .filter(|t| !tables.iter().any(|s| s.name == t.name))
                    .map(|t| t.name.clone()),
            )
            .collect();
        if !differing.is_empty() {
            return Err(CopyError::new(
                ErrorKind::Verification,
                format!(
                    "database {dst_path} differs from the snapshot of {src_path} in tables: {}",
                    differing.join(", ")
                ),
            ));
        }
        Ok(SyncReport {
            method: method.clone(),
            tables,
            copy,
        })
    };
    let result = sync();
    let removed = src.remove_snapshot(&snapshot_path);
    let report = result?;
    removed?;
    Ok(report)
}

/// Row counts and checksums of every table of a database.
pub fn table_checksums(location: &Location) -> Result<Vec<TableChecksum>, CopyError> {
    let (mut endpoint, path) = Endpoint::connect(location)?;
    endpoint.checksums(&path)
}

/// What to do with one block of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Already right: a hole where the result has one.
    Nothing,
    /// The partial copy of an interrupted run already holds it.
    KeepPartial,
    /// Make it a hole (the partial copy or the old copy patched in place
    /// holds data there).
    Punch,
    /// Take it from the old destination.
    Reuse,
    /// Send from the source.
    Send,
}

/// The hashes of one window: the source's, the old destination's, the
/// partial copy's.
type Hashes = (WindowHashes, Option<WindowHashes>, Option<WindowHashes>);

struct Copier<'a, 'o> {
    src: &'a mut Endpoint,
    dst: &'a mut Endpoint,
    options: &'a CopyOptions<'o>,
    size: u64,
    basis_size: Option<u64>,
    resumed: bool,
    /// The destination patches its old copy in place: old bytes stay
    /// unless a change says otherwise (zeros included).
    in_place: bool,
    report: CopyReport,
    /// Changes not yet sent to the destination.
    ops: Vec<PatchOp>,
    /// Data and delta bytes held in `ops`.
    queued: u64,
    /// Data bytes gathered into one write request.
    batch: u64,
    /// The bandwidth cap, when there is one.
    pacer: Option<Pacer>,
    eta: Estimator,
    /// The window being patched: where it starts, its length, the bytes it
    /// has to send and those sent so far (its share of the ETA's position).
    window: (u64, u64, u64, u64),
    /// Bytes of the result sent so far, of windows patched so far.
    changed: u64,
    /// Stretches to send as blocks without trying a delta, and how many
    /// the next delta that finds nothing sets that to (rewritten data, not
    /// shifted: a delta would cost its round trip and search for nothing).
    delta_skip: u64,
    delta_backoff: u64,
}

/// Copies between endpoints that are already connected (so one agent can
/// serve several copies); `copy_image` connects and calls this.
pub fn copy_with(
    src: &mut Endpoint,
    src_path: &str,
    dst: &mut Endpoint,
    dst_path: &str,
    options: &CopyOptions<'_>,
) -> Result<CopyReport, CopyError> {
    copy_between(src, src_path, dst, dst_path, false, options)
}

fn copy_between(
    src: &mut Endpoint,
    src_path: &str,
    dst: &mut Endpoint,
    dst_path: &str,
    sqlite: bool,
    options: &CopyOptions<'_>,
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let size = src.open_source(src_path)?;
    let opened = dst.open_dest(dst_path, size, sqlite)?;
    let report = CopyReport {
        outcome: Outcome::Copied,
        size,
        bytes_scanned: 0,
        bytes_sent: 0,
        bytes_reused: 0,
        zero_bytes_skipped: 0,
        hole_bytes: 0,
        blocks_sent: 0,
        delta_stretches: 0,
        resumed: opened.resumed,
        in_place: opened.in_place,
        wire_bytes_out: 0,
        wire_bytes_in: 0,
        hash: String::new(),
        duration: Duration::ZERO,
    };
    let mut copier = Copier {
        src,
        dst,
        options,
        size,
        basis_size: opened.basis_size,
        resumed: opened.resumed,
        in_place: opened.in_place,
        report,
        ops: Vec::new(),
        queued: 0,
        batch: BATCH_BYTES,
        pacer: options.limit.map(Pacer::new),
        eta: Estimator::default(),
        window: (0, 0, 0, 0),
        changed: 0,
        delta_skip: 0,
        delta_backoff: 1,
    };
    if let Some(pacer) = &copier.pacer {
        copier.batch = pacer.batch();
    }
    let hash = copier.run()?;
    let unchanged = copier.report.outcome == Outcome::AlreadyEqual;
    if !unchanged {
        copier.cancelled()?;
        copier.dst.flush()?;
        copier.dst.finish(hash)?;
    }
    let mut report = copier.report;
    report.hash = blocks::hex(&hash);
    let (src_out, src_in) = src.wire_bytes();
    let (dst_out, dst_in) = dst.wire_bytes();
    report.wire_bytes_out = src_out + dst_out;
    report.wire_bytes_in = src_in + dst_in;
    report.duration = started.elapsed();
    Ok(report)
}

impl Copier<'_, '_> {
    fn cancelled(&self) -> Result<(), CopyError> {
        match self.options.cancel {
            Some(cancel) if cancel.is_cancelled() => Err(CopyError::new(
                ErrorKind::Cancelled,
                "copy cancelled; the destination is unchanged and a rerun resumes from the partial copy",
            )),
            _ => Ok(()),
        }
    }

    /// Waits for the bandwidth cap before `bytes` more go; then checks the
    /// stop flag.
    fn pace(&mut self, bytes: u64) -> Result<(), CopyError> {
        if self.pacer.is_some() {
            let wire = self.wire_the_data_way();
            if let Some(pacer) = &mut self.pacer {
                pacer.wait(bytes, wire, self.options.cancel);
            }
        }
        self.cancelled()
    }

    /// Bytes that went over a wire the data's way so far: from a source
    /// agent, to a destination agent (the busier link of a relay); `None`
    /// when both ends are files on this machine.
    fn wire_the_data_way(&self) -> Option<u64> {
        let from_source = matches!(self.src, Endpoint::Agent(_)).then(|| self.src.wire_bytes().1);
        let to_dest = matches!(self.dst, Endpoint::Agent(_)).then(|| self.dst.wire_bytes().0);
        from_source.max(to_dest)
    }

    fn progress(&mut self) {
        if let Some(progress) = self.options.progress {
            let (start, len, to_send, sent) = self.window;
            let mut position = self.report.bytes_scanned;
            if to_send > 0 && start >= position {
                position = start + (len as f64 * sent.min(to_send) as f64 / to_send as f64) as u64;
            }
            // Patched in place, the changes are staged and applied at the
            // end: those staged so far, and for the rest of the image as
            // many per byte as this phase changed (what came before it was
            // equal, kept or reused, and is no measure of what follows).
            let from = self.eta.from;
            let finish = if self.in_place && position > from {
                let per_byte = (self.changed as f64 / (position - from) as f64).min(1.0);
                let staged = self.changed as f64 + per_byte * (self.size - position) as f64;
                Duration::from_secs_f64(staged / APPLY_RATE)
            } else {
                Duration::ZERO
            };
            progress(Progress {
                total: self.size,
                scanned: self.report.bytes_scanned,
                sent: self.report.bytes_sent,
                eta: self.eta.estimate(position, self.size, finish),
            });
        }
    }

    /// Counts `bytes` of the window's work to send as done.
    fn window_sent(&mut self, bytes: u64) {
        self.window.3 += bytes;
        self.changed += bytes;
    }

    /// Scans and patches every window; returns the source's content hash.
    /// Sets the outcome to `AlreadyEqual` when nothing had to change.
    fn run(&mut self) -> Result<[u8; 32], CopyError> {
        let mut content = ContentHasher::new(self.size);
        let mut equal_so_far = self.basis_size == Some(self.size) && !self.resumed;
        let mut temp_started = self.resumed;
        let windows = blocks::window_count(self.size);
        self.eta.restart(0);
        let mut next = if windows > 0 {
            Some(self.send_and_hash(0, equal_so_far)?)
        } else {
            None
        };
        for index in 0..windows {
            self.cancelled()?;
            let (start, end) = blocks::window_range(self.size, index);
            let (mut source, mut basis, mut partial) = next
                .take()
                .ok_or_else(|| CopyError::protocol("internal error: a window was not hashed"))?;
            let source_digest = content_digest(&source)?;
            content.push(&source_digest);
            self.report.hole_bytes += source.hole_bytes;
            if equal_so_far && basis.as_ref().and_then(|b| b.digest) == Some(source_digest) {
                self.report.bytes_reused += end - start;
            } else {
                if equal_so_far {
                    // The first differing window: only content digests were asked for.
                    equal_so_far = false;
                    self.eta.restart(start);
                    (source, basis, partial) = self.send_and_hash(index, false)?;
                }
                if !temp_started {
                    if start > 0 {
                        // Windows before this one were equal: take them from the old copy.
                        self.ops.push(PatchOp::CopyBasisSparse {
                            start: 0,
                            len: start,
                        });
                        for earlier in 0..index {
                            let (start, end) = blocks::window_range(self.size, earlier);
                            self.ops.push(PatchOp::Seal { start, end });
                        }
                    }
                    temp_started = true;
                }
                self.patch_window(start, &source, basis.as_ref(), partial.as_ref())?;
                self.ops.push(PatchOp::Seal { start, end });
            }
            self.report.bytes_scanned = end;
            if index + 1 < windows {
                next = Some(self.send_and_hash(index + 1, equal_so_far)?);
            } else {
                self.flush_ops()?;
            }
            self.progress();
        }
        if equal_so_far {
            self.report.outcome = Outcome::AlreadyEqual;
            self.report.zero_bytes_skipped = 0;
        }
        Ok(content.finish())
    }

    /// Sends the queued changes to the destination and hashes window
    /// `index` at both ends, all at once: the source on a thread of its own.
    /// While every window so far was equal only content digests are asked
    /// for (the copy may be unnecessary); after that, block hashes, and the
    /// source's content digest for the verification.
    fn send_and_hash(&mut self, index: u64, equal_so_far: bool) -> Result<Hashes, CopyError> {
        let (start, end) = blocks::window_range(self.size, index);
        let ops = std::mem::take(&mut self.ops);
        self.queued = 0;
        let basis_covers = self.basis_size.is_some_and(|size| start < size);
        let resumed = self.resumed;
        let src = &mut *self.src;
        let dst = &mut *self.dst;
        thread::scope(|scope| {
            let source_want = if equal_so_far {
                Want::CONTENT
            } else {
                Want::BOTH
            };
            let source = scope.spawn(move || src.hash(Role::Source, start, end, source_want));
            let patched = if ops.is_empty() {
                Ok(())
            } else {
                dst.patch(ops)
            };
            let destination = || -> Result<_, CopyError> {
                patched?;
                let want = if equal_so_far {
                    Want::CONTENT
                } else {
                    Want::BLOCKS
                };
                let basis = if basis_covers {
                    Some(dst.hash(Role::Basis, start, end, want)?)
                } else {
                    None
                };
                let partial = if resumed {
                    Some(dst.hash(Role::Partial, start, end, Want::BLOCKS)?)
                } else {
                    None
                };
                Ok((basis, partial))
            };
            let destination = destination();
            let source = join(source)?;
            let (basis, partial) = destination?;
            Ok((source, basis, partial))
        })
    }

    /// Queues a change; sends the queue once it holds a batch of data.
    fn queue(&mut self, op: PatchOp) -> Result<(), CopyError> {
        self.queued += match &op {
            PatchOp::Write { data, .. } => data.len() as u64,
            PatchOp::ApplyDelta { delta, .. } => delta.len() as u64,
            _ => 0,
        };
        self.ops.push(op);
        if self.queued >= self.batch {
            self.flush_ops()?;
        }
        Ok(())
    }

    fn flush_ops(&mut self) -> Result<(), CopyError> {
        if !self.ops.is_empty() {
            self.dst.patch(std::mem::take(&mut self.ops))?;
        }
        self.queued = 0;
        Ok(())
    }

    fn patch_window(
        &mut self,
        window_start: u64,
        source: &WindowHashes,
        basis: Option<&WindowHashes>,
        partial: Option<&WindowHashes>,
    ) -> Result<(), CopyError> {
        let full_zero = blocks::zero_block_hash(BLOCK_SIZE as usize);
        let window_end =
            window_start + (source.blocks.len() as u64 * BLOCK_SIZE).min(self.size - window_start);
        let block_len = |i: usize| {
            let start = window_start + i as u64 * BLOCK_SIZE;
            (start + BLOCK_SIZE).min(window_end) - start
        };
        let zero_of = |i: usize| -> BlockHash {
            let len = block_len(i);
            if len == BLOCK_SIZE {
                full_zero
            } else {
                blocks::zero_block_hash(len as usize)
            }
        };
        let actions: Vec<Action> = (0..source.blocks.len())
            .map(|i| {
                let hash = source.blocks[i];
                let zero = zero_of(i);
                let partial_block = partial.map(|p| p.blocks[i]);
                let basis_block = basis.and_then(|b| b.blocks.get(i));
                if hash == zero {
                    let old_data = self.in_place && basis_block.is_some_and(|b| *b != zero);
                    if old_data || (!self.in_place && partial_block.is_some_and(|p| p != zero)) {
                        Action::Punch
                    } else {
                        Action::Nothing
                    }
                } else if self.in_place && basis_block == Some(&hash) {
                    // Patched in place, the old bytes cost nothing to keep.
                    Action::Reuse
                } else if partial_block == Some(hash) {
                    Action::KeepPartial
                } else if basis_block == Some(&hash) {
                    Action::Reuse
                } else {
                    Action::Send
                }
            })
            .collect();
        let mut to_send = 0;
        for (i, action) in actions.iter().enumerate() {
            let len = block_len(i);
            match action {
                Action::Nothing | Action::Punch => self.report.zero_bytes_skipped += len,
                Action::KeepPartial | Action::Reuse => self.report.bytes_reused += len,
                Action::Send => to_send += len,
            }
        }
        if to_send > 0 && self.changed == 0 {
            // The first window that sends: what came before (reused or
            // kept, at disk speed) is no measure of what follows.
            self.eta.restart(window_start);
        }
        self.window = (window_start, window_end - window_start, to_send, 0);
        let blocks_per_stretch = (DELTA_STRETCH / BLOCK_SIZE) as usize;
        for (stretch, stretch_actions) in actions.chunks(blocks_per_stretch).enumerate() {
            self.cancelled()?;
            let first = stretch * blocks_per_stretch;
            let stretch_start = window_start + first as u64 * BLOCK_SIZE;
            let stretch_end = (stretch_start + DELTA_STRETCH).min(window_end);
            let to_send = stretch_actions
                .iter()
                .filter(|a| **a == Action::Send)
                .count();
            let non_zero = stretch_actions
                .iter()
                .filter(|a| **a != Action::Nothing && **a != Action::Punch)
                .count();
            // A delta rebuilds its whole stretch: one that a resumed run
            // already holds in part goes as blocks, so that part is not sent again.
            let kept = stretch_actions.contains(&Action::KeepPartial);
            let mut shifted = self.basis_size.is_some()
                && !kept
                && to_send >= DELTA_MIN_BLOCKS
                && to_send * 4 >= non_zero;
            if shifted && self.delta_skip > 0 {
                self.delta_skip -= 1;
                shifted = false;
            }
            if shifted {
                self.send_delta(stretch_start, stretch_end)?;
                self.window_sent(to_send as u64 * BLOCK_SIZE);
                self.progress();
            } else {
                self.send_blocks(stretch_start, stretch_actions, |i| block_len(first + i))?;
            }
        }
        Ok(())
    }

    /// Sends one stretch as an rsync delta against the old destination
    /// around it (data that moved by up to `DELTA_SLACK` is found).
    fn send_delta(&mut self, start: u64, end: u64) -> Result<(), CopyError> {
        let basis_size = self.basis_size.unwrap_or(0);
        let basis_start = start.saturating_sub(DELTA_SLACK).min(basis_size);
        let basis_end = (end + DELTA_SLACK).min(basis_size);
        let signature = self.dst.signature(basis_start, basis_end)?;
        let delta = self.src.delta(signature, start, end)?;
        if delta.len() as u64 * 10 >= (end - start) * 9 {
            // Next to nothing matched: skip the next stretches' deltas,
            // twice as many each time this happens again.
            self.delta_skip = self.delta_backoff;
            self.delta_backoff = (self.delta_backoff * 2).min(DELTA_BACKOFF_MAX);
        } else {
            self.delta_backoff = 1;
        }
        self.pace(delta.len() as u64)?;
        self.report.bytes_sent += delta.len() as u64;
        self.report.delta_stretches += 1;
        self.report.blocks_sent += (end - start).div_ceil(BLOCK_SIZE);
        self.queue(PatchOp::ApplyDelta {
            basis_start,
            basis_end,
            start,
            len: end - start,
            delta,
        })
    }

    /// Queues a stretch block by block: reuse and hole runs as ranges, and
    /// the differing blocks' data read in batches.
    fn send_blocks(
        &mut self,
        start: u64,
        actions: &[Action],
        block_len: impl Fn(usize) -> u64,
    ) -> Result<(), CopyError> {
        let mut reads: Vec<(u64, u64)> = Vec::new();
        let mut read_bytes = 0;
        let mut i = 0;
        while i < actions.len() {
            let action = actions[i];
            let run_start = start + i as u64 * BLOCK_SIZE;
            let mut run_len = 0;
            while i < actions.len() && actions[i] == action {
                run_len += block_len(i);
                i += 1;
            }
            match action {
                Action::Nothing => {}
                Action::KeepPartial => self.ops.push(PatchOp::KeepPartial {
                    start: run_start,
                    len: run_len,
                }),
                Action::Punch => self.ops.push(PatchOp::Punch {
                    start: run_start,
                    len: run_len,
                }),
                Action::Reuse => self.ops.push(PatchOp::CopyBasis {
                    start: run_start,
                    len: run_len,
                }),
                Action::Send => {
                    self.report.blocks_sent += run_len.div_ceil(BLOCK_SIZE);
                    let mut at = run_start;
                    while at < run_start + run_len {
                        let len = (run_start + run_len - at).min(self.batch - read_bytes);
                        reads.push((at, len));
                        read_bytes += len;
                        at += len;
                        if read_bytes >= self.batch {
                            self.read_batch(&mut reads)?;
                            read_bytes = 0;
                        }
                    }
                }
            }
        }
        self.read_batch(&mut reads)
    }

    /// Reads the source's bytes for `reads` and queues them as writes.
    fn read_batch(&mut self, reads: &mut Vec<(u64, u64)>) -> Result<(), CopyError> {
        if reads.is_empty() {
            return Ok(());
        }
        self.pace(reads.iter().map(|(_, len)| len).sum())?;
        let data = self.src.read(reads.clone())?;
        self.report.bytes_sent += data.len() as u64;
        self.window_sent(data.len() as u64);
        let mut at = 0usize;
        for (start, len) in reads.drain(..) {
            let len = len as usize;
            let data = data.get(at..at + len).unwrap_or_default().to_vec();
            at += len;
            self.queue(PatchOp::Write { start, data })?;
        }
        self.progress();
        Ok(())
    }
}
