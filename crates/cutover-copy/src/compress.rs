//! zstd for what crosses the agent wire. Over a link, a copy is as fast as
//! its bytes on the wire allow, so each large message is compressed at the
//! level that keeps up with the link: the sender measures how fast it
//! compresses, how fast the link takes what it hands over and how long its
//! own other work takes, and picks the level with the least time per byte
//! of data. A slow link gets high levels, a fast one low levels or none, so
//! compression never becomes the bottleneck; data found incompressible goes
//! raw. The receiver inflates a message only up to the size it declares,
//! never beyond (a small frame cannot make it allocate more).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::CopyError;

/// The first byte of a compressed message body; then the `u32` length of
/// the body it inflates to, then one zstd frame. No plain message has this tag.
pub const ZSTD_TAG: u8 = 0x5a;

/// Bodies shorter than this go raw (requests, acknowledgements, small
/// answers); longer ones are handed to the link one by one, so that each
/// teaches the packer how fast it goes.
pub const MIN_BODY: usize = 32 << 10;

/// The largest zstd window a receiver accepts (8 MiB, what level 19 uses):
/// a frame asking for more is refused instead of costing the memory.
const WINDOW_LOG_MAX: u32 = 23;

/// The variable that sets the sender's policy: `auto` (the default), `off`,
/// or a fixed zstd level (`-7` to `19`).
pub const POLICY_VAR: &str = "CUTOVER_WIRE_ZSTD";

/// One step of the ladder the sender chooses from, with what zstd is known
/// to do there relative to level 1 (speed and ratio, measured on a file
/// system image of `/usr`); measurements replace the speeds as they come.
struct Step {
    /// The zstd level; 0 is raw.
    level: i32,
    speed: f64,
    ratio: f64,
}

const LADDER: [Step; 12] = [
    Step {
        level: 0,
        speed: f64::INFINITY,
        ratio: 0.0,
    },
    Step {
        level: -4,
        speed: 1.5,
        ratio: 0.74,
    },
    Step {
        level: -1,
        speed: 1.2,
        ratio: 0.88,
    },
    Step {
        level: 1,
        speed: 1.0,
        ratio: 1.0,
    },
    Step {
        level: 2,
        speed: 0.85,
        ratio: 1.07,
    },
    Step {
        level: 3,
        speed: 0.39,
        ratio: 1.13,
    },
    Step {
        level: 5,
        speed: 0.17,
        ratio: 1.19,
    },
    Step {
        level: 7,
        speed: 0.155,
        ratio: 1.25,
    },
    Step {
        level: 9,
        speed: 0.137,
        ratio: 1.27,
    },
    Step {
        level: 12,
        speed: 0.039,
        ratio: 1.28,
    },
    Step {
        level: 15,
        speed: 0.009,
        ratio: 1.29,
    },
    Step {
        level: 19,
        speed: 0.004,
        ratio: 1.3,
    },
];

/// Where the ladder starts before anything is measured (level 1).
const FIRST_STEP: usize = 3;

/// How many steps up one message may move (down is not limited): a wrong
/// guess about a level not tried yet costs one message, not the copy.
const MAX_RISE: usize = 2;

/// The most zstd worker threads a pipelined packer uses.
const MAX_WORKERS: usize = 4;

/// A sample ratio below this makes a message go raw without compressing it.
const INCOMPRESSIBLE: f64 = 1.05;

/// A compressed body must save at least this share to be sent compressed.
const MIN_SAVING: f64 = 0.03;

/// How the sender compresses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// The level that keeps up with the link, measured as the copy goes.
    Adaptive,
    /// Everything raw.
    Off,
    /// Always this zstd level (incompressible data still goes raw).
    Fixed(i32),
}

impl Policy {
    /// The policy [`POLICY_VAR`] names; adaptive when unset or unreadable.
    pub fn from_env() -> Policy {
        match std::env::var(POLICY_VAR) {
            Ok(text) => Policy::parse(&text).unwrap_or(Policy::Adaptive),
            Err(_) => Policy::Adaptive,
        }
    }

    fn parse(text: &str) -> Option<Policy> {
        match text.trim() {
            "auto" | "" => Some(Policy::Adaptive),
            "off" | "0" => Some(Policy::Off),
            other => other
                .parse::<i32>()
                .ok()
                .filter(|l| (-7..=19).contains(l))
                .map(Policy::Fixed),
        }
    }
}

/// What the link took: bytes written to it and the time the writes took.
/// The writer (a thread of its own, or the sender itself) records; the
/// sender reads the rate.
#[derive(Debug, Default)]
pub struct LinkMeter {
    bytes: AtomicU64,
    nanos: AtomicU64,
}

impl LinkMeter {
    pub fn record(&self, bytes: u64, took: Duration) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn read(&self) -> (u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.nanos.load(Ordering::Relaxed),
        )
    }
}

/// A body compressed at `level`: [`ZSTD_TAG`], the plain length, the zstd frame.
pub fn compressed(body: &[u8], level: i32) -> Result<Vec<u8>, CopyError> {
    let mut cctx = zstd::bulk::Compressor::new(level).map_err(zstd_failed)?;
    frame_of(&mut cctx, body)
}

fn frame_of(cctx: &mut zstd::bulk::Compressor<'_>, body: &[u8]) -> Result<Vec<u8>, CopyError> {
    let len = u32::try_from(body.len())
        .map_err(|_| CopyError::protocol("protocol error: a message too large to compress"))?;
    let payload = cctx.compress(body).map_err(zstd_failed)?;
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(ZSTD_TAG);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn zstd_failed(err: std::io::Error) -> CopyError {
    CopyError::protocol(format!("zstd: {err}"))
}

/// The plain body of a compressed one (which starts with [`ZSTD_TAG`]):
/// refused when it declares more than `limit` bytes (the protocol's largest
/// frame), inflates to more or
/// less than it declares, asks for a window above 8 MiB, or holds anything
/// after its zstd frame. Memory grows with the output actually produced,
/// never past the declared size.
pub fn inflate(body: &[u8], limit: u32) -> Result<Vec<u8>, CopyError> {
    let bad =
        |why: &str| CopyError::protocol(format!("protocol error: a compressed message {why}"));
    if body.first() != Some(&ZSTD_TAG) || body.len() < 5 {
        return Err(bad("ended early"));
    }
    let mut declared = [0u8; 4];
    declared.copy_from_slice(&body[1..5]);
    let declared = u32::from_le_bytes(declared);
    if declared > limit {
        return Err(bad(&format!("declares {declared} bytes (at most {limit})")));
    }
    let payload = &body[5..];
    let mut decoder = zstd::stream::read::Decoder::with_buffer(payload)
        .map_err(zstd_failed)?
        .single_frame();
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(zstd_failed)?;
    // Room for a usual ratio up front; beyond that the buffer grows as bytes come.
    let mut out = Vec::with_capacity((declared as usize).min(payload.len().saturating_mul(8)));
    let read = (&mut decoder)
        .take(u64::from(declared) + 1)
        .read_to_end(&mut out);
    if let Err(err) = read {
        return Err(bad(&format!("does not inflate: {err}")));
    }
    if out.len() > declared as usize {
        return Err(bad(&format!(
            "inflates to more than the {declared} bytes it declares"
        )));
    }
    if out.len() < declared as usize {
        return Err(bad(&format!(
            "inflates to {} bytes, not the {declared} it declares",
            out.len()
        )));
    }
    if !decoder.finish().is_empty() {
        return Err(bad("has bytes after its zstd frame"));
    }
    Ok(out)
}

/// The sending side of one direction of the wire: decides, per message,
/// raw or which level, and learns from each message handed to the link.
pub struct Packer {
    policy: Policy,
    cctx: Option<zstd::bulk::Compressor<'static>>,
    /// Level 1, for the samples that tell whether a body compresses at all.
    probe: Option<zstd::bulk::Compressor<'static>>,
    step: usize,
    /// Measured compression speed (plain bytes a second) per step.
    speed: [Option<f64>; LADDER.len()],
    /// Level 1's plain bytes a second, estimated from whatever was measured.
    speed1: f64,
    /// Level 1's ratio, estimated from the messages compressed so far.
    ratio1: f64,
    /// Seconds a plain byte costs the sender besides compressing and waiting for the link.
    other_per_byte: f64,
    /// Wire bytes a second the link takes, once measured.
    link_rate: Option<f64>,
    link: Arc<LinkMeter>,
    link_seen: (u64, u64),
    last_handover: Option<Instant>,
    /// The message packed last: its plain length and what packing it took.
    packed: Option<(usize, Duration)>,
    /// Packing runs on a thread of its own, beside the sender's other work
    /// (which then only bounds the rate, instead of adding to each byte's time).
    pipelined: bool,
    /// zstd's worker threads per message (0: compressed by the caller).
    workers: u32,
}

/// Weight of the newest measurement in the running estimates.
const EWMA: f64 = 0.3;

fn blend(old: f64, new: f64) -> f64 {
    if old.is_finite() {
        old * (1.0 - EWMA) + new * EWMA
    } else {
        new
    }
}

impl Packer {
    /// A packer whose writes are measured by `link`, packing in line with
    /// the sender's other work (the agent's answers).
    pub fn new(policy: Policy, link: Arc<LinkMeter>) -> Packer {
        Packer {
            policy,
            cctx: None,
            probe: None,
            step: FIRST_STEP,
            speed: [None; LADDER.len()],
            speed1: 300e6,
            ratio1: 2.0,
            other_per_byte: 0.0,
            link_rate: None,
            link,
            link_seen: (0, 0),
            last_handover: None,
            packed: None,
            pipelined: false,
            workers: 0,
        }
    }

    /// A packer on a thread of its own between the sender and the link's
    /// writer (the coordinator's side), compressing each message with
    /// zstd's worker threads, one per core (at most [`MAX_WORKERS`]).
    pub fn pipelined(policy: Policy, link: Arc<LinkMeter>) -> Packer {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Packer {
            pipelined: true,
            workers: u32::try_from(cores.clamp(1, MAX_WORKERS)).unwrap_or(1),
            ..Packer::new(policy, link)
        }
    }

    /// The body to send for `body`: itself, or compressed.
    pub fn pack(&mut self, body: Vec<u8>) -> Vec<u8> {
        if self.policy == Policy::Off || body.len() < MIN_BODY {
            return body;
        }
        let started = Instant::now();
        let out = self.pack_large(body);
        self.packed = Some((out.1, started.elapsed()));
        out.0
    }

    fn pack_large(&mut self, body: Vec<u8>) -> (Vec<u8>, usize) {
        let len = body.len();
        if self.sample_ratio(&body) < INCOMPRESSIBLE {
            return (body, len);
        }
        let level = match self.policy {
            Policy::Fixed(level) => level,
            _ => {
                self.step = self.choose();
                LADDER[self.step].level
            }
        };
        if level == 0 {
            return (body, len);
        }
        let Some(cctx) = self.context(level, len) else {
            return (body, len);
        };
        let started = Instant::now();
        let Ok(frame) = frame_of(cctx, &body) else {
            return (body, len);
        };
        let took = started.elapsed().as_secs_f64().max(1e-6);
        if self.policy == Policy::Adaptive {
            let step = &LADDER[self.step];
            let speed = len as f64 / took;
            let measured = self.speed[self.step].map_or(speed, |old| blend(old, speed));
            self.speed[self.step] = Some(measured);
            self.speed1 = blend(self.speed1, speed / step.speed);
            self.ratio1 = blend(self.ratio1, len as f64 / frame.len() as f64 / step.ratio);
        }
        if frame.len() as f64 > len as f64 * (1.0 - MIN_SAVING) {
            return (body, len);
        }
        (frame, len)
    }

    /// The compressor at `level`, its work cut into jobs for the workers
    /// (two per worker; a job is at least 1 MiB, zstd's own minimum is half that).
    fn context(&mut self, level: i32, len: usize) -> Option<&mut zstd::bulk::Compressor<'static>> {
        if self.cctx.is_none() {
            let mut cctx = zstd::bulk::Compressor::new(level).ok()?;
            if self.workers > 0
                && cctx
                    .set_parameter(zstd::zstd_safe::CParameter::NbWorkers(self.workers))
                    .is_err()
            {
                self.workers = 0;
            }
            self.cctx = Some(cctx);
        }
        let workers = self.workers;
        let cctx = self.cctx.as_mut()?;
        cctx.set_compression_level(level).ok()?;
        if workers > 0 {
            let job = (len / (2 * workers as usize)).max(1 << 20);
            let job = u32::try_from(job).unwrap_or(u32::MAX);
            cctx.set_parameter(zstd::zstd_safe::CParameter::JobSize(job))
                .ok()?;
        }
        Some(cctx)
    }

    /// Level 1's ratio on four 16 KiB slices spread over the body.
    fn sample_ratio(&mut self, body: &[u8]) -> f64 {
        const SLICE: usize = 16 << 10;
        if self.probe.is_none() {
            self.probe = zstd::bulk::Compressor::new(1).ok();
        }
        let Some(probe) = self.probe.as_mut() else {
            return 1.0;
        };
        let gap = (body.len() - SLICE) / 3;
        let mut plain = 0;
        let mut packed = 0;
        for i in 0..4 {
            let slice = &body[i * gap..i * gap + SLICE];
            match probe.compress(slice) {
                Ok(out) => {
                    plain += slice.len();
                    packed += out.len();
                }
                Err(_) => return 1.0,
            }
        }
        plain as f64 / packed.max(1) as f64
    }

    /// The step with the least time per plain byte: the sender's own work
    /// and compressing (one after the other, or side by side when
    /// pipelined), or the link's time for what is left, whichever is
    /// longer (the link takes one message while the next is packed). Among
    /// steps within 2 % of the best, the one sending least; at most
    /// [`MAX_RISE`] steps above the current one.
    fn choose(&self) -> usize {
        let Some(link) = self.link_rate else {
            return self.step;
        };
        let time = |i: usize| {
            let step = &LADDER[i];
            let (compress, ratio) = if step.level == 0 {
                (0.0, 1.0)
            } else {
                let speed = self.speed[i].unwrap_or(self.speed1 * step.speed);
                (1.0 / speed, (self.ratio1 * step.ratio).max(1.0))
            };
            let sender = if self.pipelined {
                self.other_per_byte.max(compress)
            } else {
                self.other_per_byte + compress
            };
            sender.max(1.0 / (ratio * link))
        };
        let highest = (self.step + MAX_RISE).min(LADDER.len() - 1);
        let times: Vec<f64> = (0..=highest).map(time).collect();
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        (0..=highest)
            .rev()
            .find(|&i| times[i] <= best * 1.02)
            .unwrap_or(self.step)
    }

    /// The message packed last has been handed to the link, after waiting
    /// `blocked` for it to take it: learns the link's rate and the sender's
    /// own time per byte since the message before.
    pub fn handed_over(&mut self, blocked: Duration) {
        let now = Instant::now();
        let (bytes, nanos) = self.link.read();
        let (seen_bytes, seen_nanos) = self.link_seen;
        if nanos > seen_nanos && bytes > seen_bytes {
            let rate = (bytes - seen_bytes) as f64 / ((nanos - seen_nanos) as f64 / 1e9);
            self.link_rate = Some(self.link_rate.map_or(rate, |old| blend(old, rate)));
            self.link_seen = (bytes, nanos);
        }
        if let (Some(last), Some((len, packing))) = (self.last_handover, self.packed.take()) {
            let other = now
                .duration_since(last)
                .saturating_sub(packing)
                .saturating_sub(blocked);
            self.other_per_byte =
                blend(self.other_per_byte, other.as_secs_f64() / len.max(1) as f64);
        }
        self.last_handover = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol's largest frame.
    const LIMIT: u32 = 96 << 20;

    fn text_like(len: usize) -> Vec<u8> {
        let words = [
            "copy ",
            "image ",
            "agent ",
            "link ",
            "zstd ",
            "wire ",
            "cutover\n",
        ];
        let mut out = Vec::with_capacity(len);
        let mut state: u32 = 7;
        while out.len() < len {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            out.extend_from_slice(words[(state >> 16) as usize % words.len()].as_bytes());
        }
        out.truncate(len);
        out
    }

    fn random(len: usize) -> Vec<u8> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(&state.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// A packer that has seen a link of `link_rate` wire bytes a second,
    /// a sender spending `other` seconds a byte, and level 1 at `speed1`
    /// plain bytes a second with ratio `ratio1`.
    fn measured(link_rate: f64, other: f64, speed1: f64, ratio1: f64) -> Packer {
        let mut packer = Packer::new(Policy::Adaptive, Arc::default());
        packer.link_rate = Some(link_rate);
        packer.other_per_byte = other;
        packer.speed1 = speed1;
        packer.ratio1 = ratio1;
        packer
    }

    /// Steps chosen one message after another until the choice settles.
    fn settle(packer: &mut Packer) -> i32 {
        for _ in 0..LADDER.len() {
            packer.step = packer.choose();
        }
        LADDER[packer.step].level
    }

    #[test]
    fn a_slow_link_gets_a_high_level_and_a_fast_one_a_low_level_or_none() {
        // 100 Mbit, level 1 at 300 MB/s with ratio 3: the link is the limit
        // up to a level compressing about 40 MB/s.
        let slow = settle(&mut measured(12.5e6, 0.5e-9, 300e6, 3.0));
        assert!(slow >= 5, "100 Mbit got level {slow}");
        // 10 Gbit: compressing is slower than the link at every level.
        let fast = settle(&mut measured(1.25e9, 0.5e-9, 300e6, 3.0));
        assert_eq!(fast, 0, "10 Gbit got level {fast}");
        // 1 Gbit: level 1 keeps up with the link, level 3 would not.
        let gigabit = settle(&mut measured(117e6, 0.5e-9, 300e6, 3.0));
        assert!((-4..=2).contains(&gigabit), "1 Gbit got level {gigabit}");
        assert!(slow > gigabit);
    }

    #[test]
    fn a_pipelined_packer_compresses_harder_while_the_sender_is_the_limit() {
        // The sender spends 20 ns a byte (50 MB/s) on its own work over a
        // 1 Gbit link. In line, every level's time adds to that; on a thread
        // of its own, compressing up to 50 MB/s costs nothing.
        let mut serial = measured(117e6, 20e-9, 300e6, 3.0);
        let mut pipelined = measured(117e6, 20e-9, 300e6, 3.0);
        pipelined.pipelined = true;
        let (serial, pipelined) = (settle(&mut serial), settle(&mut pipelined));
        assert!(pipelined >= 3, "pipelined got level {pipelined}");
        assert!(pipelined > serial, "{pipelined} vs {serial}");
    }

    #[test]
    fn messages_compressed_by_zstd_workers_inflate_as_one_frame() {
        let mut packer = Packer::pipelined(Policy::Fixed(3), Arc::default());
        let text = text_like(8 << 20);
        let packed = packer.pack(text.clone());
        assert_eq!(packed[0], ZSTD_TAG);
        assert!(packed.len() * 3 < text.len(), "{} bytes", packed.len());
        assert_eq!(inflate(&packed, LIMIT).ok(), Some(text));
    }

    #[test]
    fn a_level_that_did_not_keep_up_is_left_for_a_lower_one() {
        let mut packer = measured(12.5e6, 0.0, 300e6, 3.0);
        let chosen = settle(&mut packer);
        // Measured far slower than its prior (another process took the core).
        packer.speed[packer.step] = Some(2e6);
        packer.step = packer.choose();
        assert!(
            LADDER[packer.step].level < chosen,
            "{} after {chosen}",
            LADDER[packer.step].level
        );
    }

    #[test]
    fn the_level_rises_at_most_two_steps_a_message() {
        let mut packer = measured(1e6, 0.0, 300e6, 3.0);
        packer.step = FIRST_STEP;
        assert_eq!(packer.choose(), FIRST_STEP + MAX_RISE);
    }

    #[test]
    fn incompressible_bodies_go_raw_and_compressible_ones_shrink() {
        let mut packer = Packer::new(Policy::Adaptive, Arc::default());
        let noise = random(1 << 20);
        assert_eq!(packer.pack(noise.clone()), noise);
        let text = text_like(1 << 20);
        let packed = packer.pack(text.clone());
        assert_eq!(packed[0], ZSTD_TAG);
        assert!(packed.len() * 3 < text.len(), "{} bytes", packed.len());
        assert_eq!(inflate(&packed, LIMIT).ok(), Some(text));
        // Noise a fixed level is told to use still goes raw.
        let mut fixed = Packer::new(Policy::Fixed(19), Arc::default());
        assert_eq!(fixed.pack(noise.clone()), noise);
    }

    #[test]
    fn small_bodies_and_the_off_policy_go_raw() {
        let mut packer = Packer::new(Policy::Adaptive, Arc::default());
        let small = text_like(MIN_BODY - 1);
        assert_eq!(packer.pack(small.clone()), small);
        let mut off = Packer::new(Policy::Off, Arc::default());
        let text = text_like(1 << 20);
        assert_eq!(off.pack(text.clone()), text);
    }

    #[test]
    fn the_link_rate_is_learnt_from_what_the_writer_records() {
        let link = Arc::new(LinkMeter::default());
        let mut packer = Packer::new(Policy::Adaptive, Arc::clone(&link));
        packer.pack(text_like(1 << 20));
        link.record(1_000_000, Duration::from_millis(100));
        packer.handed_over(Duration::ZERO);
        let rate = packer.link_rate.unwrap_or_default();
        assert!((rate - 10e6).abs() < 1.0, "{rate}");
    }

    #[test]
    fn policies_are_read_from_their_text() {
        assert_eq!(Policy::parse("auto"), Some(Policy::Adaptive));
        assert_eq!(Policy::parse("off"), Some(Policy::Off));
        assert_eq!(Policy::parse(" 9 "), Some(Policy::Fixed(9)));
        assert_eq!(Policy::parse("-3"), Some(Policy::Fixed(-3)));
        assert_eq!(Policy::parse("22"), None);
        assert_eq!(Policy::parse("fast"), None);
    }

    #[test]
    fn a_frame_inflating_beyond_what_it_declares_is_refused() {
        let text = text_like(1 << 20);
        let mut packed = compressed(&text, 3).unwrap_or_default();
        // Declare one byte less than the frame holds.
        packed[1..5].copy_from_slice(&((1u32 << 20) - 1).to_le_bytes());
        let err = inflate(&packed, LIMIT)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(err.contains("inflates to more than"), "{err}");
        // And one byte more.
        packed[1..5].copy_from_slice(&((1u32 << 20) + 1).to_le_bytes());
        let err = inflate(&packed, LIMIT)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(err.contains("not the 1048577 it declares"), "{err}");
    }

    #[test]
    fn a_zip_bomb_is_stopped_at_its_declared_size() {
        // 64 MiB of zeros compress to a few KiB; declared as 1 KiB.
        let zeros = vec![0u8; 64 << 20];
        let mut packed = compressed(&zeros, 1).unwrap_or_default();
        assert!(packed.len() < 64 << 10);
        packed[1..5].copy_from_slice(&1024u32.to_le_bytes());
        assert!(inflate(&packed, LIMIT).is_err());
        let mut huge = packed.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = inflate(&huge, LIMIT)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(err.contains("at most"), "{err}");
    }

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        let text = text_like(100 << 10);
        let mut packed = compressed(&text, 1).unwrap_or_default();
        assert_eq!(inflate(&packed, LIMIT).ok(), Some(text));
        packed.push(0);
        let err = inflate(&packed, LIMIT)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(err.contains("after its zstd frame"), "{err}");
        let garbage = [ZSTD_TAG, 16, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        assert!(inflate(&garbage, LIMIT).is_err());
        assert!(inflate(&[ZSTD_TAG, 1, 0], LIMIT).is_err());
    }
}
