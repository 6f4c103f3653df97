//! The primary's side of RFC 2136 updates and zone transfers, which hickory's catalog does not
//! cover well enough for real secondaries: every change is recorded as a difference (old and
//! new SOA, records removed and added) so IXFR (RFC 1995) can answer with just the changes, and
//! AXFR and IXFR answers are split into as many messages as the zone needs (one DNS message
//! holds at most 64 KiB, about 2,000 A records).
//!
//! Updates are authenticated here (see [`crate::tsig::authenticate`]) and then applied by
//! hickory's SQLite zone handler (prerequisites, prescan, update, its on-disk journal), one at a
//! time per zone so that the difference recorded is the update's own.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::store::sqlite::SqliteZoneHandler;
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::sync::watch;

use crate::records::canonical_values;
use crate::tsig::ResponseSigner;

/// Changes kept for IXFR, counted in records (each change counts its two SOAs too). Older
/// changes are forgotten first; a secondary further behind gets the whole zone.
const HISTORY_RECORDS: usize = 200_000;
/// Bytes of records per transfer message: well under the 65,535 a message may hold, so the
/// header, question and name compression never push one over.
const MESSAGE_BUDGET: usize = 32 * 1024;

/// One change to a zone, as IXFR sends it.
#[derive(Debug, Clone)]
struct Change {
    old_soa: Record,
    new_soa: Record,
    removed: Vec<Record>,
    added: Vec<Record>,
}

impl Change {
    fn size(&self) -> usize {
        self.removed.len() + self.added.len() + 2
    }
}

/// A zone this server is the primary of.
pub(crate) struct PrimaryZone {
    origin: Name,
    handler: Arc<SqliteZoneHandler>,
    /// Held while an update is checked and applied.
    updating: tokio::sync::Mutex<()>,
    history: Mutex<History>,
    /// The serial after the latest change; the notifier watches it.
    serial: watch::Sender<u32>,
}

#[derive(Default)]
struct History {
    changes: VecDeque<Change>,
    records: usize,
}

impl History {
    fn push(&mut self, change: Change) {
        self.records += change.size();
        self.changes.push_back(change);
        while self.records > HISTORY_RECORDS {
            match self.changes.pop_front() {
                Some(old) => self.records -= old.size(),
                None => break,
            }
        }
    }

    /// The changes from `serial` to the newest, when every one of them is still kept.
    fn since(&self, serial: u32) -> Option<Vec<Change>> {
        let start = self
            .changes
            .iter()
            .position(|change| soa_serial(&change.old_soa) == Some(serial))?;
        Some(self.changes.iter().skip(start).cloned().collect())
    }
}

impl PrimaryZone {
    pub(crate) async fn new(origin: Name, handler: Arc<SqliteZoneHandler>) -> Self {
        let serial = handler.serial().await;
        Self {
            origin,
            handler,
            updating: tokio::sync::Mutex::new(()),
            history: Mutex::new(History::default()),
            serial: watch::Sender::new(serial),
        }
    }

    pub(crate) fn origin(&self) -> &Name {
        &self.origin
    }

    pub(crate) fn handler(&self) -> &SqliteZoneHandler {
        &self.handler
    }

    /// Follows the zone's serial: it changes after every applied update.
    pub(crate) fn watch_serial(&self) -> watch::Receiver<u32> {
        self.serial.subscribe()
    }

    /// Applies an authenticated update: prerequisites, prescan, then the update itself, and
    /// records the change it made. Returns the response code.
    pub(crate) async fn apply_update(&self, request: &Request) -> ResponseCode {
        let _one_at_a_time = self.updating.lock().await;
        let handler = &self.handler;
        if !self.whole_rrsets_match(&request.answers).await {
            return ResponseCode::NXRRSet;
        }
        if let Err(code) = handler.verify_prerequisites(&request.answers).await {
            return code;
        }
        if let Err(code) = handler.pre_scan(&request.authorities).await {
            return code;
        }
        let names: BTreeSet<LowerName> = request
            .authorities
            .iter()
            .map(|record| LowerName::from(&record.name))
            .collect();
        let (old_soa, before) = self.snapshot(&names).await;
        match handler.update_records(&request.authorities, true).await {
            Ok(true) => {
                let (new_soa, after) = self.snapshot(&names).await;
                if let (Some(old_soa), Some(new_soa)) = (old_soa, new_soa) {
                    let serial = soa_serial(&new_soa);
                    let change = Change {
                        removed: minus(&before, &after),
                        added: minus(&after, &before),
                        old_soa,
                        new_soa,
                    };
                    self.history
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(change);
                    if let Some(serial) = serial {
                        self.serial.send_replace(serial);
                    }
                }
                ResponseCode::NoError
            }
            Ok(false) => ResponseCode::NoError,
            Err(code) => code,
        }
    }

    /// RFC 2136 §3.2.5: the value-dependent prerequisites of an RRset must match the whole
    /// RRset, not only be part of it (hickory's handler checks them value by value), or a
    /// compare-and-swap of `A 192.0.2.1` would replace a set holding `192.0.2.2` too.
    async fn whole_rrsets_match(&self, prerequisites: &[Record]) -> bool {
        let mut wanted: BTreeMap<RrKey, Vec<&RData>> = BTreeMap::new();
        for record in prerequisites {
            if record.dns_class == DNSClass::IN {
                let key = RrKey::new(LowerName::from(&record.name), record.record_type());
                wanted.entry(key).or_default().push(&record.data);
            }
        }
        if wanted.is_empty() {
            return true;
        }
        let records = self.handler.records().await;
        wanted.into_iter().all(|(key, data)| {
            let held = records
                .get(&key)
                .map(|set| canonical_values(set.records_without_rrsigs().map(|r| &r.data)))
                .unwrap_or_default();
            held == canonical_values(data)
        })
    }

    /// The zone's SOA and every other record at `names`.
    async fn snapshot(&self, names: &BTreeSet<LowerName>) -> (Option<Record>, Vec<Record>) {
        let records = self.handler.records().await;
        let origin = LowerName::from(&self.origin);
        let soa = records
            .get(&RrKey::new(origin.clone(), RecordType::SOA))
            .and_then(|set| set.records_without_rrsigs().next().cloned());
        let at_names = records
            .iter()
            .filter(|(key, _)| names.contains(&key.name))
            .filter(|(key, _)| !(key.record_type == RecordType::SOA && key.name == origin))
            .flat_map(|(_, set)| set.records_without_rrsigs().cloned())
            .collect();
        (soa, at_names)
    }

    /// The whole zone as AXFR sends it: SOA, every other record, SOA again.
    async fn full_transfer(&self) -> Option<Vec<Record>> {
        let records = self.handler.records().await;
        let origin = LowerName::from(&self.origin);
        let soa = records
            .get(&RrKey::new(origin.clone(), RecordType::SOA))
            .and_then(|set| set.records_without_rrsigs().next().cloned())?;
        let mut all = Vec::with_capacity(records.len() + 2);
        all.push(soa.clone());
        for (key, set) in records.iter() {
            if key.record_type == RecordType::SOA && key.name == origin {
                continue;
            }
            all.extend(set.records_without_rrsigs().cloned());
        }
        all.push(soa);
        Some(all)
    }

    /// The answer to an IXFR from a secondary at `client_serial` (RFC 1995 §4): only the SOA
    /// when it is current, the changes since when they are all kept, else the whole zone.
    async fn incremental_transfer(&self, client_serial: u32) -> Option<Vec<Record>> {
        let current = {
            let records = self.handler.records().await;
            records
                .get(&RrKey::new(LowerName::from(&self.origin), RecordType::SOA))
                .and_then(|set| set.records_without_rrsigs().next().cloned())?
        };
        let current_serial = soa_serial(&current)?;
        if !serial_less(client_serial, current_serial) {
            return Some(vec![current]);
        }
        let changes = self
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .since(client_serial);
        let Some(changes) = changes.filter(|changes| {
            changes
                .last()
                .is_some_and(|last| soa_serial(&last.new_soa) == Some(current_serial))
        }) else {
            return self.full_transfer().await;
        };
        let mut records = vec![current.clone()];
        for change in changes {
            records.push(change.old_soa);
            records.extend(change.removed);
            records.push(change.new_soa);
            records.extend(change.added);
        }
        records.push(current);
        Some(records)
    }

    /// Answers an AXFR or IXFR query (the caller has checked that the asker may transfer).
    pub(crate) async fn answer_transfer<R: ResponseHandler>(
        &self,
        request: &Request,
        query_type: RecordType,
        response_edns: Option<&Edns>,
        mut response_handle: R,
    ) -> ResponseInfo {
        let records =
            match query_type {
                RecordType::IXFR => {
                    let client_serial = request.authorities.iter().find_map(|record| match &record
                        .data
                    {
                        RData::SOA(soa) => Some(soa.serial),
                        _ => None,
                    });
                    let Some(client_serial) = client_serial else {
                        // RFC 1995 §3: the authority section carries the client's SOA.
                        return send_error(
                            request,
                            ResponseCode::FormErr,
                            response_edns,
                            response_handle,
                        )
                        .await;
                    };
                    let records = self.incremental_transfer(client_serial).await;
                    // Over UDP the answer is the current SOA alone; the secondary then asks over
                    // TCP (RFC 1995 §2).
                    match (records, request.protocol()) {
                        (Some(mut records), Protocol::Udp) => {
                            records.truncate(1);
                            Some(records)
                        }
                        (records, _) => records,
                    }
                }
                _ if request.protocol() == Protocol::Udp => {
                    return send_error(
                        request,
                        ResponseCode::FormErr,
                        response_edns,
                        response_handle,
                    )
                    .await;
                }
                _ => self.full_transfer().await,
            };
        let Some(records) = records else {
            return send_error(
                request,
                ResponseCode::ServFail,
                response_edns,
                response_handle,
            )
            .await;
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.response_code = ResponseCode::NoError;
        let mut last = None;
        for chunk in chunks(&records) {
            let response = MessageResponseBuilder::new(&request.queries, response_edns).build(
                metadata,
                chunk.iter(),
                std::iter::empty(),
                std::iter::empty(),
                std::iter::empty(),
            );
            match response_handle.send_response(response).await {
                Ok(info) => last = Some(info),
                Err(_) => return not_sent(request, ResponseCode::ServFail),
            }
        }
        last.unwrap_or_else(|| not_sent(request, ResponseCode::ServFail))
    }
}

/// Splits records into runs that each fit one message.
fn chunks(records: &[Record]) -> Vec<&[Record]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    let mut buffer = Vec::with_capacity(512);
    for (index, record) in records.iter().enumerate() {
        buffer.clear();
        let size = match record.emit(&mut BinEncoder::new(&mut buffer)) {
            Ok(()) => buffer.len(),
            Err(_) => MESSAGE_BUDGET,
        };
        if bytes + size > MESSAGE_BUDGET && index > start {
            chunks.push(&records[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

/// Records of `a` that are not in `b` (TTL included: a TTL change removes and adds).
fn minus(a: &[Record], b: &[Record]) -> Vec<Record> {
    a.iter()
        .filter(|record| {
            !b.iter()
                .any(|other| other == *record && other.ttl == record.ttl)
        })
        .cloned()
        .collect()
}

pub(crate) fn soa_serial(record: &Record) -> Option<u32> {
    match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

/// RFC 1982 serial arithmetic: is `a` older than `b`?
fn serial_less(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

/// The response to an update: its code, signed as the request's authentication says.
pub(crate) async fn answer_update<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    signer: Option<&ResponseSigner>,
    response_edns: Option<&Edns>,
    mut response_handle: R,
) -> ResponseInfo {
    let mut metadata = Metadata::new(request.metadata.id, MessageType::Response, OpCode::Update);
    metadata.response_code = code;
    let mut response =
        MessageResponseBuilder::new(&request.queries, response_edns).build_no_records(metadata);
    if let Some(signer) = signer {
        let mut unsigned = Vec::with_capacity(512);
        let tbs = MessageResponseBuilder::new(&request.queries, response_edns)
            .build_no_records(metadata)
            .destructive_emit(&mut BinEncoder::new(&mut unsigned));
        let signature = tbs
            .map_err(|err| err.to_string())
            .and_then(|_| signer.sign(request.metadata.id, &unsigned));
        match signature {
            Ok(signature) => response.set_signature(signature),
            Err(_) => {
                return send_error(
                    request,
                    ResponseCode::ServFail,
                    response_edns,
                    response_handle,
                )
                .await;
            }
        }
    }
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => not_sent(request, ResponseCode::ServFail),
    }
}

pub(crate) async fn send_error<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    response_edns: Option<&Edns>,
    mut response_handle: R,
) -> ResponseInfo {
    let response = MessageResponseBuilder::new(&request.queries, response_edns)
        .error_msg(&request.metadata, code);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => not_sent(request, ResponseCode::ServFail),
    }
}

/// What to report for an answer that could not be sent.
pub(crate) fn not_sent(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    fn a(name: &str, ttl: u32, last: u8) -> Record {
        Record::from_rdata(
            Name::from_str(name).unwrap(),
            ttl,
            RData::A(Ipv4Addr::new(192, 0, 2, last).into()),
        )
    }

    #[test]
    fn a_ttl_change_is_a_removal_and_an_addition() {
        let before = vec![a("w.test.", 3600, 1), a("w.test.", 3600, 2)];
        let after = vec![a("w.test.", 300, 1), a("w.test.", 3600, 2)];
        assert_eq!(minus(&before, &after).len(), 1);
        assert_eq!(minus(&before, &after)[0].ttl, 3600);
        assert_eq!(minus(&after, &before)[0].ttl, 300);
    }

    #[test]
    fn big_answers_are_split_into_messages_that_each_fit() {
        let records: Vec<Record> = (0..50_000)
            .map(|i| a(&format!("host{i:05}.bench.test."), 3600, (i % 250) as u8))
            .collect();
        let chunks = chunks(&records);
        assert!(chunks.len() > 40, "{} messages", chunks.len());
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 50_000);
        assert!(chunks.iter().all(|c| c.len() * 40 < 65_535));
    }

    fn soa(serial: u32) -> Record {
        let soa = hickory_proto::rr::rdata::SOA::new(
            Name::from_str("ns1.test.").unwrap(),
            Name::from_str("hostmaster.test.").unwrap(),
            serial,
            3600,
            600,
            86400,
            300,
        );
        Record::from_rdata(Name::from_str("test.").unwrap(), 0, RData::SOA(soa))
    }

    fn change(from: u32, added: usize) -> Change {
        Change {
            old_soa: soa(from),
            new_soa: soa(from + 1),
            removed: Vec::new(),
            added: vec![a("w.test.", 300, 1); added],
        }
    }

    #[test]
    fn the_history_forgets_the_oldest_changes_first_and_only_chains_what_it_has() {
        let mut history = History::default();
        history.push(change(1, 10));
        history.push(change(2, 10));
        assert_eq!(history.since(1).unwrap().len(), 2);
        assert_eq!(history.since(2).unwrap().len(), 1);
        assert!(history.since(7).is_none());
        history.push(change(3, HISTORY_RECORDS - 20));
        // Serial 1 is forgotten: a secondary there gets the whole zone.
        assert!(history.since(1).is_none());
        assert_eq!(history.since(2).unwrap().len(), 2);
        assert!(history.records <= HISTORY_RECORDS);
    }

    #[test]
    fn serials_compare_as_rfc_1982_says() {
        assert!(serial_less(1, 2));
        assert!(!serial_less(2, 2));
        assert!(!serial_less(3, 2));
        assert!(serial_less(u32::MAX, 1));
    }
}
