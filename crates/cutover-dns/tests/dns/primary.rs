//! The embedded server as a hidden primary, seen on the wire: NOTIFY after a change, IXFR from
//! the history of changes, AXFR of a zone too big for one message, and TSIG answers as RFC 8945
//! and BIND give them.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cutover_dns::{
    NotifyTargets, RecordType, ServeConfig, ServeOptions, ServerHandle, Updater, ZoneSource, query,
    serve_with, soa,
};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType as WireType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{
    TIMEOUT, ZONE, lab_zone_file, loopback, start_secondary, switch_wiki, temp_dir, update_key,
};

const SECRET: &[u8] = b"a test secret of thirty-two bytes";

async fn start(
    zone_file: &std::path::Path,
    state: &std::path::Path,
    notify: NotifyTargets,
) -> ServerHandle {
    serve_with(
        ServeConfig {
            zones: vec![ZoneSource {
                name: ZONE.into(),
                file: zone_file.to_path_buf(),
            }],
            listen: vec![loopback()],
            keys: vec![update_key()],
            state_dir: state.to_path_buf(),
            allow_transfer: vec!["127.0.0.1".parse().unwrap()],
        },
        ServeOptions { notify },
    )
    .await
    .unwrap()
}

fn zone() -> Name {
    Name::from_str("maemo.org.").unwrap()
}

fn soa_question(id: u16, op_code: OpCode, qtype: WireType) -> Message {
    let mut message = Message::new(id, MessageType::Query, op_code);
    let mut question = Query::new();
    question
        .set_name(zone())
        .set_query_class(DNSClass::IN)
        .set_query_type(qtype);
    message.add_query(question);
    message
}

/// An IXFR question from a secondary at `serial`.
fn ixfr(serial: u32) -> Message {
    let mut message = soa_question(7, OpCode::Query, WireType::IXFR);
    let soa = hickory_proto::rr::rdata::SOA::new(
        Name::from_str("ns1.maemo.org.").unwrap(),
        Name::from_str("hostmaster.maemo.org.").unwrap(),
        serial,
        3600,
        600,
        1_209_600,
        300,
    );
    message.add_authority(Record::from_rdata(zone(), 0, RData::SOA(soa)));
    message
}

/// Sends one question over TCP and reads every answer message until the server is quiet for
/// 300 ms (at most 10 s).
async fn tcp_answers(server: SocketAddr, question: &Message) -> Vec<Message> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = question.to_vec().unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut length = [0u8; 2];
        match tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut length)).await
        {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let mut body = vec![0u8; u16::from_be_bytes(length) as usize];
        stream.read_exact(&mut body).await.unwrap();
        messages.push(Message::from_vec(&body).unwrap());
    }
    messages
}

fn serials_and_names(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .flat_map(|message| message.answers.iter())
        .map(|record| match &record.data {
            RData::SOA(soa) => format!("SOA {}", soa.serial),
            data => format!("{} {} {data}", record.name, record.ttl),
        })
        .collect()
}

#[tokio::test]
async fn ixfr_answers_with_the_changes_since_the_secondarys_serial() {
    let state = temp_dir();
    let server = start(
        &lab_zone_file(),
        state.path(),
        NotifyTargets::Addresses(vec![]),
    )
    .await;
    let primary = server.addresses()[0];
    switch_wiki(primary).await;
    let current = soa(primary, ZONE, TIMEOUT).await.unwrap().serial;
    assert_eq!(current, 2013031402);

    let answers = tcp_answers(primary, &ixfr(2013031401)).await;
    assert_eq!(
        serials_and_names(&answers),
        vec![
            "SOA 2013031402",
            "SOA 2013031401",
            "wiki.maemo.org. 3600 198.51.100.20",
            "SOA 2013031402",
            "wiki.maemo.org. 300 192.0.2.20",
            "SOA 2013031402",
        ]
    );

    // Up to date: the SOA alone.
    let answers = tcp_answers(primary, &ixfr(current)).await;
    assert_eq!(serials_and_names(&answers), vec!["SOA 2013031402"]);

    // A serial the history does not know: the whole zone, as AXFR sends it.
    let answers = tcp_answers(primary, &ixfr(2013031300)).await;
    let records = serials_and_names(&answers);
    assert_eq!(records.first().map(String::as_str), Some("SOA 2013031402"));
    assert_eq!(records.last().map(String::as_str), Some("SOA 2013031402"));
    assert!(records.contains(&"wiki.maemo.org. 300 192.0.2.20".to_string()));
    assert!(records.contains(&"www.maemo.org. 3600 198.51.100.10".to_string()));
}

#[tokio::test]
async fn a_zone_bigger_than_a_message_is_transferred_in_several() {
    let dir = temp_dir();
    let zone_file = dir.path().join("maemo.org.zone");
    let mut text = std::fs::read_to_string(lab_zone_file()).unwrap();
    for index in 0..5_000 {
        text.push_str(&format!(
            "host{index:04} IN A 10.0.{}.{}\n",
            index / 256,
            index % 256
        ));
    }
    std::fs::write(&zone_file, text).unwrap();
    let server = start(
        &zone_file,
        &dir.path().join("state"),
        NotifyTargets::Addresses(vec![]),
    )
    .await;
    let primary = server.addresses()[0];

    let answers = tcp_answers(primary, &soa_question(9, OpCode::Query, WireType::AXFR)).await;
    assert!(answers.len() > 1, "{} messages", answers.len());
    let records = serials_and_names(&answers);
    // The lab zone's 10 records, 5,000 more, and the closing SOA.
    assert_eq!(records.len(), 10 + 5_000 + 1);
    assert_eq!(records.first().map(String::as_str), Some("SOA 2013031401"));
    assert_eq!(records.last().map(String::as_str), Some("SOA 2013031401"));

    // And a secondary loads all of it.
    let secondary = start_secondary(primary, Duration::ZERO).await.unwrap();
    let last = query(
        secondary.addresses()[0],
        ZONE,
        "host4999",
        RecordType::A,
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(last.values, vec!["10.0.19.135"]);
}

/// A secondary stand-in: answers every NOTIFY with `code` and returns the ones it got, once
/// none has come for 1.5 s (longer than the primary waits before sending again).
async fn notified_secondary(
    code: ResponseCode,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<Message>>) {
    let socket = UdpSocket::bind(loopback()).await.unwrap();
    let address = socket.local_addr().unwrap();
    let listener = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buffer = vec![0u8; 4096];
        while let Ok(Ok((length, from))) =
            tokio::time::timeout(Duration::from_millis(1500), socket.recv_from(&mut buffer)).await
        {
            let message = Message::from_vec(&buffer[..length]).unwrap();
            let mut answer =
                Message::new(message.metadata.id, MessageType::Response, OpCode::Notify);
            answer.metadata.response_code = code;
            answer.add_queries(message.queries.clone());
            socket
                .send_to(&answer.to_vec().unwrap(), from)
                .await
                .unwrap();
            got.push(message);
            if got.len() == 3 {
                break;
            }
        }
        got
    });
    (address, listener)
}

#[tokio::test]
async fn each_change_is_notified_to_the_secondaries_with_the_new_soa() {
    let state = temp_dir();
    let (acknowledging, acknowledged) = notified_secondary(ResponseCode::NoError).await;
    let (refusing, refused) = notified_secondary(ResponseCode::Refused).await;
    let server = start(
        &lab_zone_file(),
        state.path(),
        NotifyTargets::Addresses(vec![acknowledging, refusing]),
    )
    .await;
    let mut events = server.notify_events();
    let primary = server.addresses()[0];
    switch_wiki(primary).await;

    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        outcomes.push((event.target, event.serial, event.attempts, event.error));
    }
    outcomes.sort();
    let mut expected = vec![
        (acknowledging, 2013031402, 1, None),
        (
            refusing,
            2013031402,
            1,
            Some("it answered REFUSED".to_string()),
        ),
    ];
    expected.sort();
    assert_eq!(outcomes, expected);

    drop(server);
    for listener in [acknowledged, refused] {
        let got = listener.await.unwrap();
        assert_eq!(
            got.len(),
            1,
            "one NOTIFY per change, none repeated once answered"
        );
        let notify = &got[0];
        assert_eq!(notify.metadata.op_code, OpCode::Notify);
        assert!(notify.metadata.authoritative);
        assert_eq!(notify.queries[0].name(), &zone());
        assert_eq!(notify.queries[0].query_type(), WireType::SOA);
        match &notify.answers[0].data {
            RData::SOA(soa) => assert_eq!(soa.serial, 2013031402),
            other => panic!("expected the SOA, got {other:?}"),
        }
    }
}

/// An update that changes nothing (prerequisite: the zone's SOA exists), signed with `signer`
/// `age` seconds ago.
fn signed_check_at(signer: &TSigner, zone_name: &str, age: u64) -> (Vec<u8>, Vec<u8>) {
    let mut message = Message::new(41, MessageType::Query, OpCode::Update);
    let mut question = Query::new();
    question
        .set_name(Name::from_str(zone_name).unwrap())
        .set_query_class(DNSClass::IN)
        .set_query_type(WireType::SOA);
    message.add_query(question);
    let mut exists = Record::update0(Name::from_str(zone_name).unwrap(), 0, WireType::SOA);
    exists.dns_class = DNSClass::ANY;
    message.add_answer(exists.into_record_of_rdata());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - age;
    let (signature, _) = signer.sign_message(&message, now).unwrap();
    let mac = signature.data.mac.clone();
    message.set_signature(signature);
    (message.to_vec().unwrap(), mac)
}

fn signed_check(signer: &TSigner, zone_name: &str) -> (Vec<u8>, Vec<u8>) {
    signed_check_at(signer, zone_name, 0)
}

async fn udp_answer(server: SocketAddr, bytes: &[u8]) -> (Vec<u8>, Message) {
    let socket = UdpSocket::bind(loopback()).await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let length = tokio::time::timeout(TIMEOUT, socket.recv(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    buffer.truncate(length);
    let message = Message::from_vec(&buffer).unwrap();
    (buffer, message)
}

#[tokio::test]
async fn tsig_answers_are_those_rfc_8945_asks_for() {
    let state = temp_dir();
    let server = start(
        &lab_zone_file(),
        state.path(),
        NotifyTargets::Addresses(vec![]),
    )
    .await;
    let primary = server.addresses()[0];
    let key_name = Name::from_str("maemo-update.").unwrap();
    let right = TSigner::new(
        SECRET.to_vec(),
        TsigAlgorithm::HmacSha256,
        key_name.clone(),
        300,
    )
    .unwrap();

    // The right key: NOERROR, signed.
    let (request, mac) = signed_check(&right, "maemo.org.");
    let (bytes, answer) = udp_answer(primary, &request).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    right.verify_message_byte(&bytes, Some(&mac), true).unwrap();

    // The key's name with another algorithm: NOTAUTH, BADKEY, unsigned.
    let wrong_algorithm = TSigner::new(
        SECRET.to_vec(),
        TsigAlgorithm::HmacSha512,
        key_name.clone(),
        300,
    )
    .unwrap();
    let (request, _) = signed_check(&wrong_algorithm, "maemo.org.");
    let (_, answer) = udp_answer(primary, &request).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NotAuth);
    let tsig = answer.signature().expect("a TSIG record");
    assert_eq!(tsig.data.error, Some(TsigError::BadKey));
    assert!(tsig.data.mac.is_empty());

    // Another secret: NOTAUTH, BADSIG, unsigned.
    let wrong_secret = TSigner::new(
        b"not the secret the server knows!".to_vec(),
        TsigAlgorithm::HmacSha256,
        key_name,
        300,
    )
    .unwrap();
    let (request, _) = signed_check(&wrong_secret, "maemo.org.");
    let (_, answer) = udp_answer(primary, &request).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NotAuth);
    let tsig = answer.signature().expect("a TSIG record");
    assert_eq!(tsig.data.error, Some(TsigError::BadSig));
    assert!(tsig.data.mac.is_empty());

    // Signed too long ago (the fudge is 300 s): NOTAUTH, BADTIME, signed.
    let (request, mac) = signed_check_at(&right, "maemo.org.", 1_000);
    let (bytes, answer) = udp_answer(primary, &request).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NotAuth);
    let tsig = answer.signature().expect("a TSIG record");
    assert_eq!(tsig.data.error, Some(TsigError::BadTime));
    right.verify_message_byte(&bytes, Some(&mac), true).unwrap();

    // A zone not served here, asked with the right key: NOTAUTH, signed with that key.
    let (request, mac) = signed_check(&right, "example.com.");
    let (bytes, answer) = udp_answer(primary, &request).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(answer.signature().expect("a TSIG record").data.error, None);
    right.verify_message_byte(&bytes, Some(&mac), true).unwrap();
    // ... which the key check reports as the zone's absence, not as a key problem.
    let err = Updater::new(primary, Some(update_key()), TIMEOUT)
        .verify_key("example.com")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{primary} is not authoritative for example.com.")
    );
}
