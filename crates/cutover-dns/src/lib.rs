//! DNS plumbing for cutover: RFC 2136 updates with TSIG, per-server verification queries and
//! the embedded authoritative server.
//!
//! This crate knows nothing of runbooks or the engine; step kinds adapt it. The main pieces:
//! - [`Updater`]: compare-and-swap updates and TTL changes at a zone's primary, TSIG-signed
//!   with a [`TsigKey`] loaded from the environment or a file.
//! - [`query`], [`soa`], [`live_ns`]: one question to one server, no cache.
//! - [`verify_all`] / [`verify_many`]: poll every server until all agree, with a
//!   [`VerifyReport`] as evidence and a [`StaleDiagnosis`] when a secondary lags.
//! - [`cache_expiry`]: how long the resolvers clients use may still serve an old answer
//!   (through hickory-resolver).
//! - [`serve`] / [`serve_with`] / [`serve_secondary`]: the authoritative server of
//!   `cutover dns serve`: a hidden primary (NOTIFY, IXFR, AXFR of any size) or a lagging copy.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cutover_dns::DnsError> {
//! use std::time::Duration;
//! use cutover_dns::{Expectation, RecordType, TsigKey, Updater, VerifyOptions, verify_all};
//!
//! let key = TsigKey::from_env("MAEMO_TSIG", Some("maemo-update"), None)?;
//! let primary = "10.0.0.6:53".parse().unwrap();
//! let updater = Updater::new(primary, Some(key), Duration::from_secs(3));
//! updater
//!     .compare_and_swap("maemo.org", "wiki", RecordType::A, &["188.117.59.202"], &["80.248.164.42"], 300)
//!     .await?;
//! let expect = Expectation { values: Some(vec!["80.248.164.42".into()]), ..Expectation::default() };
//! let report = verify_all(&[primary], "maemo.org", "wiki", RecordType::A, expect, VerifyOptions::default()).await?;
//! assert!(report.verified, "{report}");
//! # Ok(()) }
//! ```

mod caches;
mod error;
mod notify;
mod primary;
mod query;
mod records;
mod server;
mod tsig;
mod update;
mod verify;
mod zonefile;

pub use caches::{CacheExpiry, CachedAnswer, cache_expiry};
pub use error::DnsError;
pub use notify::{NotifyEvent, NotifyTargets};
pub use query::{NameServer, Observation, Soa, live_ns, query, soa};
pub use records::{RecordType, canonical_input};
pub use server::{
    LoadedFrom, SecondaryConfig, ServeConfig, ServeOptions, ServedZone, ServerHandle, ZoneSource,
    serve, serve_secondary, serve_with,
};
pub use tsig::{TsigAlgorithm, TsigKey};
pub use update::{TtlChange, Updater};
pub use verify::{
    Expectation, RecordCheck, ServerVerdict, StaleDiagnosis, VerifyOptions, VerifyReport,
    verify_all, verify_many,
};
pub use zonefile::{ZoneRecords, load_zone_file, parse_zone_text};
