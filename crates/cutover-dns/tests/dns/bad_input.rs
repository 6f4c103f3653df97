//! Bad input: each is a clear error naming what and where, and nothing changes.

use std::time::Duration;

use cutover_dns::{
    DnsError, Expectation, RecordType, SecondaryConfig, ServeConfig, Updater, VerifyOptions,
    ZoneSource, query, serve, serve_secondary, soa, verify_all,
};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{Name, RData, Record, rdata::A};
use hickory_proto::serialize::binary::BinDecodable;

use crate::support::{TIMEOUT, ZONE, loopback, silent_port, start_primary, temp_dir, update_key};

#[tokio::test]
async fn an_unreachable_server_times_out_naming_it() {
    let nobody = silent_port();
    let short = Duration::from_millis(300);
    let err = query(nobody, ZONE, "www", RecordType::A, short)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no answer from {nobody} within 300ms")
    );

    let err = Updater::new(nobody, Some(update_key()), short)
        .compare_and_swap(
            ZONE,
            "wiki",
            RecordType::A,
            &["198.51.100.20"],
            &["192.0.2.20"],
            300,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no answer from {nobody} within 300ms")
    );

    let report = verify_all(
        &[nobody],
        ZONE,
        "www",
        RecordType::A,
        Expectation::default(),
        VerifyOptions {
            timeout: short,
            query_timeout: Duration::from_millis(100),
            ..VerifyOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(!report.verified);
    assert_eq!(
        report.servers[0].error.as_deref(),
        Some(format!("no answer from {nobody} within 100ms").as_str())
    );
}

#[tokio::test]
async fn a_zone_the_server_does_not_serve_is_named_in_the_error() {
    let state = temp_dir();
    let server = start_primary(state.path()).await.unwrap();
    let primary = server.addresses()[0];

    let err = Updater::new(primary, Some(update_key()), TIMEOUT)
        .compare_and_swap(
            "example.com",
            "www",
            RecordType::A,
            &["192.0.2.1"],
            &["192.0.2.2"],
            300,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{primary} is not authoritative for example.com.")
    );

    let err = soa(primary, "example.com", TIMEOUT).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{primary} is not authoritative for example.com.")
    );

    let err = Updater::new(primary, Some(update_key()), TIMEOUT)
        .compare_and_swap(
            ZONE,
            "www.example.com.",
            RecordType::A,
            &["192.0.2.1"],
            &["192.0.2.2"],
            300,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid input: www.example.com. is not inside zone maemo.org."
    );
    let seen = query(primary, ZONE, "www", RecordType::A, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(seen.values, vec!["198.51.100.10"]);
}

#[tokio::test]
async fn a_zone_file_syntax_error_is_reported_with_line_and_column() {
    let dir = temp_dir();
    let zone_file = dir.path().join("maemo.org.zone");
    let text = std::fs::read_to_string(crate::support::lab_zone_file()).unwrap();
    std::fs::write(&zone_file, text.replace("198.51.100.20", "198.51.100.2000")).unwrap();
    let err = serve(ServeConfig {
        zones: vec![ZoneSource {
            name: ZONE.into(),
            file: zone_file.clone(),
        }],
        listen: vec![loopback()],
        keys: vec![update_key()],
        state_dir: dir.path().join("state"),
        allow_transfer: Vec::new(),
    })
    .await
    .unwrap_err();
    let shown = err.to_string();
    let expected_prefix = format!("zone file {}:17:21: ", zone_file.display());
    assert!(shown.starts_with(&expected_prefix), "{shown}");
    // Nothing was written for the broken zone.
    assert!(!dir.path().join("state/maemo.org.journal.sqlite").exists());
}

#[tokio::test]
async fn a_non_authoritative_answer_is_an_error() {
    // A server that answers, but without the AA flag, like a resolver or a lame delegation.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let responder = tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        // Bounded: answers at most a few queries, then stops.
        for _ in 0..8 {
            let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
                return;
            };
            let Ok(query) = Message::from_bytes(&buffer[..length]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.message_type = MessageType::Response;
            answer.metadata.authoritative = false;
            answer.add_queries(query.queries.clone());
            let name = Name::from_ascii("www.maemo.org.").unwrap();
            answer.add_answer(Record::from_rdata(
                name,
                60,
                RData::A(A::new(198, 51, 100, 10)),
            ));
            let _ = socket.send_to(&answer.to_vec().unwrap(), peer).await;
        }
    });
    let err = query(address, ZONE, "www", RecordType::A, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::NotAuthoritative { .. }));
    assert_eq!(
        err.to_string(),
        format!("{address} is not authoritative for maemo.org.")
    );
    responder.abort();
}

#[tokio::test]
async fn zone_transfers_go_only_to_listed_addresses() {
    let state = temp_dir();
    let server = serve(ServeConfig {
        zones: vec![ZoneSource {
            name: ZONE.into(),
            file: crate::support::lab_zone_file(),
        }],
        listen: vec![loopback()],
        keys: vec![update_key()],
        state_dir: state.path().to_path_buf(),
        allow_transfer: Vec::new(),
    })
    .await
    .unwrap();
    let primary = server.addresses()[0];
    let err = serve_secondary(SecondaryConfig {
        zones: vec![ZONE.into()],
        primary,
        key: None,
        listen: vec![loopback()],
        lag: Duration::ZERO,
        check_every: Duration::from_millis(100),
        timeout: TIMEOUT,
    })
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "dns server: zone transfer of maemo.org. from {primary}: the primary answered REFUSED"
        )
    );
}
