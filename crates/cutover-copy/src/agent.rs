//! Both ends of the agent protocol: `serve` (what `cutover agent --stdio`
//! runs) and `AgentClient` (the coordinator's side, talking to a child
//! process such as `ssh host cutover agent --stdio --root /srv`).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{CopyError, ErrorKind};
use crate::files::FileSide;
use crate::protocol::{FrameError, PROTOCOL_VERSION, Request, Response, read_frame, write_frame};

/// Bytes of the agent's standard error kept to explain its failure.
const STDERR_TAIL: usize = 2048;

/// Serves the protocol on this process's stdin/stdout for files under `root`.
pub fn serve_stdio(root: &Path) -> Result<(), CopyError> {
    // A file size limit (`ulimit -f`) must fail the write, not kill the agent.
    // SAFETY: setting a signal's disposition to "ignore" is async-signal-safe
    // and has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    serve(root, std::io::stdin().lock(), std::io::stdout().lock())
}

/// Serves the protocol on `input`/`output` until the coordinator closes it.
/// Returns an error when the handshake fails or the stream breaks.
pub fn serve(root: &Path, input: impl Read, output: impl Write) -> Result<(), CopyError> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut output = BufWriter::with_capacity(1 << 20, output);
    let side = FileSide::confined(root);
    let reply = |output: &mut BufWriter<_>, response: &Response| -> Result<(), CopyError> {
        write_frame(output, &response.encode())
            .and_then(|_| output.flush())
            .map_err(|e| {
                CopyError::new(
                    ErrorKind::AgentFailed,
                    format!("agent: writing to the coordinator: {e}"),
                )
            })
    };
    let Some(first) = next_request(&mut input)? else {
        return Ok(());
    };
    let mut side = match (Request::decode(&first), side) {
        (Ok(Request::Hello { version }), Ok(side)) if version == PROTOCOL_VERSION => {
            reply(
                &mut output,
                &Response::Hello {
                    version: PROTOCOL_VERSION,
                },
            )?;
            side
        }
        (Ok(Request::Hello { version }), _) if version != PROTOCOL_VERSION => {
            let err = CopyError::new(
                ErrorKind::VersionMismatch,
                format!(
                    "protocol version mismatch: the coordinator speaks version {version}, the agent speaks version {PROTOCOL_VERSION}; install the same cutover on both hosts"
                ),
            );
            reply(&mut output, &Response::Error(err.clone()))?;
            return Err(err);
        }
        (Ok(Request::Hello { .. }), Err(err)) => {
            reply(&mut output, &Response::Error(err.clone()))?;
            return Err(err);
        }
        (Ok(_), _) => {
            let err =
                CopyError::protocol("protocol error: the coordinator did not start with a hello");
            reply(&mut output, &Response::Error(err.clone()))?;
            return Err(err);
        }
        (Err(err), _) => {
            reply(&mut output, &Response::Error(err.clone()))?;
            return Err(err);
        }
    };
    while let Some(body) = next_request(&mut input)? {
        let response = match Request::decode(&body) {
            Ok(request) => side.handle(request).unwrap_or_else(Response::Error),
            Err(err) => {
                reply(&mut output, &Response::Error(err.clone()))?;
                return Err(err);
            }
        };
        reply(&mut output, &response)?;
    }
    Ok(())
}

fn next_request(input: &mut impl Read) -> Result<Option<Vec<u8>>, CopyError> {
    read_frame(input).map_err(|err| match err {
        FrameError::Io(e) => CopyError::new(ErrorKind::AgentFailed, format!("agent: reading from the coordinator: {e}")),
        FrameError::Garbage(len) => {
            CopyError::protocol(format!("protocol error: the coordinator sent a frame of {len} bytes; it does not speak this protocol"))
        }
    })
}

/// The coordinator's connection to one agent.
pub struct AgentClient {
    name: String,
    child: Option<Child>,
    input: BufWriter<Box<dyn Write + Send>>,
    output: BufReader<Box<dyn Read + Send>>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    pending: usize,
    /// Frame bytes written to the agent.
    pub bytes_out: u64,
    /// Frame bytes read from the agent.
    pub bytes_in: u64,
}

impl AgentClient {
    /// Starts `command` (program and arguments) and shakes hands with it.
    pub fn spawn(command: &[String]) -> Result<AgentClient, CopyError> {
        let name = command.join(" ");
        let (program, args) = command
            .split_first()
            .ok_or_else(|| CopyError::new(ErrorKind::InvalidInput, "the agent command is empty"))?;
        let mut child = Command::new(program)
            .args(args)
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
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let mut stderr = child.stderr.take().ok_or_else(missing)?;
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
        let mut client = AgentClient {
            name,
            child: Some(child),
            input: BufWriter::with_capacity(1 << 20, Box::new(stdin)),
            output: BufReader::with_capacity(1 << 20, Box::new(stdout)),
            stderr_tail,
            pending: 0,
            bytes_out: 0,
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
        let mut client = AgentClient {
            name: name.to_string(),
            child: None,
            input: BufWriter::new(writer),
            output: BufReader::new(reader),
            stderr_tail: Arc::new(Mutex::new(Vec::new())),
            pending: 0,
            bytes_out: 0,
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
        let body = request.encode();
        self.bytes_out +=
            write_frame(&mut self.input, &body).map_err(|e| self.broken(&e.to_string()))?;
        self.pending += 1;
        Ok(())
    }

    /// Waits for every answer to requests sent with `send`.
    pub fn flush(&mut self) -> Result<(), CopyError> {
        self.input
            .flush()
            .map_err(|e| self.broken(&e.to_string()))?;
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
        self.input
            .flush()
            .map_err(|e| self.broken(&e.to_string()))?;
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
        match read_frame(&mut self.output) {
            Ok(Some(body)) => {
                self.bytes_in += 4 + body.len() as u64;
                Response::decode(&body)
            }
            Ok(None) => Err(self.broken("it closed the connection")),
            Err(FrameError::Io(e)) => Err(self.broken(&e.to_string())),
            Err(FrameError::Garbage(_)) => Err(CopyError::protocol(format!(
                "protocol error: agent `{}` wrote something that is not the cutover protocol (is `cutover agent` the right program there?)",
                self.name
            ))),
        }
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
        };
        CopyError::protocol(format!(
            "protocol error: agent `{}` answered with an unexpected {what}",
            self.name
        ))
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
        let _ = self.input.flush();
        // Closing stdin tells the agent to exit; wait a bounded time for it.
        self.input = BufWriter::new(Box::new(std::io::sink()));
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
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
