//! Block hashing, hole finding and the image content hash.
//!
//! Both ends cut a file into fixed windows (64 MiB) of fixed blocks (4 KiB).
//! Two hashes with two jobs:
//!
//! - Block hashes (xxh3, 128 bits) say which blocks differ. They are cheap
//!   enough to run at memory speed, so comparing costs little more than
//!   reading; a wrong match could only make the copy fail its verification,
//!   never pass it.
//! - The content hash (blake3) is what a copy is verified against: blake3
//!   over the file's length and its window digests, each blake3 over the
//!   blake3 hashes of the window's 16 KiB segments. A segment is 16 blake3
//!   chunks, one full batch for its AVX-512 code, and short enough that a
//!   window patched in a few places rehashes little of itself.
//!
//! Holes found with `SEEK_DATA`/`SEEK_HOLE` are not read: their hashes are
//! the known hashes of zeros. A scan computes whichever hashes are asked for
//! in one pass, block hashes first and then the segment while it is in cache.
//! Block hashes come from twox-hash, whose xxh3 picks AVX2 at run time (a
//! crate that picks it at compile time runs its SSE2 code on a portable
//! build).

use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::thread;

use rustix::fs::{Advice, SeekFrom};

/// Bytes per compared block: scattered 4 KiB writes cost one block each.
pub const BLOCK_SIZE: u64 = 4096;
/// Bytes per content-hash segment.
pub const SEGMENT_SIZE: u64 = 16 << 10;
/// Bytes per window: the unit of hashing, planning, verifying and memory use.
pub const WINDOW_SIZE: u64 = 64 << 20;
/// Bytes read at once (into one buffer that stays in the CPU's cache).
const READ_SIZE: u64 = 256 << 10;
/// Ranges at least this long are hashed in two halves on two threads.
const SPLIT_AT: u64 = 8 << 20;

/// A block hash: xxh3-128, little-endian.
pub type BlockHash = [u8; 16];

/// Which hashes a scan computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// One [`BlockHash`] per block.
    pub blocks: bool,
    /// The window's content digest.
    pub content: bool,
}

impl Want {
    pub const BOTH: Want = Want {
        blocks: true,
        content: true,
    };
    pub const BLOCKS: Want = Want {
        blocks: true,
        content: false,
    };
    pub const CONTENT: Want = Want {
        blocks: false,
        content: true,
    };
}

/// The hashes of one window of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowHashes {
    /// blake3 over the blake3 hashes of the window's segments, when asked for.
    pub digest: Option<[u8; 32]>,
    /// One hash per block present in the file (a shorter file has fewer),
    /// when asked for.
    pub blocks: Vec<BlockHash>,
    /// Bytes of the window that lie in holes (not read).
    pub hole_bytes: u64,
}

/// Number of windows of a file of `size` bytes.
pub fn window_count(size: u64) -> u64 {
    size.div_ceil(WINDOW_SIZE)
}

/// The byte range `[start, end)` of window `index` of a file of `size` bytes.
pub fn window_range(size: u64, index: u64) -> (u64, u64) {
    let start = index * WINDOW_SIZE;
    (start, (start + WINDOW_SIZE).min(size))
}

/// The hash of one block's bytes.
pub fn block_hash(data: &[u8]) -> BlockHash {
    twox_hash::XxHash3_128::oneshot(data).to_le_bytes()
}

/// The hash of a block of `len` zero bytes (cached for a whole block).
pub fn zero_block_hash(len: usize) -> BlockHash {
    static FULL: OnceLock<BlockHash> = OnceLock::new();
    if len as u64 == BLOCK_SIZE {
        *FULL.get_or_init(|| block_hash(&[0u8; BLOCK_SIZE as usize]))
    } else {
        block_hash(&vec![0u8; len])
    }
}

/// The blake3 hash of a segment of `len` zero bytes (cached for a whole segment).
fn zero_segment_hash(len: usize) -> blake3::Hash {
    static FULL: OnceLock<blake3::Hash> = OnceLock::new();
    if len as u64 == SEGMENT_SIZE {
        *FULL.get_or_init(|| blake3::hash(&vec![0u8; SEGMENT_SIZE as usize]))
    } else {
        blake3::hash(&vec![0u8; len])
    }
}

/// True when every byte of `data` is zero.
pub fn is_zero(data: &[u8]) -> bool {
    let chunks = data.chunks_exact(16);
    let tail = chunks.remainder();
    let ored = chunks.fold(0u128, |acc, chunk| {
        let mut word = [0u8; 16];
        word.copy_from_slice(chunk);
        acc | u128::from_ne_bytes(word)
    });
    ored == 0 && tail.iter().all(|b| *b == 0)
}

/// The data extents of `file` within `[start, end)`, found with
/// `SEEK_DATA`/`SEEK_HOLE`. File systems without hole support report one
/// extent covering everything.
pub fn data_extents(file: &File, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut extents = Vec::new();
    let mut pos = start;
    while pos < end {
        let data = seek(file, pos, SeekFrom::Data)?;
        let Some(data) = data else { break };
        if data >= end {
            break;
        }
        let hole = seek(file, data, SeekFrom::Hole)?.unwrap_or(end).min(end);
        extents.push((data, hole));
        pos = hole;
    }
    Ok(extents)
}

/// `lseek` to the next data or hole from `pos`; `None` when there is no
/// more data (ENXIO).
fn seek(file: &File, pos: u64, whence: fn(u64) -> SeekFrom) -> io::Result<Option<u64>> {
    match rustix::fs::seek(file, whence(pos)) {
        Ok(found) => Ok(Some(found)),
        Err(rustix::io::Errno::NXIO) => Ok(None),
        // SEEK_DATA unsupported: treat everything as data.
        Err(rustix::io::Errno::INVAL) => Ok(Some(pos)),
        Err(err) => Err(err.into()),
    }
}

/// A stretch `[start, end)` of data and where it is read from: `file`,
/// from offset `at` on.
#[derive(Clone, Copy)]
pub struct Extent<'a> {
    pub start: u64,
    pub end: u64,
    pub file: &'a File,
    pub at: u64,
}

/// Hashes `[start, end)` of `file` (of `file_size` bytes): the hashes
/// `want` asks for. Blocks past the end of the file are not hashed and not
/// returned; the digest covers only the bytes that exist.
///
/// Only data extents are read, with `pread` into a 256 KiB buffer (hashed
/// while it is in the CPU's cache; measured faster than hashing a memory map
/// of the page cache); hole parts are zeros in that buffer. A long range is
/// hashed in two halves on two threads. The kernel's own read-ahead is
/// switched off for the file (it would fill the page cache with zeroed pages
/// of holes) and replaced by asking for exactly the window's data extents.
pub fn hash_window(
    file: &File,
    file_size: u64,
    start: u64,
    end: u64,
    want: Want,
) -> io::Result<WindowHashes> {
    scan_file(file, file_size, start, end, want, None)
}

fn scan_file(
    file: &File,
    file_size: u64,
    start: u64,
    end: u64,
    want: Want,
    segments: Option<&mut Vec<[u8; 32]>>,
) -> io::Result<WindowHashes> {
    let end = end.min(file_size);
    let extents = file_extents(file, start, end)?;
    read_ahead(file, &extents);
    let middle = start + (end.saturating_sub(start) / 2) / SEGMENT_SIZE * SEGMENT_SIZE;
    if end.saturating_sub(start) < SPLIT_AT || middle <= start {
        return scan(start, end, &extents, want, segments);
    }
    // Two halves on two threads: a side that finishes its part early lends
    // its core to the other, so neither end of a copy waits on one thread.
    let (mut first_segments, mut second_segments) = (Vec::new(), Vec::new());
    let (first, second) = thread::scope(|scope| {
        let second = scope.spawn(|| scan(middle, end, &extents, want, Some(&mut second_segments)));
        let first = scan(start, middle, &extents, want, Some(&mut first_segments));
        (first, second.join())
    });
    let second = second.map_err(|_| io::Error::other("a hashing thread panicked"))??;
    let mut hashes = first?;
    hashes.blocks.extend(second.blocks);
    hashes.hole_bytes += second.hole_bytes;
    first_segments.extend(second_segments);
    hashes.digest = want.content.then(|| digest_of_segments(&first_segments));
    if let Some(segments) = segments {
        segments.extend(first_segments);
    }
    Ok(hashes)
}

/// The data extents of `[start, end)` of `file`, read from where they lie.
pub fn file_extents(file: &File, start: u64, end: u64) -> io::Result<Vec<Extent<'_>>> {
    if start >= end {
        return Ok(Vec::new());
    }
    Ok(data_extents(file, start, end)?
        .into_iter()
        .map(|(start, end)| Extent {
            start,
            end,
            file,
            at: start,
        })
        .collect())
}

/// Turns off the kernel's read-ahead for `file` and asks for `extents`
/// instead. Only hints: failures are ignored.
fn read_ahead(file: &File, extents: &[Extent<'_>]) {
    let _ = rustix::fs::fadvise(file, 0, None, Advice::Random);
    for extent in extents {
        if let Some(len) = NonZeroU64::new(extent.end - extent.start) {
            let _ = rustix::fs::fadvise(file, extent.at, Some(len), Advice::WillNeed);
        }
    }
}

/// Hashes `[start, end)` of a file made of `extents` (sorted, not
/// overlapping; parts outside the range are ignored) and zeros everywhere
/// else. This is how a destination patched in place is hashed before it is
/// written: its extents come from the old copy and from the staged changes.
pub fn hash_extents(
    start: u64,
    end: u64,
    extents: &[Extent<'_>],
    want: Want,
) -> io::Result<WindowHashes> {
    scan(start, end, extents, want, None)
}

/// [`hash_window`] with the content digest, keeping the blake3 hash of each
/// segment in `segments` too (a window digest is [`digest_of_segments`] of
/// them), so a window of which only some segments change later can be
/// verified without reading the rest again.
pub fn hash_window_keeping_segments(
    file: &File,
    file_size: u64,
    start: u64,
    end: u64,
    want: Want,
    segments: &mut Vec<[u8; 32]>,
) -> io::Result<WindowHashes> {
    let want = Want {
        content: true,
        ..want
    };
    scan_file(file, file_size, start, end, want, Some(segments))
}

/// The window digest made of its segments' hashes.
pub fn digest_of_segments(segments: &[[u8; 32]]) -> [u8; 32] {
    let mut digest = blake3::Hasher::new();
    for segment in segments {
        digest.update(segment);
    }
    *digest.finalize().as_bytes()
}

/// The blake3 hash of one segment, `[start, end)` of a file made of
/// `extents` and zeros.
pub fn segment_hash(start: u64, end: u64, extents: &[Extent<'_>]) -> io::Result<[u8; 32]> {
    let mut segments = Vec::with_capacity(1);
    scan(start, end, extents, Want::CONTENT, Some(&mut segments))?;
    Ok(segments
        .first()
        .copied()
        .unwrap_or(*zero_segment_hash(0).as_bytes()))
}

fn scan(
    start: u64,
    end: u64,
    extents: &[Extent<'_>],
    want: Want,
    mut segments: Option<&mut Vec<[u8; 32]>>,
) -> io::Result<WindowHashes> {
    let mut digest = want.content.then(blake3::Hasher::new);
    let mut blocks = Vec::new();
    if start >= end {
        return Ok(WindowHashes {
            digest: digest.map(|d| *d.finalize().as_bytes()),
            blocks,
            hole_bytes: 0,
        });
    }
    let data_bytes: u64 = extents
        .iter()
        .map(|e| e.end.min(end).saturating_sub(e.start.max(start)))
        .sum();
    let hole_bytes = (end - start) - data_bytes;
    if want.blocks {
        blocks.reserve((end - start).div_ceil(BLOCK_SIZE) as usize);
    }
    let mut buffer = Vec::new();
    let mut extent = 0;
    let mut chunk_start = start;
    while chunk_start < end {
        let chunk_end = (chunk_start + READ_SIZE).min(end);
        while extent < extents.len() && extents[extent].end <= chunk_start {
            extent += 1;
        }
        // The chunk's data extents, relative to the chunk, read into the
        // buffer with zeros between them.
        let pieces: Vec<(usize, usize)> = extents[extent..]
            .iter()
            .take_while(|e| e.start < chunk_end)
            .map(|e| {
                let from = e.start.max(chunk_start);
                (
                    (from - chunk_start) as usize,
                    (e.end.min(chunk_end) - chunk_start) as usize,
                )
            })
            .collect();
        if !pieces.is_empty() {
            // No bigger than the range: a one-segment hash (a patched
            // window's touched segments) zeroes 16 KiB, not a whole read.
            buffer.resize(READ_SIZE.min(end - start) as usize, 0);
            let mut at = 0;
            for (e, &(a, b)) in extents[extent..].iter().zip(&pieces) {
                buffer[at..a].fill(0);
                let position = e.at + (chunk_start + a as u64 - e.start);
                e.file.read_exact_at(&mut buffer[a..b], position)?;
                at = b;
            }
            buffer[at..(chunk_end - chunk_start) as usize].fill(0);
        }
        let mut piece = 0;
        let mut segment = 0usize;
        let chunk_len = (chunk_end - chunk_start) as usize;
        while segment < chunk_len {
            let segment_end = (segment + SEGMENT_SIZE as usize).min(chunk_len);
            while piece < pieces.len() && pieces[piece].1 <= segment {
                piece += 1;
            }
            let has_data = |from: usize, to: usize| {
                pieces[piece..]
                    .iter()
                    .take_while(|p| p.0 < to)
                    .any(|p| p.1 > from)
            };
            let len = segment_end - segment;
            if !has_data(segment, segment_end) {
                if want.blocks {
                    push_zero_blocks(&mut blocks, len);
                }
                if let Some(digest) = &mut digest {
                    let hash = zero_segment_hash(len);
                    digest.update(hash.as_bytes());
                    if let Some(segments) = &mut segments {
                        segments.push(*hash.as_bytes());
                    }
                }
            } else {
                let bytes = &buffer[segment..segment_end];
                if want.blocks {
                    for (index, block) in bytes.chunks(BLOCK_SIZE as usize).enumerate() {
                        let from = segment + index * BLOCK_SIZE as usize;
                        blocks.push(if has_data(from, from + block.len()) {
                            block_hash(block)
                        } else {
                            zero_block_hash(block.len())
                        });
                    }
                }
                if let Some(digest) = &mut digest {
                    let hash = blake3::hash(bytes);
                    digest.update(hash.as_bytes());
                    if let Some(segments) = &mut segments {
                        segments.push(*hash.as_bytes());
                    }
                }
            }
            segment = segment_end;
        }
        chunk_start = chunk_end;
    }
    Ok(WindowHashes {
        digest: digest.map(|d| *d.finalize().as_bytes()),
        blocks,
        hole_bytes,
    })
}

fn push_zero_blocks(blocks: &mut Vec<BlockHash>, len: usize) {
    let full = len / BLOCK_SIZE as usize;
    blocks.extend(std::iter::repeat_n(
        zero_block_hash(BLOCK_SIZE as usize),
        full,
    ));
    if !len.is_multiple_of(BLOCK_SIZE as usize) {
        blocks.push(zero_block_hash(len % BLOCK_SIZE as usize));
    }
}

/// Accumulates window digests into the content hash of an image.
pub struct ContentHasher {
    hasher: blake3::Hasher,
}

impl ContentHasher {
    pub fn new(size: u64) -> ContentHasher {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"cutover-image-v2");
        hasher.update(&size.to_le_bytes());
        hasher.update(&SEGMENT_SIZE.to_le_bytes());
        hasher.update(&WINDOW_SIZE.to_le_bytes());
        ContentHasher { hasher }
    }

    pub fn push(&mut self, window_digest: &[u8; 32]) {
        self.hasher.update(window_digest);
    }

    pub fn finish(&self) -> [u8; 32] {
        *self.hasher.finalize().as_bytes()
    }
}

/// Lower-case hex of a hash.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
