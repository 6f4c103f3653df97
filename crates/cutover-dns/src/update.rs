//! RFC 2136 updates to a zone's primary, TSIG-signed, as compare-and-swap.
//!
//! A change of a whole RRset carries the prerequisite "this RRset holds exactly these values"
//! (RFC 2136 §2.4.2), so a record that is not what the runbook expects is left untouched and the
//! caller learns what is there instead. Lowering a TTL is the same swap with the same values.
//! Adding or removing single values of a set ([`Updater::add_values`],
//! [`Updater::remove_values`]) leaves the set's other values alone, whoever manages them.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::{DnsHandle, NetError};
use hickory_proto::op::{DnsRequest, Message, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordSet, RecordType as WireType};

use crate::error::DnsError;
use crate::query::Querier;
use crate::records::{
    RecordType, canonical_values, describe_values, owner_name, parse_values, rcode_name, wire,
    zone_name,
};
use crate::tsig::TsigKey;

/// What a TTL change found and did, kept as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlChange {
    /// The TTL served before the change.
    pub previous_ttl: u32,
    /// The TTL now set.
    pub new_ttl: u32,
    /// The record's values (unchanged).
    pub values: Vec<String>,
}

/// Sends updates to one primary server.
#[derive(Debug, Clone)]
pub struct Updater {
    primary: SocketAddr,
    key: Option<TsigKey>,
    timeout: Duration,
}

impl Updater {
    /// An updater for `primary`, signing with `key` when given.
    pub fn new(primary: SocketAddr, key: Option<TsigKey>, timeout: Duration) -> Self {
        Self {
            primary,
            key,
            timeout,
        }
    }

    /// The primary this updater talks to.
    pub fn primary(&self) -> SocketAddr {
        self.primary
    }

    /// Replaces the RRset `name`/`rtype` in `zone` by `new_values` with `ttl`, only if it
    /// holds exactly `old_values` now. A record that differs is refused with what was observed,
    /// and nothing changes.
    pub async fn compare_and_swap<S: AsRef<str>, T: AsRef<str>>(
        &self,
        zone: &str,
        name: &str,
        rtype: RecordType,
        old_values: &[S],
        new_values: &[T],
        ttl: u32,
    ) -> Result<(), DnsError> {
        let zone = zone_name(zone)?;
        let owner = owner_name(&zone, name)?;
        if old_values.is_empty() || new_values.is_empty() {
            return Err(DnsError::Input(format!(
                "{owner} {rtype}: a swap needs the old and the new values"
            )));
        }
        let old = parse_values(rtype, old_values)?;
        let new = parse_values(rtype, new_values)?;
        let expected = canonical_values(&old);
        let change = Change::Swap {
            current: record_set(&owner, rtype, 0, old),
            replacement: record_set(&owner, rtype, ttl, new),
        };
        self.send(&zone, &owner, rtype, change, &expected).await
    }

    /// Adds `values` to the RRset `name`/`rtype` in `zone` (creating it), at `ttl`; values it
    /// holds already and the set's other values stay as they are.
    pub async fn add_values<S: AsRef<str>>(
        &self,
        zone: &str,
        name: &str,
        rtype: RecordType,
        values: &[S],
        ttl: u32,
    ) -> Result<(), DnsError> {
        let (zone, owner, data) = self.single_values(zone, name, rtype, values)?;
        let change = Change::Add(record_set(&owner, rtype, ttl, data));
        self.send(&zone, &owner, rtype, change, &[]).await
    }

    /// Removes `values` from the RRset `name`/`rtype` in `zone`; the set's other values stay.
    pub async fn remove_values<S: AsRef<str>>(
        &self,
        zone: &str,
        name: &str,
        rtype: RecordType,
        values: &[S],
    ) -> Result<(), DnsError> {
        let (zone, owner, data) = self.single_values(zone, name, rtype, values)?;
        let change = Change::Remove(record_set(&owner, rtype, 0, data));
        self.send(&zone, &owner, rtype, change, &[]).await
    }

    fn single_values<S: AsRef<str>>(
        &self,
        zone: &str,
        name: &str,
        rtype: RecordType,
        values: &[S],
    ) -> Result<(Name, Name, Vec<RData>), DnsError> {
        let zone = zone_name(zone)?;
        let owner = owner_name(&zone, name)?;
        if values.is_empty() {
            return Err(DnsError::Input(format!("{owner} {rtype}: no value given")));
        }
        let data = parse_values(rtype, values)?;
        Ok((zone, owner, data))
    }

    /// Sets the TTL of the RRset `name`/`rtype` in `zone`, keeping its values: a swap of the
    /// values served now with the same values at the new TTL.
    pub async fn set_ttl(
        &self,
        zone: &str,
        name: &str,
        rtype: RecordType,
        ttl: u32,
    ) -> Result<TtlChange, DnsError> {
        let zone = zone_name(zone)?;
        let owner = owner_name(&zone, name)?;
        let current = Querier::new(self.timeout)
            .observe(self.primary, &zone, &owner, rtype)
            .await?;
        let Some(previous_ttl) = current.ttl else {
            return Err(DnsError::PrerequisiteFailed {
                server: self.primary,
                record: format!("{owner} {rtype}"),
                observed: "no such record".into(),
                expected: "an existing record".into(),
            });
        };
        let values = parse_values(rtype, &current.values)?;
        let change = Change::Swap {
            current: record_set(&owner, rtype, 0, values.clone()),
            replacement: record_set(&owner, rtype, ttl, values),
        };
        self.send(&zone, &owner, rtype, change, &current.values)
            .await?;
        Ok(TtlChange {
            previous_ttl,
            new_ttl: ttl,
            values: current.values,
        })
    }

    /// Proves the key before anything changes: a TSIG-signed UPDATE for
    /// `zone` whose only content is the prerequisite "the zone's SOA exists"
    /// (RFC 2136 §2.4.1) and which updates nothing, so it has no side effect
    /// — and, unlike a query, every server verifies its signature. A server
    /// that refuses the signature answers with a TSIG error (or an answer
    /// whose signature does not verify): [`DnsError::TsigFailed`]; one that
    /// does not let the key update the zone: [`DnsError::Refused`].
    pub async fn verify_key(&self, zone: &str) -> Result<(), DnsError> {
        let zone = zone_name(zone)?;
        let mut question = Query::new();
        question
            .set_name(zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(WireType::SOA);
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        message.add_zone(question);
        let mut soa_exists = Record::update0(zone.clone(), 0, WireType::SOA);
        soa_exists.dns_class = DNSClass::ANY;
        message.add_pre_requisite(soa_exists);
        let signer = self.key.as_ref().map(TsigKey::signer).transpose()?;
        let signed = signer.is_some();
        let stream = UdpClientStream::builder(self.primary, TokioRuntimeProvider::new())
            .with_timeout(Some(self.timeout))
            .with_signer(signer)
            .build();
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        let background = tokio::spawn(background);
        let sent = tokio::time::timeout(self.timeout + Duration::from_millis(100), async {
            let mut responses = client.send(DnsRequest::from(message));
            match responses.next().await {
                Some(response) => response,
                None => Err(NetError::Timeout),
            }
        })
        .await;
        drop(client);
        background.abort();
        let response = match sent {
            Err(_) | Ok(Err(NetError::Timeout)) => {
                return Err(DnsError::Timeout {
                    server: self.primary,
                    timeout: self.timeout,
                });
            }
            Ok(Err(err)) => return Err(self.map_net_error(err, signed)),
            Ok(Ok(response)) => response,
        };
        match response.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::BADSIG | ResponseCode::BADKEY | ResponseCode::BADTIME => {
                Err(DnsError::TsigFailed {
                    server: self.primary,
                    detail: rcode_name(response.metadata.response_code),
                })
            }
            ResponseCode::NotAuth if signed && key_refused(&response) => {
                Err(DnsError::TsigFailed {
                    server: self.primary,
                    detail: "NOTAUTH".into(),
                })
            }
            ResponseCode::NotAuth => Err(DnsError::NotAuthoritative {
                server: self.primary,
                zone: zone.to_string(),
            }),
            ResponseCode::Refused => Err(DnsError::Refused {
                server: self.primary,
                operation: "update",
                zone: zone.to_string(),
                hint: "; is this key allowed to update the zone?".into(),
            }),
            code => Err(DnsError::Rcode {
                server: self.primary,
                operation: "signed check of the key",
                subject: format!("{zone} SOA"),
                rcode: rcode_name(code),
            }),
        }
    }

    /// Sends one change; `expected` is what a failed prerequisite is reported against.
    async fn send(
        &self,
        zone: &Name,
        owner: &Name,
        rtype: RecordType,
        change: Change,
        expected: &[String],
    ) -> Result<(), DnsError> {
        // An update for a zone the server does not serve would be answered in ways that read
        // like key trouble; ask first, unsigned, whether it is authoritative at all.
        Querier::new(self.timeout).soa(self.primary, zone).await?;

        let signer = self.key.as_ref().map(TsigKey::signer).transpose()?;
        let signed = signer.is_some();
        let stream = UdpClientStream::builder(self.primary, TokioRuntimeProvider::new())
            .with_timeout(Some(self.timeout))
            .with_signer(signer)
            .build();
        let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        let background = tokio::spawn(background);
        let origin = zone.clone();
        let request = match change {
            Change::Swap {
                current,
                replacement,
            } => client.compare_and_swap(current, replacement, origin),
            Change::Add(set) => client.append(set, origin, false),
            Change::Remove(set) => client.delete_by_rdata(set, origin),
        };
        let sent = tokio::time::timeout(self.timeout + Duration::from_millis(100), request).await;
        drop(client);
        background.abort();

        let response = match sent {
            Err(_) | Ok(Err(NetError::Timeout)) => {
                return Err(DnsError::Timeout {
                    server: self.primary,
                    timeout: self.timeout,
                });
            }
            Ok(Err(err)) => return Err(self.map_net_error(err, signed)),
            Ok(Ok(response)) => response,
        };
        match response.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::NXRRSet
            | ResponseCode::YXRRSet
            | ResponseCode::NXDomain
            | ResponseCode::YXDomain => {
                let observed = match Querier::new(self.timeout)
                    .observe(self.primary, zone, owner, rtype)
                    .await
                {
                    Ok(observation) => match observation.ttl {
                        Some(ttl) => {
                            format!("{} (TTL {ttl})", describe_values(&observation.values))
                        }
                        None => describe_values(&observation.values),
                    },
                    Err(err) => format!("unknown ({err})"),
                };
                Err(DnsError::PrerequisiteFailed {
                    server: self.primary,
                    record: format!("{owner} {rtype}"),
                    observed,
                    expected: describe_values(expected),
                })
            }
            ResponseCode::Refused => Err(DnsError::Refused {
                server: self.primary,
                operation: "update",
                zone: zone.to_string(),
                hint: if signed {
                    "; is this key allowed to update the zone?".into()
                } else {
                    "; no TSIG key was given, and the server accepts only signed updates".into()
                },
            }),
            ResponseCode::BADSIG | ResponseCode::BADKEY | ResponseCode::BADTIME => {
                Err(DnsError::TsigFailed {
                    server: self.primary,
                    detail: rcode_name(response.metadata.response_code),
                })
            }
            ResponseCode::NotAuth if signed && key_refused(&response) => {
                Err(DnsError::TsigFailed {
                    server: self.primary,
                    detail: "NOTAUTH".into(),
                })
            }
            // The server has just answered for the zone authoritatively: a NOTAUTH to the
            // update is its access control (Knot answers so), not a zone it does not serve.
            ResponseCode::NotAuth => Err(DnsError::Refused {
                server: self.primary,
                operation: "update",
                zone: zone.to_string(),
                hint: if signed {
                    "; is this key allowed to update the zone?".into()
                } else {
                    "; no TSIG key was given, and the server accepts only signed updates".into()
                },
            }),
            ResponseCode::NotZone => Err(DnsError::NotInZone {
                server: self.primary,
                name: owner.to_string(),
                zone: zone.to_string(),
            }),
            code => Err(DnsError::Rcode {
                server: self.primary,
                operation: "update",
                subject: format!("{owner} {rtype}"),
                rcode: rcode_name(code),
            }),
        }
    }

    fn map_net_error(&self, err: NetError, signed: bool) -> DnsError {
        match err {
            NetError::Io(io) => DnsError::Network {
                server: self.primary,
                message: io.to_string(),
            },
            // A signed exchange whose answer cannot be verified (BIND's BADSIG reply carries an
            // empty MAC, which hickory reports as "truncated HMACs") is a key problem; the
            // library's own wording says nothing a coordinator can act on.
            _ if signed => DnsError::TsigFailed {
                server: self.primary,
                detail: "the server's answer carries no valid signature: it did not accept this key (check the secret, the algorithm and the key's name)".into(),
            },
            other => DnsError::Network {
                server: self.primary,
                message: other.to_string(),
            },
        }
    }
}

/// One RFC 2136 change of one RRset.
enum Change {
    /// Replace the set, only if it holds exactly `current`'s values.
    Swap {
        current: RecordSet,
        replacement: RecordSet,
    },
    /// Add these values.
    Add(RecordSet),
    /// Delete these values.
    Remove(RecordSet),
}

fn record_set(owner: &Name, rtype: RecordType, ttl: u32, data: Vec<RData>) -> RecordSet {
    let mut set = RecordSet::with_ttl(owner.clone(), wire(rtype), ttl);
    for item in data {
        set.add_rdata(item);
    }
    set
}

/// Whether a NOTAUTH answer to a signed update refuses the key (a TSIG error, or no signature)
/// rather than the zone: a server that knows the key signs its NOTAUTH for a zone it does not
/// serve, with no TSIG error (RFC 8945 §5.3).
fn key_refused(response: &Message) -> bool {
    response
        .signature()
        .is_none_or(|tsig| tsig.data.error.is_some())
}
