//! Both ends of the agent protocol: `serve` (what `cutover agent --stdio`
//! runs) and `AgentClient` (the coordinator's side, talking to a child
//! process such as `ssh host cutover agent --stdio --root /srv`).

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::process::{Pid, Signal};

use crate::compress::{LinkMeter, MIN_BODY, Packer, Policy};
use crate::error::{CopyError, ErrorKind};
use crate::files::FileSide;
use crate::protocol::{
    FrameError, PROTOCOL_VERSION, Reach, Request, Response, read_answer, read_frame, write_frame,
};

/// Bytes of the agent's standard error kept to explain its failure.
const STDERR_TAIL: usize = 2048;

/// How long the coordinator waits for an agent that neither answers nor
/// takes data before it gives up on it, unless `CUTOVER_AGENT_IDLE_TIMEOUT`
/// says otherwise (seconds, `30` or `30s`; `0` waits for ever).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The variable that overrides [`DEFAULT_IDLE_TIMEOUT`].
pub const IDLE_TIMEOUT_VAR: &str = "CUTOVER_AGENT_IDLE_TIMEOUT";

/// While one request keeps it busy this long, the agent sends a heartbeat
/// (an empty frame) so the coordinator knows it is alive: hashing or
/// checking a large image can take minutes without an answer.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// How long a process group gets between `SIGTERM` and `SIGKILL`.
pub const KILL_GRACE: Duration = Duration::from_millis(500);

/// The environment a process started for a step gets: `PATH`, `HOME`,
/// `LANG`, `LC_ALL` and every `LC_*`, `TERM` (those that are set), with
/// `ssh_agent` also `SSH_AUTH_SOCK`, then the variables in `named` that are
/// set. Nothing else of the coordinator's environment (where the secrets
/// of `env:` keys live) is handed on: clear the child's environment and
/// set exactly these.
pub fn child_env(ssh_agent: bool, named: &[String]) -> Vec<(OsString, OsString)> {
    let mut keep: Vec<(OsString, OsString)> = Vec::new();
    let mut add = |name: OsString, value: OsString| {
        if !keep.iter().any(|(n, _)| *n == name) {
            keep.push((name, value));
        }
    };
    for (name, value) in std::env::vars_os() {
        let wanted = match name.to_str() {
            Some("PATH" | "HOME" | "LANG" | "LC_ALL" | "TERM") => true,
            Some("SSH_AUTH_SOCK") => ssh_agent,
            Some(other) => other.starts_with("LC_"),
            None => false,
        };
        if wanted {
            add(name, value);
        }
    }
    for name in named {
        if let Some(value) = std::env::var_os(name) {
            add(OsString::from(name), value);
        }
    }
    keep
}

/// A signal for a whole process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSignal {
    Terminate,
    Kill,
}

/// Sends `signal` to every process of the group `pgid` (a child started
/// with `process_group(0)` leads a group whose id is its pid). Refuses the
/// ids that would name this process's own group or every process (0, 1,
/// and anything that is not a positive `pid_t`).
pub fn signal_group(pgid: u32, signal: GroupSignal) -> io::Result<()> {
    let pgid = i32::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process group id"))?;
    let signal = match signal {
        GroupSignal::Terminate => Signal::TERM,
        GroupSignal::Kill => Signal::KILL,
    };
    Ok(rustix::process::kill_process_group(pgid, signal)?)
}

/// Kills the group a child leads: `SIGTERM`, then after [`KILL_GRACE`] (or
/// as soon as the child is gone) `SIGKILL` for whatever is left of the
/// group. Waits at most about `KILL_GRACE` plus one poll.
fn kill_group(child: &mut Child) {
    let pgid = child.id();
    if signal_group(pgid, GroupSignal::Terminate).is_err() {
        let _ = child.kill();
    }
    let deadline = Instant::now() + KILL_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    // The group may outlive its leader (its children); it is gone when
    // this fails with ESRCH.
    let _ = signal_group(pgid, GroupSignal::Kill);
    let _ = child.kill();
}

/// The idle timeout for agents: [`IDLE_TIMEOUT_VAR`] or the default;
/// `None` waits for ever.
pub fn idle_timeout() -> Option<Duration> {
    let Ok(text) = std::env::var(IDLE_TIMEOUT_VAR) else {
        return Some(DEFAULT_IDLE_TIMEOUT);
    };
    let digits = text.trim().trim_end_matches('s');
    match digits.parse::<f64>() {
        Ok(0.0) => None,
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => {
            Some(Duration::from_secs_f64(secs))
        }
        _ => Some(DEFAULT_IDLE_TIMEOUT),
    }
}

/// Marks the error of a pipe the agent left idle too long.
#[derive(Debug)]
struct Idle;

impl std::fmt::Display for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the agent stopped answering")
    }
}

impl std::error::Error for Idle {}

fn is_idle(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<Idle>())
}

/// Our end of a pipe to a child, non-blocking, whose reads and writes fail
/// with an [`Idle`] error when the child neither sends nor takes a byte for
/// `idle`.
struct IdlePipe<T> {
    inner: T,
    idle: Option<Duration>,
}

impl<T: AsFd> IdlePipe<T> {
    fn new(inner: T, idle: Option<Duration>) -> io::Result<IdlePipe<T>> {
        // O_NONBLOCK is set on our end's own open file description only;
        // the child's end of the pipe stays blocking.
        let flags = rustix::fs::fcntl_getfl(&inner)?;
        rustix::fs::fcntl_setfl(&inner, flags | OFlags::NONBLOCK)?;
        Ok(IdlePipe { inner, idle })
    }

    /// Waits until the pipe is ready for `events`, at most `idle`.
    fn wait(&self, events: PollFlags) -> io::Result<()> {
        wait_ready(self.inner.as_fd(), events, self.idle)
    }
}

fn wait_ready(fd: BorrowedFd<'_>, events: PollFlags, idle: Option<Duration>) -> io::Result<()> {
    let deadline = idle.map(|idle| Instant::now() + idle);
    loop {
        let timeout = match deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, Idle));
                }
                // Round up so a short remainder does not spin.
                let left = left + Duration::from_millis(1);
                Some(Timespec {
                    tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                    tv_nsec: i64::from(left.subsec_nanos()),
                })
            }
        };
        let mut fds = [PollFd::from_borrowed_fd(fd, events)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) | Err(Errno::INTR) => {}
            Ok(_) => return Ok(()),
            Err(err) => return Err(err.into()),
        }
    }
}

impl<T: Read + AsFd> Read for IdlePipe<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(PollFlags::IN)?,
                other => return other,
            }
        }
    }
}

impl<T: Write + AsFd> Write for IdlePipe<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.inner.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(PollFlags::OUT)?,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Serves the protocol on this process's stdin/stdout for files under `root`.
pub fn serve_stdio(root: &Path) -> Result<(), CopyError> {
    // A file size limit (`ulimit -f`) must fail the write, not kill the agent.
    // SAFETY: signal(2) with SIG_IGN (rustix has no safe way to set a
    // disposition) installs no handler, so no code of ours can run
    // asynchronously and no memory is shared with one; it only tells the
    // kernel to drop SIGXFSZ, after which an oversized write fails with
    // EFBIG. Its result (the old disposition) is not needed.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    serve(root, std::io::stdin(), std::io::stdout())
}

/// Serves the protocol on `input`/`output` until the coordinator closes it.
/// Returns an error when the handshake fails or the stream breaks. While a
/// request takes long (hashing a large image), a heartbeat (an empty frame)
/// goes out every [`HEARTBEAT_EVERY`], so the coordinator can tell a busy
/// agent from one that stopped. After a `Tunnel` request the stream relays
/// the tunnel's connection until the target closes it ([`relay`]).
pub fn serve(
    root: &Path,
    input: impl Read + Send + 'static,
    output: impl Write + Send,
) -> Result<(), CopyError> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let output = Mutex::new(BufWriter::with_capacity(1 << 20, output));
    // Since when the agent, busy with a request, last said anything.
    let busy: Mutex<Option<Instant>> = Mutex::new(None);
    let done = AtomicBool::new(false);
    let tunnel = thread::scope(|scope| {
        let beat = scope.spawn(|| heartbeat(&output, &busy, &done));
        let result = serve_requests(root, &mut input, &output, &busy);
        done.store(true, Ordering::SeqCst);
        beat.thread().unpark();
        result
    })?;
    match tunnel {
        None => Ok(()),
        Some(stream) => {
            let output = output
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            relay(stream, input, output)
        }
    }
}

/// How long a tunnel's target may keep sending once the coordinator has
/// closed its side.
const RELAY_LINGER: Duration = Duration::from_secs(5);

/// Relays a tunnel: the coordinator's bytes to the target on a thread of
/// its own, the target's back here. Returns when the target closes (or,
/// after the coordinator closed its side, stays silent for
/// [`RELAY_LINGER`]), so the agent's exit tells the coordinator.
fn relay(
    stream: TcpStream,
    mut input: BufReader<impl Read + Send + 'static>,
    mut output: BufWriter<impl Write>,
) -> Result<(), CopyError> {
    let failed =
        |e: io::Error| CopyError::new(ErrorKind::AgentFailed, format!("agent: tunnel: {e}"));
    let mut upstream = stream.try_clone().map_err(failed)?;
    // Detached: it may block on the coordinator's stream after the target
    // is done; the agent's exit ends it.
    thread::spawn(move || {
        let _ = io::copy(&mut input, &mut upstream);
        let _ = upstream.shutdown(Shutdown::Write);
        let _ = upstream.set_read_timeout(Some(RELAY_LINGER));
    });
    let mut downstream = stream;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = match downstream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Reset by the target, or silent past the linger.
            Err(_) => break,
        };
        output
            .write_all(&buffer[..n])
            .and_then(|()| output.flush())
            .map_err(failed)?;
    }
    output.flush().map_err(failed)
}

/// At most this many connects of one `Connect` request are in flight at
/// once: a group of unreachable targets costs about one timeout, not one each.
const CONCURRENT_CONNECTS: usize = 64;

/// The longest connect timeout an agent accepts.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(600);

/// A TCP connect from this machine to `host:port` (a name is resolved
/// here), trying each address in turn, all within `timeout`.
fn connect_here(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let timeout = timeout.min(MAX_CONNECT_TIMEOUT);
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => return Err(format!("{host} does not resolve here: {e}")),
    };
    let deadline = Instant::now() + timeout;
    let mut why = format!("{host} has no address here");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                why = format!("{addr}: no answer within {}", describe_timeout(timeout));
            }
            Err(e) => why = format!("{addr}: {e}"),
        }
    }
    Err(why)
}

fn describe_timeout(timeout: Duration) -> String {
    if timeout.subsec_millis() == 0 {
        format!("{}s", timeout.as_secs())
    } else {
        format!("{}ms", timeout.as_millis())
    }
}

/// What a connect came to, with both ends' addresses when it was accepted.
fn reach(host: &str, port: u16, timeout: Duration) -> Reach {
    match connect_here(host, port, timeout) {
        Ok(stream) => {
            let addr =
                |a: io::Result<SocketAddr>| a.map_or_else(|e| e.to_string(), |a| a.to_string());
            Reach::Open {
                local: addr(stream.local_addr()),
                peer: addr(stream.peer_addr()),
            }
        }
        Err(error) => Reach::Failed { error },
    }
}

/// Connects to every target, [`CONCURRENT_CONNECTS`] at a time.
fn reach_all(targets: &[(String, u16)], timeout: Duration) -> Vec<Reach> {
    let mut outcomes = Vec::with_capacity(targets.len());
    for chunk in targets.chunks(CONCURRENT_CONNECTS) {
        thread::scope(|scope| {
            let connects: Vec<_> = chunk
                .iter()
                .map(|(host, port)| scope.spawn(move || reach(host, *port, timeout)))
                .collect();
            for connect in connects {
                outcomes.push(connect.join().unwrap_or_else(|_| Reach::Failed {
                    error: "the connect thread failed".to_string(),
                }));
            }
        });
    }
    outcomes
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends a heartbeat whenever a request has kept the agent quiet for
/// [`HEARTBEAT_EVERY`]; ends with `done`.
fn heartbeat(
    output: &Mutex<BufWriter<impl Write>>,
    busy: &Mutex<Option<Instant>>,
    done: &AtomicBool,
) {
    while !done.load(Ordering::SeqCst) {
        thread::park_timeout(Duration::from_millis(250));
        {
            // Decided under the output's lock, which an answer holds until
            // it has cleared `busy`: no beat follows an answer (after a
            // `Tunneled` answer the stream is the tunnel's).
            let mut output = lock(output);
            let due = lock(busy).is_some_and(|since| since.elapsed() >= HEARTBEAT_EVERY);
            if !due || done.load(Ordering::SeqCst) {
                continue;
            }
            // A broken pipe is the request loop's to report.
            let _ = output.write_all(&[0; 4]).and_then(|()| output.flush());
        }
        if let Some(since) = lock(busy).as_mut() {
            *since = Instant::now();
        }
    }
}

/// Answers requests until the coordinator closes the stream (`None`) or a
/// `Tunnel` connect succeeds (its connection, to relay).
fn serve_requests(
    root: &Path,
    input: &mut impl Read,
    output: &Mutex<BufWriter<impl Write>>,
    busy: &Mutex<Option<Instant>>,
) -> Result<Option<TcpStream>, CopyError> {
    let side = FileSide::confined(root);
    let link = Arc::new(LinkMeter::default());
    let packer = RefCell::new(Packer::new(Policy::from_env(), Arc::clone(&link)));
    let reply = |response: &Response| -> Result<(), CopyError> {
        // Compressed before the output is locked: heartbeats go on meanwhile.
        let body = packer.borrow_mut().pack(response.encode());
        let mut output = lock(output);
        let started = Instant::now();
        let written = write_frame(&mut *output, &body)
            .and_then(|n| output.flush().map(|()| n))
            .map(|n| {
                let took = started.elapsed();
                link.record(n, took);
                packer.borrow_mut().handed_over(took);
            })
            .map_err(|e| {
                CopyError::new(
                    ErrorKind::AgentFailed,
                    format!("agent: writing to the coordinator: {e}"),
                )
            });
        *lock(busy) = None;
        written
    };
    let Some(first) = next_request(input)? else {
        return Ok(None);
    };
    let mut side = match (Request::decode(&first), side) {
        (Ok(Request::Hello { version }), Ok(side)) if version == PROTOCOL_VERSION => {
            reply(&Response::Hello {
                version: PROTOCOL_VERSION,
            })?;
            side
        }
        (Ok(Request::Hello { version }), _) if version != PROTOCOL_VERSION => {
            let err = CopyError::new(
                ErrorKind::VersionMismatch,
                format!(
                    "protocol version mismatch: the coordinator speaks version {version}, the agent speaks version {PROTOCOL_VERSION}; install the same cutover on both hosts"
                ),
            );
            reply(&Response::Error(err.clone()))?;
            return Err(err);
        }
        (Ok(Request::Hello { .. }), Err(err)) => {
            reply(&Response::Error(err.clone()))?;
            return Err(err);
        }
        (Ok(_), _) => {
            let err =
                CopyError::protocol("protocol error: the coordinator did not start with a hello");
            reply(&Response::Error(err.clone()))?;
            return Err(err);
        }
        (Err(err), _) => {
            reply(&Response::Error(err.clone()))?;
            return Err(err);
        }
    };
    while let Some(body) = next_request(input)? {
        *lock(busy) = Some(Instant::now());
        let response = match Request::decode(&body) {
            Ok(Request::Connect {
                targets,
                timeout_ms,
            }) => Response::Connected(reach_all(&targets, Duration::from_millis(timeout_ms))),
            Ok(Request::Tunnel {
                host,
                port,
                timeout_ms,
            }) => match connect_here(&host, port, Duration::from_millis(timeout_ms)) {
                Ok(stream) => {
                    let addr = |a: io::Result<SocketAddr>| {
                        a.map_or_else(|e| e.to_string(), |a| a.to_string())
                    };
                    reply(&Response::Tunneled {
                        local: addr(stream.local_addr()),
                        peer: addr(stream.peer_addr()),
                    })?;
                    return Ok(Some(stream));
                }
                Err(error) => Response::Error(CopyError::new(ErrorKind::Unreachable, error)),
            },
            Ok(request) => side.handle(request).unwrap_or_else(Response::Error),
            Err(err) => {
                reply(&Response::Error(err.clone()))?;
                return Err(err);
            }
        };
        reply(&response)?;
    }
    Ok(None)
}

fn next_request(input: &mut impl Read) -> Result<Option<Vec<u8>>, CopyError> {
    read_frame(input).map_err(|err| match err {
        FrameError::Io(e) => CopyError::new(ErrorKind::AgentFailed, format!("agent: reading from the coordinator: {e}")),
        FrameError::Garbage(len) => {
            CopyError::protocol(format!("protocol error: the coordinator sent a frame of {len} bytes; it does not speak this protocol"))
        }
    })
}

/// A TCP connection made by an agent on its host, relayed through it.
pub struct Tunnel {
    /// The coordinator's end: what is written here reaches the target;
    /// what the target sends comes back. Closing it ends the agent.
    pub stream: UnixStream,
    /// The connection's address on the agent's host.
    pub local: String,
    /// The target's address, as the agent's host reached it.
    pub peer: String,
}

fn millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)
}

/// The coordinator's connection to one agent.
pub struct AgentClient {
    name: String,
    /// Where the agent runs, for messages ("agent on HOST ...").
    place: String,
    child: Option<Child>,
    idle: Option<Duration>,
    /// Frames and compresses what goes to the agent.
    input: WireOut,
    output: BufReader<Box<dyn Read + Send>>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    pending: usize,
    /// Frame bytes read from the agent.
    pub bytes_in: u64,
}

/// Frames gathered for the writer are handed over once they hold this much.
const HAND_OVER: usize = 1 << 20;

/// What the coordinator hands to its packer thread.
enum Out {
    /// A message body to frame: compressed first when large and worth it.
    Message(Vec<u8>),
    /// Bytes for the stream as they are (a tunnel's, after its answer).
    Raw(Vec<u8>),
    /// Hand everything gathered over to the writer now.
    Flush,
}

/// The coordinator's writing end of an agent's stream, three stages on
/// three threads: the caller encodes a message and hands it to a packer
/// thread, which compresses it ([`Packer`], with zstd's workers) and hands
/// the frame to a writer thread, which writes it to the stream. So the
/// caller reads and hashes the next batch while this one is compressed,
/// and compresses the next while the link takes this one. Each stage holds
/// at most one message waiting for the next (bounded memory); handing a
/// frame to the writer waits for the link, and that wait is what the packer
/// learns the link from.
struct WireOut {
    to_packer: Option<SyncSender<Out>>,
    packer: Option<JoinHandle<io::Result<()>>>,
    /// Frame bytes handed to the writer (compressed where they were).
    written: Arc<AtomicU64>,
    /// Frame bytes of the messages not packed yet, at their plain size.
    unpacked: Arc<AtomicU64>,
}

impl WireOut {
    fn new(out: Box<dyn Write + Send>, policy: Policy) -> io::Result<WireOut> {
        let link = Arc::new(LinkMeter::default());
        let mut writer = Writer::new(out, Arc::clone(&link))?;
        let mut packer = Packer::pipelined(policy, link);
        let written = Arc::new(AtomicU64::new(0));
        let unpacked = Arc::new(AtomicU64::new(0));
        let (counted, packed) = (Arc::clone(&written), Arc::clone(&unpacked));
        let (to_packer, messages) = mpsc::sync_channel::<Out>(1);
        let packing = thread::Builder::new()
            .name("agent-packer".to_string())
            .spawn(move || {
                let result = (|| {
                    for out in messages {
                        match out {
                            Out::Message(plain) => {
                                let large = plain.len() >= MIN_BODY;
                                let plain_bytes = 4 + plain.len() as u64;
                                let body = packer.pack(plain);
                                let (bytes, waited) = writer.frame(body, large)?;
                                if large {
                                    packer.handed_over(waited);
                                }
                                // Counted before it stops counting as
                                // unpacked: a reader may see it twice, never not at all.
                                counted.fetch_add(bytes, Ordering::SeqCst);
                                packed.fetch_sub(plain_bytes, Ordering::SeqCst);
                            }
                            Out::Raw(bytes) => writer.raw(&bytes)?,
                            Out::Flush => {
                                writer.hand_over()?;
                            }
                        }
                    }
                    Ok(())
                })();
                writer.close();
                result
            })?;
        Ok(WireOut {
            to_packer: Some(to_packer),
            packer: Some(packing),
            written,
            unpacked,
        })
    }

    fn hand(&mut self, out: Out) -> io::Result<()> {
        let sent = match &self.to_packer {
            Some(to_packer) => to_packer.send(out).is_ok(),
            None => false,
        };
        if sent { Ok(()) } else { Err(self.stopped()) }
    }

    /// Queues one message body for framing.
    fn message(&mut self, body: Vec<u8>) -> io::Result<()> {
        self.unpacked
            .fetch_add(4 + body.len() as u64, Ordering::SeqCst);
        self.hand(Out::Message(body))
    }

    /// Frame bytes of every message queued so far: as compressed once
    /// packed, at their plain size until then (an upper bound, exact once
    /// the packer has caught up).
    fn bytes(&self) -> u64 {
        self.written.load(Ordering::SeqCst) + self.unpacked.load(Ordering::SeqCst)
    }

    /// Why the packer stopped (its writer's error, the first time it is asked).
    fn stopped(&mut self) -> io::Error {
        self.to_packer = None;
        match self.packer.take().map(JoinHandle::join) {
            Some(Ok(Err(err))) => err,
            _ => io::Error::new(io::ErrorKind::BrokenPipe, "the agent's input is closed"),
        }
    }

    /// Writes what was queued, then closes the stream (the agent's stdin).
    /// Bounded by the pipe's idle timeout, as any write is.
    fn close(&mut self) {
        self.to_packer = None;
        if let Some(packer) = self.packer.take() {
            let _ = packer.join();
        }
    }
}

impl Write for WireOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hand(Out::Raw(buf.to_vec()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hand(Out::Flush)
    }
}

impl Drop for WireOut {
    fn drop(&mut self) {
        self.close();
    }
}

/// The last stage of [`WireOut`]: small frames gather in a buffer handed
/// (at a flush, a MiB at a time, and before each large frame) to a thread
/// that writes them; a large frame goes to it as it is, after its length.
struct Writer {
    buffer: Vec<u8>,
    to_writer: Option<SyncSender<Vec<u8>>>,
    writer: Option<JoinHandle<io::Result<()>>>,
}

impl Writer {
    fn new(mut out: Box<dyn Write + Send>, link: Arc<LinkMeter>) -> io::Result<Writer> {
        // Room for a large frame's length and the frame itself.
        let (to_writer, chunks) = mpsc::sync_channel::<Vec<u8>>(2);
        let writer = thread::Builder::new()
            .name("agent-writer".to_string())
            .spawn(move || {
                for chunk in chunks {
                    let started = Instant::now();
                    out.write_all(&chunk)?;
                    out.flush()?;
                    link.record(chunk.len() as u64, started.elapsed());
                }
                Ok(())
            })?;
        Ok(Writer {
            buffer: Vec::with_capacity(HAND_OVER),
            to_writer: Some(to_writer),
            writer: Some(writer),
        })
    }

    /// Queues one frame: a large one is handed over now, after what is
    /// gathered (without copying it); a small one joins the buffer, handed
    /// over once full. Returns the frame's bytes and how long the
    /// handover waited.
    fn frame(&mut self, body: Vec<u8>, large: bool) -> io::Result<(u64, Duration)> {
        let len = u32::try_from(body.len()).map_err(|_| io::Error::other("frame too large"))?;
        let bytes = 4 + u64::from(len);
        if large {
            self.buffer.extend_from_slice(&len.to_le_bytes());
            let waited = self.hand_over()?;
            return Ok((bytes, waited + self.send(body)?));
        }
        write_frame(&mut self.buffer, &body)?;
        let waited = if self.buffer.len() >= HAND_OVER {
            self.hand_over()?
        } else {
            Duration::ZERO
        };
        Ok((bytes, waited))
    }

    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= HAND_OVER {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Hands the buffer to the writer: how long that waited.
    fn hand_over(&mut self) -> io::Result<Duration> {
        if self.buffer.is_empty() {
            return Ok(Duration::ZERO);
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(HAND_OVER));
        self.send(chunk)
    }

    fn send(&mut self, chunk: Vec<u8>) -> io::Result<Duration> {
        let started = Instant::now();
        let sent = match &self.to_writer {
            Some(to_writer) => to_writer.send(chunk).is_ok(),
            None => false,
        };
        if sent {
            Ok(started.elapsed())
        } else {
            Err(self.stopped())
        }
    }

    /// Why the writer stopped (its write error, the first time it is asked).
    fn stopped(&mut self) -> io::Error {
        self.to_writer = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(err))) => err,
            _ => io::Error::new(io::ErrorKind::BrokenPipe, "the agent's input is closed"),
        }
    }

    /// Writes what is handed over, then closes the stream.
    fn close(&mut self) {
        let _ = self.hand_over();
        self.to_writer = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Where an agent command runs, for messages: the word after `sh -c LINE`
/// (its `$0`, which [`crate::Location::agent_shell`] sets to the host's
/// name), the `USER@HOST` of an ssh command, or the command itself.
fn place_of(command: &[String]) -> String {
    match command {
        [sh, c, _, name, ..] if sh == "sh" && c == "-c" => name.clone(),
        [ssh, rest @ ..] if ssh == "ssh" => rest
            .iter()
            .find(|a| a.contains('@') && !a.starts_with('-'))
            .cloned()
            .unwrap_or_else(|| command.join(" ")),
        _ => format!("`{}`", command.join(" ")),
    }
}

impl AgentClient {
    /// Starts `command` (program and arguments) and shakes hands with it.
    /// The agent gets a scrubbed environment ([`child_env`], with
    /// `SSH_AUTH_SOCK`: agent commands are usually ssh) and its own process
    /// group (a Ctrl-C at the terminal does not reach it; a stalled or
    /// abandoned agent is killed with its whole group). Reads and writes
    /// give up after [`idle_timeout`] without a byte either way.
    pub fn spawn(command: &[String]) -> Result<AgentClient, CopyError> {
        AgentClient::spawn_with(command, idle_timeout())
    }

    /// [`AgentClient::spawn`] with an explicit idle timeout (`None`: none).
    pub fn spawn_with(
        command: &[String],
        idle: Option<Duration>,
    ) -> Result<AgentClient, CopyError> {
        let name = command.join(" ");
        let place = place_of(command);
        let (program, args) = command
            .split_first()
            .ok_or_else(|| CopyError::new(ErrorKind::InvalidInput, "the agent command is empty"))?;
        let mut child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(child_env(true, &[]))
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                CopyError::new(
                    ErrorKind::AgentFailed,
                    format!("starting agent `{name}`: {e}"),
                )
            })?;
        let missing = || CopyError::new(ErrorKind::AgentFailed, format!("agent `{name}`: no pipe"));
        let (stdin, stdout, mut stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => {
                    kill_group(&mut child);
                    let _ = child.wait();
                    return Err(missing());
                }
            };
        let pipes = IdlePipe::<ChildStdin>::new(stdin, idle)
            .and_then(|i| IdlePipe::<ChildStdout>::new(stdout, idle).map(|o| (i, o)));
        let (stdin, stdout) = match pipes {
            Ok(pipes) => pipes,
            Err(e) => {
                kill_group(&mut child);
                let _ = child.wait();
                return Err(CopyError::new(
                    ErrorKind::AgentFailed,
                    format!("agent `{name}`: cannot set up its pipes: {e}"),
                ));
            }
        };
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = Arc::clone(&stderr_tail);
        thread::spawn(move || {
            let mut buffer = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                if let Ok(mut tail) = tail.lock() {
                    tail.extend_from_slice(&buffer[..n]);
                    let excess = tail.len().saturating_sub(STDERR_TAIL);
                    tail.drain(..excess);
                }
            }
        });
        let input = match WireOut::new(Box::new(stdin), Policy::from_env()) {
            Ok(input) => input,
            Err(e) => {
                kill_group(&mut child);
                let _ = child.wait();
                return Err(CopyError::new(
                    ErrorKind::AgentFailed,
                    format!("agent `{name}`: cannot start its writer: {e}"),
                ));
            }
        };
        let mut client = AgentClient {
            name,
            place,
            child: Some(child),
            idle,
            input,
            output: BufReader::with_capacity(1 << 20, Box::new(stdout)),
            stderr_tail,
            pending: 0,
            bytes_in: 0,
        };
        client.handshake()?;
        Ok(client)
    }

    /// Shakes hands over an existing stream (a peer that is not a child).
    pub fn over(
        name: &str,
        reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
    ) -> Result<AgentClient, CopyError> {
        let input = WireOut::new(writer, Policy::from_env()).map_err(|e| {
            CopyError::new(
                ErrorKind::AgentFailed,
                format!("`{name}`: cannot start its writer: {e}"),
            )
        })?;
        let mut client = AgentClient {
            name: name.to_string(),
            place: format!("`{name}`"),
            child: None,
            idle: None,
            input,
            output: BufReader::new(reader),
            stderr_tail: Arc::new(Mutex::new(Vec::new())),
            pending: 0,
            bytes_in: 0,
        };
        client.handshake()?;
        Ok(client)
    }

    /// The agent's process id, when it is a child process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn handshake(&mut self) -> Result<(), CopyError> {
        match self.call(&Request::Hello {
            version: PROTOCOL_VERSION,
        })? {
            Response::Hello { version } if version == PROTOCOL_VERSION => Ok(()),
            Response::Hello { version } => Err(CopyError::new(
                ErrorKind::VersionMismatch,
                format!(
                    "protocol version mismatch: agent `{}` speaks version {version}, this coordinator speaks version {PROTOCOL_VERSION}; install the same cutover on both hosts",
                    self.name
                ),
            )),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Sends a request whose answer is only checked later (by `call` or
    /// `flush`), so the agent works while the coordinator does too.
    pub fn send(&mut self, request: &Request) -> Result<(), CopyError> {
        self.input
            .message(request.encode())
            .map_err(|e| self.io_failed(&e))?;
        self.pending += 1;
        Ok(())
    }

    /// Frame bytes sent to the agent (compressed where they were); a
    /// message still waiting to be compressed counts at its plain size.
    pub fn bytes_out(&self) -> u64 {
        self.input.bytes()
    }

    /// Waits for every answer to requests sent with `send`.
    pub fn flush(&mut self) -> Result<(), CopyError> {
        self.input.flush().map_err(|e| self.io_failed(&e))?;
        while self.pending > 0 {
            self.pending -= 1;
            match self.receive()? {
                Response::Ok => {}
                Response::Error(err) => return Err(err),
                other => return Err(self.unexpected(&other)),
            }
        }
        Ok(())
    }

    /// Sends a request and returns its answer (an `Error` answer becomes `Err`).
    pub fn call(&mut self, request: &Request) -> Result<Response, CopyError> {
        self.send(request)?;
        self.pending -= 1;
        let pending_acks = self.pending;
        self.pending = 0;
        self.input.flush().map_err(|e| self.io_failed(&e))?;
        let mut first_error = None;
        for _ in 0..pending_acks {
            match self.receive()? {
                Response::Ok => {}
                Response::Error(err) => {
                    first_error.get_or_insert(err);
                }
                other => return Err(self.unexpected(&other)),
            }
        }
        let response = self.receive()?;
        if let Some(err) = first_error {
            return Err(err);
        }
        match response {
            Response::Error(err) => Err(err),
            other => Ok(other),
        }
    }

    fn receive(&mut self) -> Result<Response, CopyError> {
        match read_answer(&mut self.output) {
            Ok(Some(body)) => {
                self.bytes_in += 4 + body.len() as u64;
                Response::decode(&body)
            }
            Ok(None) => Err(self.broken("it closed the connection")),
            Err(FrameError::Io(e)) => Err(self.io_failed(&e)),
            Err(FrameError::Garbage(_)) => Err(CopyError::protocol(format!(
                "protocol error: agent `{}` wrote something that is not the cutover protocol (is `cutover agent` the right program there?)",
                self.name
            ))),
        }
    }

    /// TCP connects from the agent's host to each target, all at once,
    /// each within `timeout`: one outcome per target, in order.
    pub fn connect(
        &mut self,
        targets: Vec<(String, u16)>,
        timeout: Duration,
    ) -> Result<Vec<Reach>, CopyError> {
        let count = targets.len();
        match self.call(&Request::Connect {
            targets,
            timeout_ms: millis(timeout),
        })? {
            Response::Connected(outcomes) if outcomes.len() == count => Ok(outcomes),
            other => Err(self.unexpected(&other)),
        }
    }

    /// A TCP connection from the agent's host to `host:port` (a name is
    /// resolved there), made within `timeout`: the agent relays its bytes
    /// over this stream from now on. A connect that fails is an
    /// [`ErrorKind::Unreachable`] error naming the target and the cause.
    pub fn tunnel(mut self, host: &str, port: u16, timeout: Duration) -> Result<Tunnel, CopyError> {
        let (local, peer) = match self.call(&Request::Tunnel {
            host: host.to_string(),
            port,
            timeout_ms: millis(timeout),
        })? {
            Response::Tunneled { local, peer } => (local, peer),
            other => return Err(self.unexpected(&other)),
        };
        let failed = |e: io::Error| {
            CopyError::new(ErrorKind::AgentFailed, format!("setting up a tunnel: {e}"))
        };
        let (ours, theirs) = UnixStream::pair().map_err(failed)?;
        let mut down = theirs.try_clone().map_err(failed)?;
        let mut up = theirs;
        let mut from_agent =
            std::mem::replace(&mut self.output, BufReader::new(Box::new(io::empty())));
        // The agent's answers and then the target's bytes; the agent's
        // exit (or silence past the idle timeout) ends them.
        thread::spawn(move || {
            let _ = io::copy(&mut from_agent, &mut down);
            let _ = down.shutdown(Shutdown::Write);
        });
        // The caller's bytes to the agent; when the caller closes its end,
        // dropping the client closes the agent's stdin and reaps it
        // (bounded, see `Drop`).
        thread::spawn(move || {
            let mut buffer = vec![0u8; 64 << 10];
            loop {
                match up.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        if self
                            .input
                            .write_all(&buffer[..n])
                            .and_then(|()| self.input.flush())
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            drop(self);
        });
        Ok(Tunnel {
            stream: ours,
            local,
            peer,
        })
    }

    pub(crate) fn unexpected(&self, response: &Response) -> CopyError {
        let what = match response {
            Response::Error(err) => return err.clone(),
            Response::Hello { .. } => "hello",
            Response::Ok => "ok",
            Response::Opened { .. } => "opened",
            Response::DestOpened { .. } => "destination opened",
            Response::Hashes(_) => "hashes",
            Response::Data(_) => "data",
            Response::Snapshot { .. } => "snapshot",
            Response::Checksums(_) => "checksums",
            Response::Connected(_) => "connect outcome",
            Response::Tunneled { .. } => "tunnel",
        };
        CopyError::protocol(format!(
            "protocol error: agent `{}` answered with an unexpected {what}",
            self.name
        ))
    }

    /// The error for a failed read or write: a stalled agent (killed here,
    /// with its process group) or a broken connection.
    fn io_failed(&mut self, err: &io::Error) -> CopyError {
        if !is_idle(err) {
            return self.broken(&err.to_string());
        }
        if let Some(child) = &mut self.child {
            kill_group(child);
        }
        let secs = self.idle.map_or(0, |d| d.as_secs().max(1));
        CopyError::new(
            ErrorKind::AgentFailed,
            format!(
                "agent on {} stopped answering (no data for {secs} s); it was stopped",
                self.place
            ),
        )
    }

    /// The error for a broken connection: the agent's exit status and the
    /// end of its standard error say why.
    fn broken(&mut self, detail: &str) -> CopyError {
        let mut status = String::new();
        if let Some(child) = &mut self.child {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match child.try_wait() {
                    Ok(Some(exit)) => {
                        status = format!(" ({exit})");
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
        // Give the stderr reader a moment to collect the last words.
        thread::sleep(Duration::from_millis(20));
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| String::from_utf8_lossy(&t).trim().to_string())
            .unwrap_or_default();
        let said = if tail.is_empty() {
            String::new()
        } else {
            format!("; it said: {tail}")
        };
        CopyError::new(
            ErrorKind::AgentFailed,
            format!(
                "agent `{}` stopped unexpectedly{status}: {detail}{said}",
                self.name
            ),
        )
    }
}

impl Drop for AgentClient {
    fn drop(&mut self) {
        // Closing stdin tells the agent to exit; wait a bounded time for it.
        self.input.close();
        if self.child.is_none() {
            // A peer that is not a child (in this process, say) is waited
            // for by its answers: what was sent has been applied once they
            // are in, as a child's exit says.
            while self.pending > 0 {
                self.pending -= 1;
                if self.receive().is_err() {
                    break;
                }
            }
        }
        if let Some(child) = &mut self.child {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    _ => break,
                }
            }
            kill_group(child);
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_environment_keeps_only_the_basics_and_the_named() {
        let env = child_env(
            false,
            &[
                "CARGO_PKG_NAME".to_string(),
                "NOT_SET_ANYWHERE_X".to_string(),
            ],
        );
        let names: Vec<String> = env
            .iter()
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect();
        for name in &names {
            assert!(
                ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "CARGO_PKG_NAME"]
                    .contains(&name.as_str())
                    || name.starts_with("LC_"),
                "{name} was handed on"
            );
        }
        assert!(names.iter().any(|n| n == "CARGO_PKG_NAME"));
        assert!(!names.iter().any(|n| n == "NOT_SET_ANYWHERE_X"));
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn signal_group_refuses_ids_that_name_more_than_one_child_group() {
        for id in [0, 1, u32::MAX] {
            assert!(signal_group(id, GroupSignal::Kill).is_err(), "{id}");
        }
    }

    #[test]
    fn places_name_the_host() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(place_of(&v(&["sh", "-c", "cutover agent", "far"])), "far");
        assert_eq!(
            place_of(&v(&[
                "ssh",
                "-o",
                "BatchMode=yes",
                "root@10.0.0.1",
                "cutover agent"
            ])),
            "root@10.0.0.1"
        );
        assert_eq!(place_of(&v(&["sh", "-c", "x"])), "`sh -c x`");
    }

    #[test]
    fn answers_skip_heartbeats() {
        let mut stream = vec![0u8; 8];
        write_frame(&mut stream, b"abc")
            .map(|_| ())
            .unwrap_or_default();
        let mut input = &stream[..];
        assert_eq!(
            read_answer(&mut input).ok().flatten(),
            Some(b"abc".to_vec())
        );
        assert!(matches!(read_answer(&mut input), Ok(None)));
    }

    #[test]
    fn a_busy_agent_sends_heartbeats() {
        let output = Mutex::new(BufWriter::new(Vec::new()));
        let busy = Mutex::new(Instant::now().checked_sub(HEARTBEAT_EVERY * 2));
        let done = AtomicBool::new(false);
        thread::scope(|scope| {
            let beat = scope.spawn(|| heartbeat(&output, &busy, &done));
            for _ in 0..100 {
                if !lock(&output).get_ref().is_empty() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            done.store(true, Ordering::SeqCst);
            beat.thread().unpark();
        });
        let sent = output
            .into_inner()
            .map(|w| w.into_inner().ok())
            .ok()
            .flatten();
        assert_eq!(sent.as_deref(), Some(&[0u8, 0, 0, 0][..]));
    }

    #[test]
    fn a_silent_agent_is_given_up_on_and_killed() {
        let started = Instant::now();
        let command = ["sh", "-c", "exec sleep 30", "quiet-host"].map(String::from);
        let err = match AgentClient::spawn_with(&command, Some(Duration::from_millis(300))) {
            Ok(_) => panic!("a silent agent shook hands"),
            Err(err) => err,
        };
        assert!(
            err.message
                .contains("agent on quiet-host stopped answering"),
            "{}",
            err.message
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn idle_timeouts_are_read_from_the_environment_format() {
        // Only the default is checked here: the variable is process-wide.
        if std::env::var_os(IDLE_TIMEOUT_VAR).is_none() {
            assert_eq!(idle_timeout(), Some(DEFAULT_IDLE_TIMEOUT));
        }
    }
}
