//! Block hashing, hole finding and the image content hash.
//!
//! Both ends cut a file into fixed windows (64 MiB) of fixed blocks (4 KiB)
//! and hash every block with blake3. Holes found with `SEEK_DATA`/`SEEK_HOLE`
//! are not read: their hash is the known hash of a zero block. The content
//! hash of an image is blake3 over its length and the digests of its windows
//! (each digest is blake3 over the window's 32-byte block hashes), so both
//! ends get it from the scan they already do, without a second read.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

use memmap2::{Advice, MmapOptions};

/// Bytes per compared block: scattered 4 KiB writes cost one block each.
pub const BLOCK_SIZE: u64 = 4096;
/// Bytes per window: the unit of hashing, planning and memory use.
pub const WINDOW_SIZE: u64 = 64 << 20;

/// Block hashes on the wire are blake3 truncated to 128 bits; the window
/// digests (full blake3 over the full block hashes) guard the whole.
pub type BlockHash = [u8; 16];

/// The hashes of one window of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowHashes {
    /// blake3 over the full 32-byte hashes of the window's blocks.
    pub digest: [u8; 32],
    /// One truncated hash per block present in the file (a shorter file has
    /// fewer).
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

/// The full blake3 hash of `len` zero bytes, cached for a whole block.
pub fn zero_hash(len: usize) -> blake3::Hash {
    static FULL: OnceLock<blake3::Hash> = OnceLock::new();
    if len as u64 == BLOCK_SIZE {
        *FULL.get_or_init(|| blake3::hash(&[0u8; BLOCK_SIZE as usize]))
    } else {
        blake3::hash(&vec![0u8; len])
    }
}

/// Truncates a full block hash to its wire form.
pub fn truncate(hash: &blake3::Hash) -> BlockHash {
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash.as_bytes()[..16]);
    out
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
    let fd = file.as_raw_fd();
    let mut extents = Vec::new();
    let mut pos = start;
    while pos < end {
        let data = seek(fd, pos, libc::SEEK_DATA)?;
        let Some(data) = data else { break };
        if data >= end {
            break;
        }
        let hole = seek(fd, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        extents.push((data, hole));
        pos = hole;
    }
    Ok(extents)
}

/// `lseek`; `None` when there is no more data (ENXIO).
fn seek(fd: i32, pos: u64, whence: i32) -> io::Result<Option<u64>> {
    let offset = i64::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: lseek has no memory-safety preconditions; fd is an open descriptor.
    let result = unsafe { libc::lseek(fd, offset, whence) };
    if result < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        if err.raw_os_error() == Some(libc::EINVAL) {
            // SEEK_DATA unsupported: treat everything as data.
            return Ok(Some(pos));
        }
        return Err(err);
    }
    Ok(Some(result as u64))
}

/// Hashes the blocks of `file` (of `file_size` bytes) in `[start, end)`.
/// Blocks past the end of the file are not hashed and not returned; the
/// digest covers only the blocks that exist.
pub fn hash_window(file: &File, file_size: u64, start: u64, end: u64) -> io::Result<WindowHashes> {
    let end = end.min(file_size);
    let mut digest = blake3::Hasher::new();
    let mut blocks = Vec::new();
    if start >= end {
        return Ok(WindowHashes {
            digest: *digest.finalize().as_bytes(),
            blocks,
            hole_bytes: 0,
        });
    }
    let extents = data_extents(file, start, end)?;
    let data_bytes: u64 = extents.iter().map(|(a, b)| b - a).sum();
    let hole_bytes = (end - start) - data_bytes;
    let map = if extents.is_empty() {
        None
    } else {
        // SAFETY: the map is read while the file may change underneath; a
        // concurrent writer can only make the hashes stale, which the final
        // whole-image verification catches. Truncation raises SIGBUS, which
        // the copy treats like any other failure of a live source.
        let map = unsafe {
            MmapOptions::new()
                .offset(start)
                .len((end - start) as usize)
                .map(file)?
        };
        let _ = map.advise(Advice::Sequential);
        Some(map)
    };
    let mut extent = 0;
    let mut block_start = start;
    while block_start < end {
        let block_end = (block_start + BLOCK_SIZE).min(end);
        while extent < extents.len() && extents[extent].1 <= block_start {
            extent += 1;
        }
        let has_data = extent < extents.len() && extents[extent].0 < block_end;
        let hash = match (&map, has_data) {
            (Some(map), true) => {
                blake3::hash(&map[(block_start - start) as usize..(block_end - start) as usize])
            }
            _ => zero_hash((block_end - block_start) as usize),
        };
        digest.update(hash.as_bytes());
        blocks.push(truncate(&hash));
        block_start = block_end;
    }
    Ok(WindowHashes {
        digest: *digest.finalize().as_bytes(),
        blocks,
        hole_bytes,
    })
}

/// Accumulates window digests into the content hash of an image.
pub struct ContentHasher {
    hasher: blake3::Hasher,
}

impl ContentHasher {
    pub fn new(size: u64) -> ContentHasher {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"cutover-image-v1");
        hasher.update(&size.to_le_bytes());
        hasher.update(&BLOCK_SIZE.to_le_bytes());
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

/// The content hash of a whole local file (scans it window by window).
pub fn content_hash(file: &File, size: u64) -> io::Result<[u8; 32]> {
    let mut hasher = ContentHasher::new(size);
    for index in 0..window_count(size) {
        let (start, end) = window_range(size, index);
        hasher.push(&hash_window(file, size, start, end)?.digest);
    }
    Ok(hasher.finish())
}

/// Lower-case hex of a hash.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
