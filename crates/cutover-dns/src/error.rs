//! One error type for the crate, whose messages are what a coordinator reads at 3 a.m.:
//! each names the server, zone or file at fault and, where it helps, the likely cause.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong talking to DNS servers or serving zones.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A name, type or value given by the caller could not be understood.
    #[error("invalid input: {0}")]
    Input(String),

    /// A TSIG key could not be loaded.
    #[error("TSIG key {source_desc}: {message}")]
    Key {
        /// Where the key was looked for (`env:VAR` or a path).
        source_desc: String,
        /// What is wrong with it.
        message: String,
    },

    /// A zone master file could not be read or parsed.
    #[error("zone file {}:{line}:{column}: {message}", path.display())]
    ZoneFile {
        /// The file.
        path: PathBuf,
        /// 1-based line of the fault.
        line: usize,
        /// 1-based column of the fault.
        column: usize,
        /// What is wrong.
        message: String,
    },

    /// The server did not answer in time.
    #[error("no answer from {server} within {}", humanize(*timeout))]
    Timeout {
        /// The silent server.
        server: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },

    /// The network failed talking to a server (refused connection, unreachable, ...).
    #[error("cannot talk to {server}: {message}")]
    Network {
        /// The server.
        server: SocketAddr,
        /// The underlying failure.
        message: String,
    },

    /// The update's prerequisite failed: the record is not what the runbook expects.
    #[error(
        "{record} at {server}: record is not what the runbook expects: observed {observed}, expected {expected}; nothing was changed"
    )]
    PrerequisiteFailed {
        /// The server that refused.
        server: SocketAddr,
        /// Fully qualified owner name and type (`wiki.maemo.org. A`).
        record: String,
        /// What the server serves now (or "no such record").
        observed: String,
        /// What the runbook expected.
        expected: String,
    },

    /// The server rejected the TSIG signature (or sent a reply the client could not verify).
    #[error("TSIG authentication failed at {server} (wrong key or algorithm?): {detail}")]
    TsigFailed {
        /// The server.
        server: SocketAddr,
        /// What the server or client reported.
        detail: String,
    },

    /// The server refused the request (policy, unsigned update, ...).
    #[error("{server} refused the {operation} for zone {zone}{hint}")]
    Refused {
        /// The server.
        server: SocketAddr,
        /// "update" or "query".
        operation: &'static str,
        /// The zone.
        zone: String,
        /// A hint at the likely cause, starting with "; " or empty.
        hint: String,
    },

    /// The server is not authoritative for the zone (NOTAUTH, or an answer without AA).
    #[error("{server} is not authoritative for {zone}")]
    NotAuthoritative {
        /// The server.
        server: SocketAddr,
        /// The zone.
        zone: String,
    },

    /// A name is outside the zone it was given for (NOTZONE).
    #[error("{name} is not inside zone {zone} (as {server} sees it)")]
    NotInZone {
        /// The server.
        server: SocketAddr,
        /// The name.
        name: String,
        /// The zone.
        zone: String,
    },

    /// Any other error response code.
    #[error("{server} answered {rcode} to the {operation} for {subject}")]
    Rcode {
        /// The server.
        server: SocketAddr,
        /// "update" or "query".
        operation: &'static str,
        /// Name or zone concerned.
        subject: String,
        /// The response code's name.
        rcode: String,
    },

    /// Serving zones failed (bind, journal, load).
    #[error("dns server: {0}")]
    Serve(String),

    /// File system or socket failure (the cause is part of the message, not a separate source,
    /// so that it is shown once).
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        error: std::io::Error,
    },
}

impl DnsError {
    pub(crate) fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            error,
        }
    }
}

/// Shortest readable rendering of a duration: `250ms`, `3s`, `1.5s`.
pub(crate) fn humanize(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_millis(250)), "250ms");
        assert_eq!(humanize(Duration::from_secs(3)), "3s");
        assert_eq!(humanize(Duration::from_millis(1500)), "1.5s");
    }
}
