//! Where a file lives (`Location`) and the connection to that place
//! (`Endpoint`): either this machine's file system directly, or an agent
//! speaking the protocol. Both answer the same requests.

use std::path::PathBuf;

use crate::agent::AgentClient;
use crate::blocks::{Want, WindowHashes};
use crate::error::{CopyError, ErrorKind};
use crate::files::FileSide;
use crate::protocol::{PatchOp, Request, Response, Role};
use crate::sqlite::TableChecksum;

/// A file on this machine or behind an agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// Any path on this machine.
    Local(PathBuf),
    /// A host path under a `via local ROOT` host's folder on this machine:
    /// mapped and confined exactly as an agent maps paths under its `--root`
    /// (`/srv/a` is `ROOT/srv/a`; nothing outside `ROOT`).
    Rooted { root: PathBuf, path: String },
    /// A path served by an agent: `command` is started and spoken to over
    /// its stdin/stdout. `path` is taken from the agent's root, absolute or
    /// not (`/srv/a` is `ROOT/srv/a`).
    Agent { command: Vec<String>, path: String },
}

impl Location {
    /// An agent reached through OpenSSH (`via ssh USER@HOST[:PORT]`): runs
    /// `remote_agent` (e.g. `cutover agent --stdio --root /`) on the host.
    /// ssh itself checks the link (`ServerAliveInterval`): a host that
    /// stops answering ends the connection after about 30 s, as the
    /// coordinator's idle timeout does for the agent behind it.
    pub fn ssh(
        user: &str,
        host: &str,
        port: Option<u16>,
        remote_agent: &str,
        path: &str,
    ) -> Location {
        let mut command = vec![
            "ssh".to_string(),
            "-o".to_string(),
            "BatchMode=yes".to_string(),
            "-o".to_string(),
            "ServerAliveInterval=10".to_string(),
            "-o".to_string(),
            "ServerAliveCountMax=3".to_string(),
        ];
        if let Some(port) = port {
            command.extend(["-p".to_string(), port.to_string()]);
        }
        command.extend([format!("{user}@{host}"), remote_agent.to_string()]);
        Location::Agent {
            command,
            path: path.to_string(),
        }
    }

    /// An agent started by a shell command line (`via agent "COMMAND"`) for
    /// the runbook host `host`: the shell's `$0` is the host's name, so the
    /// shell's own errors and cutover's messages ("agent on HOST stopped
    /// answering") name it.
    pub fn agent_shell(host: &str, command_line: &str, path: &str) -> Location {
        Location::Agent {
            command: vec![
                "sh".to_string(),
                "-c".to_string(),
                command_line.to_string(),
                host.to_string(),
            ],
            path: path.to_string(),
        }
    }
}

/// What the destination side found when a copy opened it.
#[derive(Debug, Clone, Copy)]
pub struct OpenedDest {
    /// The old destination's size, when there is one.
    pub basis_size: Option<u64>,
    /// A partial copy from an interrupted run is reused.
    pub resumed: bool,
    /// The old destination is patched in place instead of replaced.
    pub in_place: bool,
}

/// A connection to the place a file lives.
pub enum Endpoint {
    Local(FileSide),
    Agent(AgentClient),
}

impl Endpoint {
    /// Connects to a location; returns the endpoint and the path to ask it for.
    pub fn connect(location: &Location) -> Result<(Endpoint, String), CopyError> {
        match location {
            Location::Local(path) => {
                let path = path.to_str().ok_or_else(|| {
                    CopyError::new(
                        ErrorKind::InvalidInput,
                        format!("path {} is not UTF-8", path.display()),
                    )
                })?;
                Ok((Endpoint::Local(FileSide::unconfined()), path.to_string()))
            }
            Location::Rooted { root, path } => {
                Ok((Endpoint::Local(FileSide::confined(root)?), path.clone()))
            }
            Location::Agent { command, path } => {
                Ok((Endpoint::Agent(AgentClient::spawn(command)?), path.clone()))
            }
        }
    }

    /// Frame bytes written to and read from an agent (zero for local files).
    pub fn wire_bytes(&self) -> (u64, u64) {
        match self {
            Endpoint::Local(_) => (0, 0),
            Endpoint::Agent(agent) => (agent.bytes_out(), agent.bytes_in),
        }
    }

    /// The agent's process id, if it is a child process.
    pub fn agent_pid(&self) -> Option<u32> {
        match self {
            Endpoint::Local(_) => None,
            Endpoint::Agent(agent) => agent.pid(),
        }
    }

    fn call(&mut self, request: Request) -> Result<Response, CopyError> {
        match self {
            Endpoint::Local(side) => side.handle(request),
            Endpoint::Agent(agent) => agent.call(&request),
        }
    }

    fn unexpected(&self, response: &Response) -> CopyError {
        match self {
            Endpoint::Agent(agent) => agent.unexpected(response),
            Endpoint::Local(_) => CopyError::protocol("internal error: unexpected local answer"),
        }
    }

    /// Applies changes to the destination's temporary file; an agent's
    /// answer is checked at the next call or `flush`.
    pub fn patch(&mut self, ops: Vec<PatchOp>) -> Result<(), CopyError> {
        match self {
            Endpoint::Local(side) => side.handle(Request::Patch { ops }).map(|_| ()),
            Endpoint::Agent(agent) => agent.send(&Request::Patch { ops }),
        }
    }

    pub fn flush(&mut self) -> Result<(), CopyError> {
        match self {
            Endpoint::Local(_) => Ok(()),
            Endpoint::Agent(agent) => agent.flush(),
        }
    }

    pub fn open_source(&mut self, path: &str) -> Result<u64, CopyError> {
        match self.call(Request::OpenSource {
            path: path.to_string(),
        })? {
            Response::Opened { size } => Ok(size),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Opens the destination for a copy of `size` bytes (an SQLite database
    /// when `sqlite`): what the destination side found there.
    pub fn open_dest(
        &mut self,
        path: &str,
        size: u64,
        sqlite: bool,
    ) -> Result<OpenedDest, CopyError> {
        match self.call(Request::OpenDest {
            path: path.to_string(),
            size,
            sqlite,
        })? {
            Response::DestOpened {
                basis_size,
                resumed,
                in_place,
            } => Ok(OpenedDest {
                basis_size,
                resumed,
                in_place,
            }),
            other => Err(self.unexpected(&other)),
        }
    }

    pub fn hash(
        &mut self,
        role: Role,
        start: u64,
        end: u64,
        want: Want,
    ) -> Result<WindowHashes, CopyError> {
        match self.call(Request::Hash {
            role,
            start,
            end,
            want,
        })? {
            Response::Hashes(hashes) => Ok(hashes),
            other => Err(self.unexpected(&other)),
        }
    }

    fn data(&mut self, request: Request) -> Result<Vec<u8>, CopyError> {
        match self.call(request)? {
            Response::Data(data) => Ok(data),
            other => Err(self.unexpected(&other)),
        }
    }

    pub fn read(&mut self, ranges: Vec<(u64, u64)>) -> Result<Vec<u8>, CopyError> {
        self.data(Request::Read { ranges })
    }

    pub fn signature(&mut self, start: u64, end: u64) -> Result<Vec<u8>, CopyError> {
        self.data(Request::Signature { start, end })
    }

    pub fn delta(
        &mut self,
        signature: Vec<u8>,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, CopyError> {
        self.data(Request::Delta {
            signature,
            start,
            end,
        })
    }

    pub fn finish(&mut self, hash: [u8; 32]) -> Result<(), CopyError> {
        self.call(Request::Finish { hash }).map(|_| ())
    }

    /// Takes an SQLite snapshot beside `path`: the snapshot's path and the method.
    pub fn snapshot(&mut self, path: &str) -> Result<(String, String), CopyError> {
        match self.call(Request::Snapshot {
            path: path.to_string(),
        })? {
            Response::Snapshot { path, method } => Ok((path, method)),
            other => Err(self.unexpected(&other)),
        }
    }

    pub fn checksums(&mut self, path: &str) -> Result<Vec<TableChecksum>, CopyError> {
        match self.call(Request::Checksums {
            path: path.to_string(),
        })? {
            Response::Checksums(tables) => Ok(tables),
            other => Err(self.unexpected(&other)),
        }
    }

    pub fn remove_snapshot(&mut self, path: &str) -> Result<(), CopyError> {
        self.call(Request::Remove {
            path: path.to_string(),
        })
        .map(|_| ())
    }
}
