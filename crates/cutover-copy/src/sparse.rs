//! Sparse-file I/O: the system calls both ends of a copy use on their own
//! files — moving byte ranges between files in the kernel
//! (`copy_file_range`), making and keeping holes (`fallocate`), mapping a
//! range read-only, and hints to the page cache. Kept apart from the file
//! side's protocol logic ([`crate::files`]) and the in-place patching
//! ([`crate::inplace`]), which both use them.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use memmap2::{Mmap, MmapOptions};
use rustix::fs::FallocateFlags;

use crate::blocks::{self, BLOCK_SIZE};

/// Maps `[start, end)` of a file (clamped to `size`) read-only; `None` when
/// empty.
pub(crate) fn map_range(
    file: &File,
    size: u64,
    start: u64,
    end: u64,
    limit: u64,
) -> io::Result<Option<Mmap>> {
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
    // SAFETY: memmap2 requires that the mapped file is not changed while the
    // map is alive, which cutover cannot promise for a live source. What a
    // change does: changed bytes are read as they are (the final hash
    // verification catches them, so a changed source never passes as
    // copied); a truncation raises SIGBUS on access past the new end, which
    // ends the process like any other failure of a live file, leaving no
    // half-written destination (nothing is swapped in before verification).
    // The map never outlives `file`, and only the range [start, end), inside
    // the file's size when it was taken, is mapped.
    let map = unsafe {
        MmapOptions::new()
            .offset(start)
            .len((end - start) as usize)
            .map(file)?
    };
    Ok(Some(map))
}

/// Copies `len` bytes from offset `from_at` of one file to offset `to_at` of
/// another, in the kernel where it can (`copy_file_range`).
pub(crate) fn copy_range(
    from: &File,
    from_at: u64,
    to: &File,
    to_at: u64,
    len: u64,
) -> io::Result<()> {
    let mut off_in = from_at;
    let mut off_out = to_at;
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        let n = match rustix::fs::copy_file_range(
            from,
            Some(&mut off_in),
            to,
            Some(&mut off_out),
            chunk,
        ) {
            Ok(n) => n,
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::OPNOTSUPP,
            ) => return copy_by_reading(from, off_in, to, off_out, left),
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
        };
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as u64;
    }
    Ok(())
}

fn copy_by_reading(
    from: &File,
    mut from_at: u64,
    to: &File,
    mut to_at: u64,
    mut left: u64,
) -> io::Result<()> {
    let mut buffer = vec![0u8; (1 << 20).min(left as usize)];
    while left > 0 {
        let n = (buffer.len() as u64).min(left) as usize;
        from.read_exact_at(&mut buffer[..n], from_at)?;
        to.write_all_at(&buffer[..n], to_at)?;
        from_at += n as u64;
        to_at += n as u64;
        left -= n as u64;
    }
    Ok(())
}

/// Copies the non-zero blocks of `[start, end)` (clamped to the old copy).
pub(crate) fn copy_sparse(
    from: &File,
    from_size: u64,
    to: &File,
    start: u64,
    end: u64,
) -> io::Result<()> {
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
                        copy_range(from, a, to, a, b - a)?;
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
                copy_range(from, a, to, a, b - a)?;
            }
            chunk_start = chunk_end;
        }
    }
    Ok(())
}

/// Writes `data` at `start`, leaving (or making) holes where blocks are zero.
pub(crate) fn write_sparse(to: &File, start: u64, data: &[u8]) -> io::Result<()> {
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
pub(crate) fn start_writeback(file: &File, start: u64, len: u64) {
    let (Ok(start), Ok(len)) = (libc::off64_t::try_from(start), libc::off64_t::try_from(len))
    else {
        return;
    };
    // SAFETY: sync_file_range(2) (which rustix does not wrap) takes a
    // descriptor and three integers and touches no memory of this process;
    // the descriptor is open for as long as `file` is borrowed. Its result
    // is ignored on purpose: it is only a hint.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), start, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Deallocates `[start, start+len)`; writes zeros where holes are unsupported.
pub(crate) fn punch_hole(file: &File, start: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    match rustix::fs::fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        start,
        len,
    ) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => {}
        Err(err) => return Err(err.into()),
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
