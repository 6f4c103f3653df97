//! "Verified" for DNS: every listed server answers what the runbook expects.
//!
//! Servers are polled concurrently, with a backoff, until all of them agree or the time is up.
//! The report keeps, per server, the answer, TTL, SOA serial and time of the last look, which
//! is the evidence a run stores. When the time runs out with servers on different serials,
//! the report says which one lags and how long the zone's SOA timers let that last: the stale
//! secondary of the 2009 move, diagnosed instead of discovered.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hickory_proto::rr::{Name, RecordType as WireType};

use crate::error::{DnsError, humanize};
use crate::query::{Observation, Querier, Question, Soa, observation, soa_of};
use crate::records::{RecordType, canonical_input, describe_values, owner_name, wire, zone_name};

/// What the servers must answer. Every field that is `Some` must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectation {
    /// The exact set of values (canonical after [`verify_all`] parsed them).
    pub values: Option<Vec<String>>,
    /// The TTL.
    pub ttl: Option<u32>,
    /// The lowest acceptable SOA serial (the primary's serial after an update).
    pub min_serial: Option<u32>,
    /// Values the set must hold, among any others (after `dns.add`).
    pub includes: Option<Vec<String>>,
    /// Values the set must not hold (after `dns.remove`).
    pub excludes: Option<Vec<String>>,
}

/// How long and how often to poll.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// How long one query may take.
    pub query_timeout: Duration,
    /// Pause after the first round that found disagreement; it doubles each round.
    pub first_pause: Duration,
    /// The longest pause between rounds.
    pub max_pause: Duration,
    /// Queries in flight at once, per TCP connection and per UDP socket.
    pub concurrency: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            query_timeout: Duration::from_secs(2),
            first_pause: Duration::from_millis(200),
            max_pause: Duration::from_secs(5),
            concurrency: 256,
        }
    }
}

/// One record to verify, for [`verify_many`].
#[derive(Debug, Clone)]
pub struct RecordCheck {
    /// The zone.
    pub zone: String,
    /// The name, relative to the zone (or absolute).
    pub name: String,
    /// The record type.
    pub rtype: RecordType,
    /// What every server must answer.
    pub expect: Expectation,
}

/// The last look at one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVerdict {
    /// The server.
    pub server: SocketAddr,
    /// What it answered, if it answered.
    pub observation: Option<Observation>,
    /// Its SOA serial for the zone, if it answered that.
    pub serial: Option<u32>,
    /// Why it could not be asked, if it could not.
    pub error: Option<String>,
    /// Whether its answer meets the expectation.
    pub agrees: bool,
    /// When it was last asked.
    pub at: DateTime<Utc>,
}

/// Which server lags behind and for how long the zone's timers allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleDiagnosis {
    /// The newest serial known (served somewhere, or expected after the update).
    pub newest_serial: u32,
    /// Who serves it (none when only the expectation names it).
    pub newest_server: Option<SocketAddr>,
    /// Servers behind it, with the serial they serve (`None`: no answer).
    pub lagging: Vec<(SocketAddr, Option<u32>)>,
    /// The SOA timers of the newest copy of the zone, when known.
    pub timers: Option<Soa>,
}

impl fmt::Display for StaleDiagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reference = match self.newest_server {
            Some(server) => format!("{server} serves {}", self.newest_serial),
            None => format!("the primary's serial is {}", self.newest_serial),
        };
        for (index, (server, serial)) in self.lagging.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            match serial {
                Some(serial) => write!(f, "{server} lags: it serves serial {serial}, {reference}")?,
                None => write!(f, "{server} lags: it gave no SOA serial, {reference}")?,
            }
        }
        if let Some(soa) = self.timers {
            write!(
                f,
                ". Without NOTIFY a secondary checks its primary every {}s (refresh), every {}s after a failed check (retry), so it can serve stale data for up to {}s; one that cannot reach its primary keeps serving it for up to {}s (expire)",
                soa.refresh, soa.retry, soa.refresh, soa.expire
            )?;
        }
        Ok(())
    }
}

/// The outcome of verifying one record at every server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The zone (fully qualified).
    pub zone: String,
    /// The name (fully qualified).
    pub name: String,
    /// The record type.
    pub rtype: RecordType,
    /// The expectation, values in canonical form.
    pub expectation: Expectation,
    /// Whether every server agreed.
    pub verified: bool,
    /// Per server, in the order given.
    pub servers: Vec<ServerVerdict>,
    /// Rounds of queries made.
    pub rounds: u32,
    /// Time from the first query to the verdict.
    pub elapsed: Duration,
    /// Present when not verified and serials differ (or trail the expected serial).
    pub stale: Option<StaleDiagnosis>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = if self.verified {
            "verified"
        } else {
            "NOT verified"
        };
        writeln!(
            f,
            "{} {}: {outcome} after {} ({} rounds)",
            self.name,
            self.rtype,
            humanize(self.elapsed),
            self.rounds
        )?;
        for verdict in &self.servers {
            let mark = if verdict.agrees { "ok  " } else { "WAIT" };
            let serial = verdict
                .serial
                .map_or_else(|| "-".to_string(), |serial| serial.to_string());
            match (&verdict.observation, &verdict.error) {
                (Some(observation), _) => writeln!(
                    f,
                    "  {mark} {}  {}  TTL {}  serial {serial}  at {}",
                    verdict.server,
                    describe_values(&observation.values),
                    observation
                        .ttl
                        .map_or_else(|| "-".to_string(), |ttl| ttl.to_string()),
                    verdict.at.format("%H:%M:%S%.3f")
                )?,
                (None, Some(error)) => writeln!(f, "  {mark} {}  {error}", verdict.server)?,
                (None, None) => writeln!(f, "  {mark} {}  not asked", verdict.server)?,
            }
        }
        if let Some(stale) = &self.stale {
            writeln!(f, "  {stale}")?;
        }
        Ok(())
    }
}

/// Polls every server in `servers` until each answers `name`/`rtype` in `zone` as `expect`
/// says, or `options.timeout` passes. Only bad input is an `Err`; unreachable or disagreeing
/// servers are recorded in the report.
pub async fn verify_all(
    servers: &[SocketAddr],
    zone: &str,
    name: &str,
    rtype: RecordType,
    expect: Expectation,
    options: VerifyOptions,
) -> Result<VerifyReport, DnsError> {
    let check = RecordCheck {
        zone: zone.to_string(),
        name: name.to_string(),
        rtype,
        expect,
    };
    let mut reports = verify_many(servers, std::slice::from_ref(&check), options).await?;
    reports
        .pop()
        .ok_or_else(|| DnsError::Input("nothing to verify".into()))
}

struct Prepared {
    zone_index: usize,
    name: Name,
    rtype: RecordType,
    expect: Expectation,
}

/// Verifies many records at once with up to `options.concurrency` queries in flight; each
/// server's SOA is asked once per zone per round, not once per record.
pub async fn verify_many(
    servers: &[SocketAddr],
    checks: &[RecordCheck],
    options: VerifyOptions,
) -> Result<Vec<VerifyReport>, DnsError> {
    if servers.is_empty() {
        return Err(DnsError::Input("no server to verify against".into()));
    }
    let mut zones: Vec<Name> = Vec::new();
    let mut prepared = Vec::with_capacity(checks.len());
    for check in checks {
        let zone = zone_name(&check.zone)?;
        let zone_index = match zones.iter().position(|known| *known == zone) {
            Some(index) => index,
            None => {
                zones.push(zone.clone());
                zones.len() - 1
            }
        };
        let mut expect = check.expect.clone();
        for list in [
            &mut expect.values,
            &mut expect.includes,
            &mut expect.excludes,
        ]
        .into_iter()
        .flatten()
        {
            *list = canonical_input(check.rtype, list)?;
        }
        prepared.push(Prepared {
            zone_index,
            name: owner_name(&zone, &check.name)?,
            rtype: check.rtype,
            expect,
        });
    }

    let querier = Querier::new(options.query_timeout);
    let started = Instant::now();
    let deadline = started + options.timeout;
    let now = Utc::now();
    let mut verdicts: Vec<Vec<ServerVerdict>> = prepared
        .iter()
        .map(|_| {
            servers
                .iter()
                .map(|&server| ServerVerdict {
                    server,
                    observation: None,
                    serial: None,
                    error: None,
                    agrees: false,
                    at: now,
                })
                .collect()
        })
        .collect();
    let mut soas: HashMap<(usize, usize), Result<Soa, String>> = HashMap::new();
    let mut rounds = 0u32;
    let mut pause = options.first_pause;
    let mut finished_at: Vec<Option<Duration>> = vec![None; prepared.len()];

    loop {
        rounds += 1;
        let open: Vec<(usize, usize)> = verdicts
            .iter()
            .enumerate()
            .flat_map(|(check, row)| {
                row.iter()
                    .enumerate()
                    .filter(|(_, verdict)| !verdict.agrees)
                    .map(move |(server, _)| (check, server))
            })
            .collect();
        let mut zone_servers: Vec<(usize, usize)> = open
            .iter()
            .map(|&(check, server)| (prepared[check].zone_index, server))
            .collect();
        zone_servers.sort_unstable();
        zone_servers.dedup();

        let soa_questions = zone_servers.iter().map(|&(zone, server)| Question {
            server: servers[server],
            name: zones[zone].clone(),
            rtype: WireType::SOA,
            recursion_desired: false,
        });
        let record_questions = open.iter().map(|&(check, server)| Question {
            server: servers[server],
            name: prepared[check].name.clone(),
            rtype: wire(prepared[check].rtype),
            recursion_desired: false,
        });
        let questions: Vec<Question> = soa_questions.chain(record_questions).collect();
        let mut answers = querier
            .exchange_batch(questions, options.concurrency)
            .await
            .into_iter();
        for (&(zone, server), answer) in zone_servers.iter().zip(answers.by_ref()) {
            let soa = answer.and_then(|answer| soa_of(servers[server], &zones[zone], answer));
            soas.insert((zone, server), soa.map_err(|err| err.to_string()));
        }
        let observations = open.iter().zip(answers).map(|(&(check, server), answer)| {
            let item = &prepared[check];
            let observation = answer.and_then(|answer| {
                observation(
                    servers[server],
                    &zones[item.zone_index],
                    &item.name,
                    item.rtype,
                    answer,
                )
            });
            (check, server, observation)
        });
        for (check, server, result) in observations {
            let item = &prepared[check];
            let serial = match soas.get(&(item.zone_index, server)) {
                Some(Ok(soa)) => Some(soa.serial),
                _ => None,
            };
            let verdict = &mut verdicts[check][server];
            verdict.serial = serial;
            match result {
                Ok(observation) => {
                    verdict.agrees = meets(&observation, serial, &item.expect);
                    verdict.at = observation.at;
                    verdict.observation = Some(observation);
                    verdict.error = None;
                }
                Err(err) => {
                    verdict.agrees = false;
                    verdict.at = Utc::now();
                    verdict.error = Some(err.to_string());
                }
            }
        }
        for (check, row) in verdicts.iter().enumerate() {
            if finished_at[check].is_none() && row.iter().all(|verdict| verdict.agrees) {
                finished_at[check] = Some(started.elapsed());
            }
        }
        if finished_at.iter().all(Option::is_some) {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(options.max_pause);
    }

    let total = started.elapsed();
    Ok(prepared
        .into_iter()
        .zip(verdicts)
        .zip(finished_at)
        .map(|((item, servers_row), finished)| {
            let verified = finished.is_some();
            let stale = if verified {
                None
            } else {
                diagnose(&servers_row, item.zone_index, &soas, item.expect.min_serial)
            };
            VerifyReport {
                zone: zones[item.zone_index].to_string(),
                name: item.name.to_string(),
                rtype: item.rtype,
                expectation: item.expect,
                verified,
                servers: servers_row,
                rounds,
                elapsed: finished.unwrap_or(total),
                stale,
            }
        })
        .collect())
}

fn meets(observation: &Observation, serial: Option<u32>, expect: &Expectation) -> bool {
    let values_ok = expect
        .values
        .as_ref()
        .is_none_or(|values| *values == observation.values);
    let ttl_ok = expect.ttl.is_none_or(|ttl| observation.ttl == Some(ttl));
    let serial_ok = expect
        .min_serial
        .is_none_or(|min| serial.is_some_and(|serial| serial_at_least(serial, min)));
    let includes_ok = expect
        .includes
        .as_ref()
        .is_none_or(|values| values.iter().all(|v| observation.values.contains(v)));
    let excludes_ok = expect
        .excludes
        .as_ref()
        .is_none_or(|values| !values.iter().any(|v| observation.values.contains(v)));
    values_ok && ttl_ok && serial_ok && includes_ok && excludes_ok
}

/// RFC 1982 serial number arithmetic: is `serial` the same as or after `reference`?
fn serial_at_least(serial: u32, reference: u32) -> bool {
    serial == reference || serial.wrapping_sub(reference) < (1 << 31)
}

fn diagnose(
    row: &[ServerVerdict],
    zone_index: usize,
    soas: &HashMap<(usize, usize), Result<Soa, String>>,
    min_serial: Option<u32>,
) -> Option<StaleDiagnosis> {
    let served: Vec<(SocketAddr, Option<Soa>)> = row
        .iter()
        .enumerate()
        .map(|(index, verdict)| {
            let soa = match soas.get(&(zone_index, index)) {
                Some(Ok(soa)) => Some(*soa),
                _ => None,
            };
            (verdict.server, soa)
        })
        .collect();
    let newest = served
        .iter()
        .filter_map(|(server, soa)| soa.map(|soa| (*server, soa)))
        .reduce(|best, candidate| {
            if serial_at_least(best.1.serial, candidate.1.serial) {
                best
            } else {
                candidate
            }
        });
    let (mut newest_serial, mut newest_server, timers) = match newest {
        Some((server, soa)) => (soa.serial, Some(server), Some(soa)),
        None => (min_serial?, None, None),
    };
    if let Some(min) = min_serial
        && !serial_at_least(newest_serial, min)
    {
        newest_serial = min;
        newest_server = None;
    }
    let lagging: Vec<(SocketAddr, Option<u32>)> = served
        .iter()
        .filter(|(_, soa)| soa.is_none_or(|soa| !serial_at_least(soa.serial, newest_serial)))
        .map(|(server, soa)| (*server, soa.map(|soa| soa.serial)))
        .collect();
    if lagging.is_empty() {
        return None;
    }
    Some(StaleDiagnosis {
        newest_serial,
        newest_server,
        lagging,
        timers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_and_excludes_look_at_single_values_among_the_others() {
        let observation = Observation {
            server: "127.0.0.1:53".parse().unwrap(),
            name: "www.example.org.".into(),
            rtype: RecordType::A,
            values: vec!["192.0.2.1".into(), "192.0.2.7".into()],
            ttl: Some(60),
            authoritative: true,
            rcode: "NOERROR".into(),
            at: Utc::now(),
        };
        let expect = |includes: &[&str], excludes: &[&str]| Expectation {
            includes: Some(includes.iter().map(|v| v.to_string()).collect()),
            excludes: Some(excludes.iter().map(|v| v.to_string()).collect()),
            min_serial: Some(5),
            ..Expectation::default()
        };
        assert!(meets(
            &observation,
            Some(5),
            &expect(&["192.0.2.7"], &["192.0.2.9"])
        ));
        assert!(!meets(&observation, Some(5), &expect(&["192.0.2.9"], &[])));
        assert!(!meets(&observation, Some(5), &expect(&[], &["192.0.2.1"])));
        assert!(!meets(&observation, Some(4), &expect(&["192.0.2.7"], &[])));
    }

    #[test]
    fn serial_comparison_wraps_like_rfc_1982() {
        assert!(serial_at_least(5, 5));
        assert!(serial_at_least(6, 5));
        assert!(!serial_at_least(4, 5));
        assert!(serial_at_least(2, u32::MAX));
        assert!(!serial_at_least(u32::MAX, 2));
    }

    #[test]
    fn the_stale_diagnosis_names_the_laggard_and_the_timers() {
        let a: SocketAddr = "127.0.0.1:5301".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5302".parse().unwrap();
        let soa = |serial| Soa {
            serial,
            refresh: 3600,
            retry: 600,
            expire: 1_209_600,
            minimum: 300,
        };
        let row: Vec<ServerVerdict> = [a, b]
            .into_iter()
            .map(|server| ServerVerdict {
                server,
                observation: None,
                serial: None,
                error: None,
                agrees: false,
                at: Utc::now(),
            })
            .collect();
        let soas = HashMap::from([((0, 0), Ok(soa(7))), ((0, 1), Ok(soa(5)))]);
        let diagnosis = diagnose(&row, 0, &soas, Some(7)).unwrap();
        assert_eq!(
            diagnosis.to_string(),
            "127.0.0.1:5302 lags: it serves serial 5, 127.0.0.1:5301 serves 7. Without NOTIFY a secondary checks its primary every 3600s (refresh), every 600s after a failed check (retry), so it can serve stale data for up to 3600s; one that cannot reach its primary keeps serving it for up to 1209600s (expire)"
        );
        let agreeing = HashMap::from([((0, 0), Ok(soa(7))), ((0, 1), Ok(soa(7)))]);
        assert_eq!(diagnose(&row, 0, &agreeing, Some(7)), None);
    }
}
