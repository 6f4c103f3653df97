//! What can keep the lab from being built, each saying what and where.

use std::path::PathBuf;

/// Why the lab could not be built, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The runbook asks for something the lab cannot build (a public address, a port 0, an
    /// `https` check, files on an ssh host...).
    #[error("{0}")]
    Unsupported(String),
    /// A file or folder could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A lab DNS server could not start.
    #[error("DNS: {0}")]
    Dns(#[from] cutover_dns::DnsError),
    /// A lab database could not be written.
    #[error("database {}: {source}", path.display())]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A listener could not bind its address.
    #[error("cannot listen on {address} for host {host}: {source}")]
    Listen {
        host: String,
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The background lab process misbehaved (did not start, did not stop, no lab there).
    #[error("{0}")]
    Process(String),
}

impl LabError {
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> LabError {
        LabError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }
}
