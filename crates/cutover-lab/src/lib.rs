//! The lab: the world a runbook needs, built for real on this machine, so every step kind can
//! be run and verified without mocks.
//!
//! From a runbook alone the lab works out a [`Blueprint`] and builds it:
//! - for each zone, an authoritative primary serving a zone file generated from what the
//!   runbook's DNS steps expect (each record with the old value its `dns.switch` replaces and
//!   the TTL its `dns.ttl` says it had, `was`), accepting updates signed with the runbook's
//!   key; and a secondary for each other `verify` server that sees the primary's changes only
//!   after a lag, like the stale secondaries of 2009;
//! - the zones' TSIG keys: read from the key file the runbook names, or created there;
//! - for each host, a TCP listener for every port the runbook checks open or sends HTTP to
//!   (HTTP answers name the host); ports checked closed stay closed;
//! - each host's folder (`via local DIR`) with the sparse images and SQLite databases its copy
//!   and sync steps read;
//! - for each PostgreSQL or MariaDB server a `db.sync` names, a real server at the host's
//!   address with the runbook's logins, its source databases filled and written to until the
//!   freeze step ([`databases`]).
//!
//! The runbook's addresses must be loopback; they only say which is which. A lab started with
//! a [`Network`] ([`Network::establish`]) takes addresses of its own instead: in network
//! namespaces it makes, linked by shaped veth pairs, with agents for the hosts whose files are
//! copied ([`network`]), or in a free loopback block; [`rewrite_sources`] gives the copy of the
//! runbook that names them. Where everything is goes into a [`Manifest`], written as
//! `lab.json` in the lab folder.
//!
//! ```no_run
//! # async fn demo(runbook: cutover_lang::Runbook) -> Result<(), cutover_lab::LabError> {
//! use std::path::Path;
//! use cutover_lab::{Lab, LabOptions};
//!
//! let lab = Lab::start(&runbook, Path::new("/tmp/lab"), LabOptions::default()).await?;
//! println!("{}", lab.manifest().describe());
//! // ... run the runbook against it ...
//! lab.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! [`background`] runs a lab as a detached process for `cutover lab up` / `down`; [`relay`]
//! is what a lab host's `via agent` line runs.

pub mod background;
mod blueprint;
pub mod databases;
mod error;
mod files;
mod keys;
mod lab;
mod listen;
mod netns;
pub mod network;
mod process;
pub mod relay;
mod rewrite;
mod zonefile;

pub use blueprint::{
    Blueprint, DEFAULT_FILE_SIZE, DEFAULT_TTL, DbServerBlueprint, FileBlueprint, HostBlueprint,
    KeyBlueprint, MAX_FILE_SIZE, PrimaryBlueprint, RecordBlueprint, SecondaryBlueprint,
    SeedBlueprint, ZoneBlueprint,
};
pub use error::LabError;
pub use keys::KeyInfo;
pub use lab::{
    DnsServerInfo, FileInfo, HostInfo, INTERNAL_DIR, Lab, LabHandle, LabOptions, MANIFEST_FILE,
    Manifest, ServedZoneInfo,
};
pub use listen::body_for;
pub use network::{Network, NetworkMode, NetworkRequest};
pub use rewrite::{replace_addresses, rewrite_sources};
