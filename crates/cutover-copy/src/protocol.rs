//! The agent protocol: length-prefixed binary frames over a byte stream
//! (a child's stdin/stdout, or ssh carrying them).
//!
//! A frame is a little-endian `u32` body length, then the body: a one-byte
//! tag and the fields of that message (integers little-endian, byte strings
//! and text as a `u32` length then the bytes). The coordinator speaks first
//! with `Hello` (magic + its version); the agent answers with its own
//! `Hello`, or with an `Error` naming both versions, and stops. After that
//! every request gets exactly one response, in order. A `Tunnel` request
//! is the last: once it is answered, the stream carries the bytes of a TCP
//! connection the agent made, both ways, until either end closes it.
//!
//! Either end may send a large message body compressed (since version 6):
//! the tag [`ZSTD_TAG`], the plain body's length, then one zstd frame
//! (`compress.rs` chooses when and how hard). Both decoders accept either
//! form; a compressed body never holds another one.

use std::io::{self, Read, Write};

use crate::blocks::{BlockHash, Want, WindowHashes};
use crate::compress::inflate;
pub use crate::compress::{ZSTD_TAG, compressed};
use crate::error::{CopyError, ErrorKind};
use crate::sqlite::TableChecksum;

/// The version of this protocol; both ends must speak the same one
/// (6: bodies may be zstd-compressed).
pub const PROTOCOL_VERSION: u32 = 6;
/// Identifies the protocol in the handshake.
pub const MAGIC: &[u8] = b"cutover-agent";
/// No frame is larger (the largest is a window's delta or an 8 MiB write batch).
pub const MAX_FRAME: u32 = 96 << 20;
/// No text field (a path, a host name, a message) is longer. Every other
/// length or count is checked against the bytes left in its frame before
/// anything is allocated for it, so a frame never costs more memory than
/// its own size.
pub const MAX_TEXT: usize = 64 << 10;

/// Which file of an open copy a hash request reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The file being copied.
    Source,
    /// The destination's existing copy.
    Basis,
    /// The temporary file a previous, interrupted run left beside the destination.
    Partial,
}

/// A change to the new content of the destination. Written into the
/// temporary file when the destination is replaced; staged there and
/// applied at `Finish` when it is patched in place (then the old
/// destination's bytes need no copying at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchOp {
    /// Copy `[start, start+len)` from the old destination.
    CopyBasis { start: u64, len: u64 },
    /// Copy the non-zero blocks of `[start, start+len)` from the old destination.
    CopyBasisSparse { start: u64, len: u64 },
    /// The partial copy of an interrupted run already holds the new bytes
    /// of `[start, start+len)`.
    KeepPartial { start: u64, len: u64 },
    /// Write bytes received from the source.
    Write { start: u64, data: Vec<u8> },
    /// Make `[start, start+len)` a hole.
    Punch { start: u64, len: u64 },
    /// Rebuild `[start, start+len)` by applying an rsync delta to the old
    /// destination's bytes `[basis_start, basis_end)`.
    ApplyDelta {
        basis_start: u64,
        basis_end: u64,
        start: u64,
        len: u64,
        delta: Vec<u8>,
    },
    /// `[start, end)` (one window) is final: hash it now, while it is in
    /// the page cache, for the verification at `Finish`, and start writing
    /// it to disk.
    Seal { start: u64, end: u64 },
}

impl PatchOp {
    /// The range of the new content this op changes, if any.
    pub fn written_range(&self) -> Option<(u64, u64)> {
        match self {
            PatchOp::CopyBasis { start, len }
            | PatchOp::CopyBasisSparse { start, len }
            | PatchOp::KeepPartial { start, len }
            | PatchOp::Punch { start, len }
            | PatchOp::ApplyDelta { start, len, .. } => Some((*start, *len)),
            PatchOp::Write { start, data } => Some((*start, data.len() as u64)),
            PatchOp::Seal { .. } => None,
        }
    }
}

/// What one TCP connect made by the agent came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The target accepted: the agent's local address and the target's.
    Open { local: String, peer: String },
    /// Refused, unreachable, no answer within the timeout, or the name did
    /// not resolve there: why.
    Failed { error: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Hello {
        version: u32,
    },
    OpenSource {
        path: String,
    },
    OpenDest {
        path: String,
        size: u64,
        /// The file is an SQLite database: always replaced whole, never
        /// patched in place (its companions are settled first).
        sqlite: bool,
    },
    Hash {
        role: Role,
        start: u64,
        end: u64,
        want: Want,
    },
    Read {
        ranges: Vec<(u64, u64)>,
    },
    Signature {
        start: u64,
        end: u64,
    },
    Delta {
        signature: Vec<u8>,
        start: u64,
        end: u64,
    },
    Patch {
        ops: Vec<PatchOp>,
    },
    Finish {
        hash: [u8; 32],
    },
    Snapshot {
        path: String,
    },
    Checksums {
        path: String,
    },
    Remove {
        path: String,
    },
    /// TCP connects from the agent's host to each `(host, port)` (a name
    /// is resolved there), all at once, each given `timeout_ms`; the
    /// connections are closed again.
    Connect {
        targets: Vec<(String, u16)>,
        timeout_ms: u64,
    },
    /// One TCP connect from the agent's host; once `Tunneled` answers it,
    /// the stream relays that connection's bytes.
    Tunnel {
        host: String,
        port: u16,
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Hello {
        version: u32,
    },
    Ok,
    Error(CopyError),
    Opened {
        size: u64,
    },
    DestOpened {
        basis_size: Option<u64>,
        resumed: bool,
        /// The old destination will be patched in place under a journal
        /// instead of replaced.
        in_place: bool,
    },
    Hashes(WindowHashes),
    Data(Vec<u8>),
    Snapshot {
        path: String,
        method: String,
    },
    Checksums(Vec<TableChecksum>),
    /// One outcome per `Connect` target, in order.
    Connected(Vec<Reach>),
    /// The tunnel's connection: the agent's local address and the target's.
    Tunneled {
        local: String,
        peer: String,
    },
}

/// Writes one frame; returns the bytes written.
pub fn write_frame(out: &mut impl Write, body: &[u8]) -> io::Result<u64> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("frame too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(body)?;
    Ok(4 + u64::from(len))
}

/// Reads one request frame body (the agent's side, where an empty frame is
/// not the protocol); `Ok(None)` at a clean end of stream.
pub fn read_frame(input: &mut impl Read) -> Result<Option<Vec<u8>>, FrameError> {
    let Some(len) = read_len(input)? else {
        return Ok(None);
    };
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::Garbage(len));
    }
    read_body(input, len).map(Some)
}

/// Reads one answer frame body (the coordinator's side), skipping the
/// agent's heartbeats (empty frames); `Ok(None)` at a clean end of stream.
pub fn read_answer(input: &mut impl Read) -> Result<Option<Vec<u8>>, FrameError> {
    loop {
        let Some(len) = read_len(input)? else {
            return Ok(None);
        };
        if len == 0 {
            continue;
        }
        if len > MAX_FRAME {
            return Err(FrameError::Garbage(len));
        }
        return read_body(input, len).map(Some);
    }
}

/// A frame's length; `None` at a clean end of stream (before its first byte).
fn read_len(input: &mut impl Read) -> Result<Option<u32>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(FrameError::Io(err)),
        }
    }
    Ok(Some(u32::from_le_bytes(len)))
}

/// Reads a frame body of `len` bytes (at most [`MAX_FRAME`]), growing the
/// buffer as the bytes arrive: a length alone never allocates.
fn read_body(input: &mut impl Read, len: u32) -> Result<Vec<u8>, FrameError> {
    let mut body = Vec::with_capacity((len as usize).min(1 << 20));
    input
        .take(u64::from(len))
        .read_to_end(&mut body)
        .map_err(FrameError::Io)?;
    if body.len() != len as usize {
        return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(body)
}

/// Why no frame could be read.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// A length no frame can have: the peer is not speaking this protocol.
    Garbage(u32),
}

struct Encoder(Vec<u8>);

impl Encoder {
    fn new(tag: u8) -> Encoder {
        Encoder(vec![tag])
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
    fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
}

struct Decoder<'a>(&'a [u8]);

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CopyError> {
        if self.0.len() < n {
            return Err(CopyError::protocol("protocol error: a message ended early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, CopyError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, CopyError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, CopyError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    /// A length-prefixed byte string: the length is checked against the
    /// bytes left before they are copied out.
    fn bytes(&mut self) -> Result<Vec<u8>, CopyError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }
    fn str(&mut self) -> Result<String, CopyError> {
        let len = self.u32()? as usize;
        if len > MAX_TEXT {
            return Err(CopyError::protocol(format!(
                "protocol error: a text of {len} bytes (at most {MAX_TEXT})"
            )));
        }
        std::str::from_utf8(self.take(len)?)
            .map(str::to_string)
            .map_err(|_| CopyError::protocol("protocol error: text is not UTF-8"))
    }
    /// A count of items that take at least `item_bytes` each: refused when
    /// that many cannot fit in what is left of the message.
    fn count(&mut self, item_bytes: usize) -> Result<usize, CopyError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(item_bytes) > self.0.len() {
            return Err(CopyError::protocol(format!(
                "protocol error: a count of {count} in a message with room for {}",
                self.0.len() / item_bytes
            )));
        }
        Ok(count)
    }
    fn port(&mut self) -> Result<u16, CopyError> {
        u16::try_from(self.u32()?)
            .map_err(|_| CopyError::protocol("protocol error: a port above 65535"))
    }
    fn array32(&mut self) -> Result<[u8; 32], CopyError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(32)?);
        Ok(out)
    }
    fn end(&self) -> Result<(), CopyError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CopyError::protocol(
                "protocol error: trailing bytes in a message",
            ))
        }
    }
}

fn role_code(role: Role) -> u8 {
    match role {
        Role::Source => 0,
        Role::Basis => 1,
        Role::Partial => 2,
    }
}

fn role_from(code: u8) -> Result<Role, CopyError> {
    match code {
        0 => Ok(Role::Source),
        1 => Ok(Role::Basis),
        2 => Ok(Role::Partial),
        other => Err(CopyError::protocol(format!(
            "protocol error: unknown file role {other}"
        ))),
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut e;
        match self {
            Request::Hello { version } => {
                e = Encoder::new(1);
                e.bytes(MAGIC).u32(*version);
            }
            Request::OpenSource { path } => {
                e = Encoder::new(2);
                e.str(path);
            }
            Request::OpenDest { path, size, sqlite } => {
                e = Encoder::new(3);
                e.str(path).u64(*size).u8(u8::from(*sqlite));
            }
            Request::Hash {
                role,
                start,
                end,
                want,
            } => {
                e = Encoder::new(4);
                e.u8(role_code(*role))
                    .u64(*start)
                    .u64(*end)
                    .u8(u8::from(want.blocks) | (u8::from(want.content) << 1));
            }
            Request::Read { ranges } => {
                e = Encoder::new(5);
                e.u32(ranges.len() as u32);
                for (start, len) in ranges {
                    e.u64(*start).u64(*len);
                }
            }
            Request::Signature { start, end } => {
                e = Encoder::new(6);
                e.u64(*start).u64(*end);
            }
            Request::Delta {
                signature,
                start,
                end,
            } => {
                e = Encoder::new(7);
                e.bytes(signature).u64(*start).u64(*end);
            }
            Request::Patch { ops } => {
                e = Encoder::new(8);
                e.u32(ops.len() as u32);
                for op in ops {
                    match op {
                        PatchOp::CopyBasis { start, len } => e.u8(0).u64(*start).u64(*len),
                        PatchOp::CopyBasisSparse { start, len } => e.u8(1).u64(*start).u64(*len),
                        PatchOp::Write { start, data } => e.u8(2).u64(*start).bytes(data),
                        PatchOp::Punch { start, len } => e.u8(3).u64(*start).u64(*len),
                        PatchOp::ApplyDelta {
                            basis_start,
                            basis_end,
                            start,
                            len,
                            delta,
                        } => e
                            .u8(4)
                            .u64(*basis_start)
                            .u64(*basis_end)
                            .u64(*start)
                            .u64(*len)
                            .bytes(delta),
                        PatchOp::Seal { start, end } => e.u8(5).u64(*start).u64(*end),
                        PatchOp::KeepPartial { start, len } => e.u8(6).u64(*start).u64(*len),
                    };
                }
            }
            Request::Finish { hash } => {
                e = Encoder::new(9);
                e.0.extend_from_slice(hash);
            }
            Request::Snapshot { path } => {
                e = Encoder::new(11);
                e.str(path);
            }
            Request::Checksums { path } => {
                e = Encoder::new(12);
                e.str(path);
            }
            Request::Remove { path } => {
                e = Encoder::new(13);
                e.str(path);
            }
            Request::Connect {
                targets,
                timeout_ms,
            } => {
                e = Encoder::new(14);
                e.u64(*timeout_ms).u32(targets.len() as u32);
                for (host, port) in targets {
                    e.str(host).u32(u32::from(*port));
                }
            }
            Request::Tunnel {
                host,
                port,
                timeout_ms,
            } => {
                e = Encoder::new(15);
                e.str(host).u32(u32::from(*port)).u64(*timeout_ms);
            }
        }
        e.0
    }

    /// Decodes a body, plain or compressed.
    pub fn decode(body: &[u8]) -> Result<Request, CopyError> {
        match body.first() {
            Some(&ZSTD_TAG) => Request::decode_plain(&inflate(body, MAX_FRAME)?),
            _ => Request::decode_plain(body),
        }
    }

    fn decode_plain(body: &[u8]) -> Result<Request, CopyError> {
        let mut d = Decoder(body);
        let request = match d.u8()? {
            1 => {
                let magic = d.bytes()?;
                if magic != MAGIC {
                    return Err(CopyError::protocol(
                        "protocol error: the peer is not a cutover coordinator",
                    ));
                }
                Request::Hello { version: d.u32()? }
            }
            2 => Request::OpenSource { path: d.str()? },
            3 => Request::OpenDest {
                path: d.str()?,
                size: d.u64()?,
                sqlite: d.u8()? != 0,
            },
            4 => Request::Hash {
                role: role_from(d.u8()?)?,
                start: d.u64()?,
                end: d.u64()?,
                want: {
                    let bits = d.u8()?;
                    Want {
                        blocks: bits & 1 != 0,
                        content: bits & 2 != 0,
                    }
                },
            },
            5 => {
                let count = d.count(16)?;
                let mut ranges = Vec::with_capacity(count);
                for _ in 0..count {
                    ranges.push((d.u64()?, d.u64()?));
                }
                Request::Read { ranges }
            }
            6 => Request::Signature {
                start: d.u64()?,
                end: d.u64()?,
            },
            7 => Request::Delta {
                signature: d.bytes()?,
                start: d.u64()?,
                end: d.u64()?,
            },
            8 => {
                // The shortest op: a tag, a start and a length (or a data length).
                let count = d.count(13)?;
                let mut ops = Vec::with_capacity(count);
                for _ in 0..count {
                    ops.push(match d.u8()? {
                        0 => PatchOp::CopyBasis {
                            start: d.u64()?,
                            len: d.u64()?,
                        },
                        1 => PatchOp::CopyBasisSparse {
                            start: d.u64()?,
                            len: d.u64()?,
                        },
                        2 => PatchOp::Write {
                            start: d.u64()?,
                            data: d.bytes()?,
                        },
                        3 => PatchOp::Punch {
                            start: d.u64()?,
                            len: d.u64()?,
                        },
                        4 => PatchOp::ApplyDelta {
                            basis_start: d.u64()?,
                            basis_end: d.u64()?,
                            start: d.u64()?,
                            len: d.u64()?,
                            delta: d.bytes()?,
                        },
                        5 => PatchOp::Seal {
                            start: d.u64()?,
                            end: d.u64()?,
                        },
                        6 => PatchOp::KeepPartial {
                            start: d.u64()?,
                            len: d.u64()?,
                        },
                        other => {
                            return Err(CopyError::protocol(format!(
                                "protocol error: unknown patch op {other}"
                            )));
                        }
                    });
                }
                Request::Patch { ops }
            }
            9 => Request::Finish { hash: d.array32()? },
            11 => Request::Snapshot { path: d.str()? },
            12 => Request::Checksums { path: d.str()? },
            13 => Request::Remove { path: d.str()? },
            14 => {
                let timeout_ms = d.u64()?;
                let count = d.count(8)?;
                let mut targets = Vec::with_capacity(count);
                for _ in 0..count {
                    targets.push((d.str()?, d.port()?));
                }
                Request::Connect {
                    targets,
                    timeout_ms,
                }
            }
            15 => Request::Tunnel {
                host: d.str()?,
                port: d.port()?,
                timeout_ms: d.u64()?,
            },
            ZSTD_TAG => {
                return Err(CopyError::protocol(
                    "protocol error: a compressed message inside a compressed one",
                ));
            }
            other => {
                return Err(CopyError::protocol(format!(
                    "protocol error: unknown request {other}"
                )));
            }
        };
        d.end()?;
        Ok(request)
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut e;
        match self {
            Response::Hello { version } => {
                e = Encoder::new(1);
                e.bytes(MAGIC).u32(*version);
            }
            Response::Ok => e = Encoder::new(2),
            Response::Error(err) => {
                e = Encoder::new(3);
                e.u8(err.kind.code()).str(&err.message);
            }
            Response::Opened { size } => {
                e = Encoder::new(4);
                e.u64(*size);
            }
            Response::DestOpened {
                basis_size,
                resumed,
                in_place,
            } => {
                e = Encoder::new(5);
                match basis_size {
                    Some(size) => e.u8(1).u64(*size),
                    None => e.u8(0).u64(0),
                };
                e.u8(u8::from(*resumed)).u8(u8::from(*in_place));
            }
            Response::Hashes(hashes) => {
                e = Encoder::new(6);
                match &hashes.digest {
                    Some(digest) => {
                        e.u8(1);
                        e.0.extend_from_slice(digest);
                    }
                    None => {
                        e.u8(0);
                    }
                }
                e.u64(hashes.hole_bytes).u32(hashes.blocks.len() as u32);
                for block in &hashes.blocks {
                    e.0.extend_from_slice(block);
                }
            }
            Response::Data(data) => {
                e = Encoder::new(7);
                e.bytes(data);
            }
            Response::Snapshot { path, method } => {
                e = Encoder::new(8);
                e.str(path).str(method);
            }
            Response::Checksums(tables) => {
                e = Encoder::new(9);
                e.u32(tables.len() as u32);
                for table in tables {
                    e.str(&table.name).u64(table.rows).str(&table.checksum);
                }
            }
            Response::Connected(outcomes) => {
                e = Encoder::new(10);
                e.u32(outcomes.len() as u32);
                for outcome in outcomes {
                    match outcome {
                        Reach::Open { local, peer } => e.u8(1).str(local).str(peer),
                        Reach::Failed { error } => e.u8(0).str(error),
                    };
                }
            }
            Response::Tunneled { local, peer } => {
                e = Encoder::new(11);
                e.str(local).str(peer);
            }
        }
        e.0
    }

    /// Decodes a body, plain or compressed.
    pub fn decode(body: &[u8]) -> Result<Response, CopyError> {
        match body.first() {
            Some(&ZSTD_TAG) => Response::decode_plain(&inflate(body, MAX_FRAME)?),
            _ => Response::decode_plain(body),
        }
    }

    fn decode_plain(body: &[u8]) -> Result<Response, CopyError> {
        let mut d = Decoder(body);
        let response = match d.u8()? {
            1 => {
                let magic = d.bytes()?;
                if magic != MAGIC {
                    return Err(CopyError::protocol(
                        "protocol error: the peer is not a cutover agent",
                    ));
                }
                Response::Hello { version: d.u32()? }
            }
            2 => Response::Ok,
            3 => {
                let kind = ErrorKind::from_code(d.u8()?);
                Response::Error(CopyError::new(kind, d.str()?))
            }
            4 => Response::Opened { size: d.u64()? },
            5 => {
                let present = d.u8()? != 0;
                let size = d.u64()?;
                Response::DestOpened {
                    basis_size: present.then_some(size),
                    resumed: d.u8()? != 0,
                    in_place: d.u8()? != 0,
                }
            }
            6 => {
                let digest = match d.u8()? {
                    0 => None,
                    _ => Some(d.array32()?),
                };
                let hole_bytes = d.u64()?;
                let count = d.count(16)?;
                let raw = d.take(count * 16)?;
                let blocks = raw
                    .chunks_exact(16)
                    .map(|c| {
                        let mut h: BlockHash = [0; 16];
                        h.copy_from_slice(c);
                        h
                    })
                    .collect();
                Response::Hashes(WindowHashes {
                    digest,
                    blocks,
                    hole_bytes,
                })
            }
            7 => Response::Data(d.bytes()?),
            8 => Response::Snapshot {
                path: d.str()?,
                method: d.str()?,
            },
            9 => {
                let count = d.count(16)?;
                let mut tables = Vec::with_capacity(count);
                for _ in 0..count {
                    tables.push(TableChecksum {
                        name: d.str()?,
                        rows: d.u64()?,
                        checksum: d.str()?,
                    });
                }
                Response::Checksums(tables)
            }
            10 => {
                let count = d.count(5)?;
                let mut outcomes = Vec::with_capacity(count);
                for _ in 0..count {
                    outcomes.push(match d.u8()? {
                        0 => Reach::Failed { error: d.str()? },
                        _ => Reach::Open {
                            local: d.str()?,
                            peer: d.str()?,
                        },
                    });
                }
                Response::Connected(outcomes)
            }
            11 => Response::Tunneled {
                local: d.str()?,
                peer: d.str()?,
            },
            ZSTD_TAG => {
                return Err(CopyError::protocol(
                    "protocol error: a compressed message inside a compressed one",
                ));
            }
            other => {
                return Err(CopyError::protocol(format!(
                    "protocol error: unknown response {other}"
                )));
            }
        };
        d.end()?;
        Ok(response)
    }
}
