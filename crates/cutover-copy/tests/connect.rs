//! The agent's connect requests, in process over pipes: `Connect` reports
//! each target as the agent's host reaches it (both ends' addresses, or the
//! cause), and `Tunnel` relays a real TCP connection byte for byte.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::time::Duration;

use cutover_copy::ErrorKind;
use cutover_copy::agent::{AgentClient, serve};
use cutover_copy::protocol::{Reach, Request, Response};

fn in_process_agent() -> AgentClient {
    let root = tempfile::tempdir().unwrap().keep();
    let (request_reader, request_writer) = std::io::pipe().unwrap();
    let (response_reader, response_writer) = std::io::pipe().unwrap();
    std::thread::spawn(move || serve(&root, request_reader, response_writer));
    AgentClient::over(
        "in-process agent",
        Box::new(response_reader),
        Box::new(request_writer),
    )
    .unwrap()
}

/// A loopback port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn connect_reports_each_target_with_both_ends_or_the_cause() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = closed_port();
    let mut agent = in_process_agent();
    let outcomes = agent
        .connect(
            vec![
                ("127.0.0.1".into(), open),
                ("127.0.0.1".into(), closed),
                ("no-such-host.invalid".into(), 80),
            ],
            Duration::from_secs(2),
        )
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    match &outcomes[0] {
        Reach::Open { local, peer } => {
            assert_eq!(peer, &format!("127.0.0.1:{open}"));
            assert!(local.starts_with("127.0.0.1:"), "{local}");
            // The agent really connected: the listener has the connection.
            let (accepted, from) = listener.accept().unwrap();
            assert_eq!(&from.to_string(), local);
            drop(accepted);
        }
        other => panic!("{other:?}"),
    }
    match &outcomes[1] {
        Reach::Failed { error } => {
            assert!(error.contains(&format!("127.0.0.1:{closed}")), "{error}");
            assert!(error.to_lowercase().contains("refused"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    match &outcomes[2] {
        Reach::Failed { error } => {
            assert!(error.contains("does not resolve here"), "{error}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tunnel_relays_a_real_connection_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        conn.write_all(b"echo:").unwrap();
        conn.write_all(&got).unwrap();
        got.len()
    });
    let agent = in_process_agent();
    let tunnel = agent
        .tunnel("127.0.0.1", port, Duration::from_secs(2))
        .unwrap();
    assert_eq!(tunnel.peer, format!("127.0.0.1:{port}"));
    let mut stream = tunnel.stream;
    // More than one pipe buffer, with every byte value.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(&payload).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    assert_eq!(server.join().unwrap(), payload.len());
    assert_eq!(&back[..5], b"echo:");
    assert_eq!(&back[5..], &payload[..]);
}

#[test]
fn a_tunnel_to_a_closed_port_is_an_unreachable_error_naming_it() {
    let port = closed_port();
    let agent = in_process_agent();
    let err = match agent.tunnel("127.0.0.1", port, Duration::from_secs(2)) {
        Ok(_) => panic!("a tunnel to a closed port"),
        Err(err) => err,
    };
    assert_eq!(err.kind, ErrorKind::Unreachable);
    assert!(err.message.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn connect_requests_round_trip() {
    let requests = [
        Request::Connect {
            targets: vec![("wiki-new".into(), 80), ("::1".into(), 65535)],
            timeout_ms: 2000,
        },
        Request::Tunnel {
            host: "10.0.0.1".into(),
            port: 443,
            timeout_ms: u64::MAX,
        },
    ];
    for request in requests {
        assert_eq!(Request::decode(&request.encode()).unwrap(), request);
    }
    let responses = [
        Response::Connected(vec![
            Reach::Open {
                local: "10.0.0.2:40000".into(),
                peer: "10.0.0.1:80".into(),
            },
            Reach::Failed {
                error: "refused".into(),
            },
        ]),
        Response::Tunneled {
            local: "a".into(),
            peer: "b".into(),
        },
    ];
    for response in responses {
        assert_eq!(Response::decode(&response.encode()).unwrap(), response);
    }
    // A port above 65535 is refused, not wrapped.
    let mut body = Request::Tunnel {
        host: "h".into(),
        port: 1,
        timeout_ms: 1,
    }
    .encode();
    let port_at = 1 + 4 + 1;
    body[port_at..port_at + 4].copy_from_slice(&70_000u32.to_le_bytes());
    assert!(Request::decode(&body).is_err());
}
