//! The agent protocol's messages: every request and response variant
//! survives encode → frame → decode unchanged, and arbitrary bytes, whole
//! or cut short, decode to an error, never to a panic. Compressed bodies
//! (zstd) decode to the same messages, and never inflate past what they
//! declare.

use cutover_copy::blocks::{Want, WindowHashes};
use cutover_copy::protocol::{
    MAX_FRAME, MAX_TEXT, PatchOp, Reach, Request, Response, Role, ZSTD_TAG, compressed,
    read_answer, read_frame, write_frame,
};
use cutover_copy::{CopyError, ErrorKind, TableChecksum};
use proptest::collection::vec;
use proptest::prelude::*;

/// The name of a request's variant; a variant added to the protocol must
/// be added here (no wildcard), and then to [`request`].
fn request_variant(request: &Request) -> &'static str {
    match request {
        Request::Hello { .. } => "hello",
        Request::OpenSource { .. } => "open-source",
        Request::OpenDest { .. } => "open-dest",
        Request::Hash { .. } => "hash",
        Request::Read { .. } => "read",
        Request::Signature { .. } => "signature",
        Request::Delta { .. } => "delta",
        Request::Patch { .. } => "patch",
        Request::Finish { .. } => "finish",
        Request::Snapshot { .. } => "snapshot",
        Request::Checksums { .. } => "checksums",
        Request::Remove { .. } => "remove",
        Request::Connect { .. } => "connect",
        Request::Tunnel { .. } => "tunnel",
    }
}

const REQUEST_VARIANTS: usize = 14;

/// As [`request_variant`], for responses.
fn response_variant(response: &Response) -> &'static str {
    match response {
        Response::Hello { .. } => "hello",
        Response::Ok => "ok",
        Response::Error(_) => "error",
        Response::Opened { .. } => "opened",
        Response::DestOpened { .. } => "dest-opened",
        Response::Hashes(_) => "hashes",
        Response::Data(_) => "data",
        Response::Snapshot { .. } => "snapshot",
        Response::Checksums(_) => "checksums",
        Response::Connected(_) => "connected",
        Response::Tunneled { .. } => "tunneled",
    }
}

const RESPONSE_VARIANTS: usize = 11;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        Just(String::new()),
        Just("é/ü/漢字".to_string()),
        Just("x".repeat(MAX_TEXT)),
    ]
}

fn blob() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..300)
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Source), Just(Role::Basis), Just(Role::Partial)]
}

fn want() -> impl Strategy<Value = Want> {
    (any::<bool>(), any::<bool>()).prop_map(|(blocks, content)| Want { blocks, content })
}

fn patch_op() -> impl Strategy<Value = PatchOp> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(start, len)| PatchOp::CopyBasis { start, len }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(start, len)| PatchOp::CopyBasisSparse { start, len }),
        (any::<u64>(), any::<u64>()).prop_map(|(start, len)| PatchOp::KeepPartial { start, len }),
        (any::<u64>(), blob()).prop_map(|(start, data)| PatchOp::Write { start, data }),
        (any::<u64>(), any::<u64>()).prop_map(|(start, len)| PatchOp::Punch { start, len }),
        (any::<[u64; 4]>(), blob()).prop_map(|([basis_start, basis_end, start, len], delta)| {
            PatchOp::ApplyDelta {
                basis_start,
                basis_end,
                start,
                len,
                delta,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(start, end)| PatchOp::Seal { start, end }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        any::<u32>().prop_map(|version| Request::Hello { version }),
        text().prop_map(|path| Request::OpenSource { path }),
        (text(), any::<u64>(), any::<bool>()).prop_map(|(path, size, sqlite)| Request::OpenDest {
            path,
            size,
            sqlite
        }),
        (role(), any::<u64>(), any::<u64>(), want()).prop_map(|(role, start, end, want)| {
            Request::Hash {
                role,
                start,
                end,
                want,
            }
        }),
        vec((any::<u64>(), any::<u64>()), 0..20).prop_map(|ranges| Request::Read { ranges }),
        (any::<u64>(), any::<u64>()).prop_map(|(start, end)| Request::Signature { start, end }),
        (blob(), any::<u64>(), any::<u64>()).prop_map(|(signature, start, end)| {
            Request::Delta {
                signature,
                start,
                end,
            }
        }),
        vec(patch_op(), 0..12).prop_map(|ops| Request::Patch { ops }),
        any::<[u8; 32]>().prop_map(|hash| Request::Finish { hash }),
        text().prop_map(|path| Request::Snapshot { path }),
        text().prop_map(|path| Request::Checksums { path }),
        text().prop_map(|path| Request::Remove { path }),
        (vec((text(), any::<u16>()), 0..8), any::<u64>()).prop_map(|(targets, timeout_ms)| {
            Request::Connect {
                targets,
                timeout_ms,
            }
        }),
        (text(), any::<u16>(), any::<u64>()).prop_map(|(host, port, timeout_ms)| {
            Request::Tunnel {
                host,
                port,
                timeout_ms,
            }
        }),
    ]
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop_oneof![
        Just(ErrorKind::NotFound),
        Just(ErrorKind::PermissionDenied),
        Just(ErrorKind::NoSpace),
        Just(ErrorKind::OutsideRoot),
        Just(ErrorKind::VersionMismatch),
        Just(ErrorKind::Protocol),
        Just(ErrorKind::AgentFailed),
        Just(ErrorKind::Verification),
        Just(ErrorKind::Cancelled),
        Just(ErrorKind::InvalidInput),
        Just(ErrorKind::Sqlite),
        Just(ErrorKind::Io),
        Just(ErrorKind::Unreachable),
    ]
}

fn reach() -> impl Strategy<Value = Reach> {
    prop_oneof![
        (text(), text()).prop_map(|(local, peer)| Reach::Open { local, peer }),
        text().prop_map(|error| Reach::Failed { error }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        any::<u32>().prop_map(|version| Response::Hello { version }),
        Just(Response::Ok),
        (error_kind(), text())
            .prop_map(|(kind, message)| Response::Error(CopyError::new(kind, message))),
        any::<u64>().prop_map(|size| Response::Opened { size }),
        (any::<Option<u64>>(), any::<bool>(), any::<bool>()).prop_map(
            |(basis_size, resumed, in_place)| Response::DestOpened {
                basis_size,
                resumed,
                in_place,
            }
        ),
        (
            any::<Option<[u8; 32]>>(),
            vec(any::<[u8; 16]>(), 0..40),
            any::<u64>()
        )
            .prop_map(
                |(digest, blocks, hole_bytes)| Response::Hashes(WindowHashes {
                    digest,
                    blocks,
                    hole_bytes,
                })
            ),
        blob().prop_map(Response::Data),
        (text(), text()).prop_map(|(path, method)| Response::Snapshot { path, method }),
        vec((text(), any::<u64>(), text()), 0..8).prop_map(|tables| Response::Checksums(
            tables
                .into_iter()
                .map(|(name, rows, checksum)| TableChecksum {
                    name,
                    rows,
                    checksum,
                })
                .collect()
        )),
        vec(reach(), 0..8).prop_map(Response::Connected),
        (text(), text()).prop_map(|(local, peer)| Response::Tunneled { local, peer }),
    ]
}

/// One message through a framed stream: written, read back whole.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut stream = Vec::new();
    let written = write_frame(&mut stream, body).expect("a frame is written to memory");
    assert_eq!(written, stream.len() as u64);
    stream
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_request_round_trips(request in request()) {
        let stream = framed(&request.encode());
        let mut input = &stream[..];
        let body = read_frame(&mut input).ok().flatten();
        prop_assert!(input.is_empty());
        let decoded = body.as_deref().map(Request::decode);
        prop_assert_eq!(decoded, Some(Ok(request)));
    }

    #[test]
    fn every_response_round_trips(response in response()) {
        // A heartbeat (an empty frame) ahead of an answer is skipped.
        let mut stream = vec![0u8; 4];
        stream.extend(framed(&response.encode()));
        let mut input = &stream[..];
        let body = read_answer(&mut input).ok().flatten();
        prop_assert!(input.is_empty());
        let decoded = body.as_deref().map(Response::decode);
        prop_assert_eq!(decoded, Some(Ok(response)));
    }

    /// Compressed at any level, every message decodes to itself; declaring
    /// one byte less or more than it inflates to, or holding a compressed
    /// message inside, is a protocol error.
    #[test]
    fn compressed_messages_round_trip_and_keep_to_their_size(
        request in request(),
        response in response(),
        level in -7i32..=19,
    ) {
        for (plain, is_request) in [(request.encode(), true), (response.encode(), false)] {
            let decode = |body: &[u8]| if is_request {
                Request::decode(body).map(|r| r.encode())
            } else {
                Response::decode(body).map(|r| r.encode())
            };
            let packed = compressed(&plain, level).expect("compressible in memory");
            prop_assert_eq!(packed[0], ZSTD_TAG);
            let stream = framed(&packed);
            let mut input = &stream[..];
            let body = read_frame(&mut input).ok().flatten().unwrap_or_default();
            prop_assert_eq!(decode(&body), Ok(plain.clone()));
            let declared = plain.len() as u32;
            for wrong in [declared.wrapping_sub(1), declared + 1] {
                let mut lying = packed.clone();
                lying[1..5].copy_from_slice(&wrong.to_le_bytes());
                prop_assert_eq!(decode(&lying).err().map(|e| e.kind), Some(ErrorKind::Protocol));
            }
            let nested = compressed(&packed, 1).expect("compressible in memory");
            prop_assert_eq!(decode(&nested).err().map(|e| e.kind), Some(ErrorKind::Protocol));
        }
    }

    /// Every proper prefix of a message, and the message with a byte more,
    /// is refused as a protocol error.
    #[test]
    fn cut_or_padded_messages_are_protocol_errors(request in request(), response in response()) {
        let request_body = request.encode();
        let response_body = response.encode();
        let cuts = |len: usize| (0..len).step_by((len / 64).max(1));
        for cut in cuts(request_body.len()) {
            let err = Request::decode(&request_body[..cut]).err();
            prop_assert_eq!(err.map(|e| e.kind), Some(ErrorKind::Protocol), "cut at {}", cut);
        }
        for cut in cuts(response_body.len()) {
            let err = Response::decode(&response_body[..cut]).err();
            prop_assert_eq!(err.map(|e| e.kind), Some(ErrorKind::Protocol), "cut at {}", cut);
        }
        let mut padded = request_body.clone();
        padded.push(0);
        prop_assert_eq!(Request::decode(&padded).err().map(|e| e.kind), Some(ErrorKind::Protocol));
        let mut padded = response_body.clone();
        padded.push(0);
        prop_assert_eq!(Response::decode(&padded).err().map(|e| e.kind), Some(ErrorKind::Protocol));
    }

    /// Arbitrary bytes decode to something or to an error, never a panic;
    /// whatever decodes encodes to bytes that decode the same again.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200), tagged in any::<bool>()) {
        // Half of them posing as compressed bodies.
        let mut bytes = bytes;
        if tagged && !bytes.is_empty() {
            bytes[0] = ZSTD_TAG;
        }
        if let Ok(request) = Request::decode(&bytes) {
            prop_assert_eq!(Request::decode(&request.encode()), Ok(request));
        }
        if let Ok(response) = Response::decode(&bytes) {
            prop_assert_eq!(Response::decode(&response.encode()), Ok(response));
        }
        let mut input = &bytes[..];
        let _ = read_frame(&mut input);
        let mut input = &bytes[..];
        let _ = read_answer(&mut input);
    }
}

/// The strategies above cover every variant of both enums.
#[test]
fn the_strategies_cover_every_variant() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut requests = std::collections::BTreeSet::new();
    let mut responses = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        if let Ok(tree) = request().new_tree(&mut runner) {
            requests.insert(request_variant(&tree.current()));
        }
        if let Ok(tree) = response().new_tree(&mut runner) {
            responses.insert(response_variant(&tree.current()));
        }
    }
    assert_eq!(requests.len(), REQUEST_VARIANTS, "{requests:?}");
    assert_eq!(responses.len(), RESPONSE_VARIANTS, "{responses:?}");
}

/// Counts and lengths that claim more than the frame holds are refused
/// before anything is allocated for them: a 13-byte Read request claiming
/// four billion ranges, a Hashes answer claiming four billion hashes.
#[test]
fn counts_larger_than_their_frame_are_refused() {
    let mut read = vec![5u8];
    read.extend_from_slice(&u32::MAX.to_le_bytes());
    read.extend_from_slice(&[0u8; 16]);
    let err = Request::decode(&read).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
    assert!(err.message.contains("a count of 4294967295"), "{err}");

    let mut hashes = vec![6u8, 0];
    hashes.extend_from_slice(&0u64.to_le_bytes());
    hashes.extend_from_slice(&u32::MAX.to_le_bytes());
    let err = Response::decode(&hashes).unwrap_err();
    assert!(err.message.contains("a count of 4294967295"), "{err}");

    let mut long_path = vec![2u8];
    long_path.extend_from_slice(&(MAX_TEXT as u32 + 1).to_le_bytes());
    long_path.extend(std::iter::repeat_n(b'a', MAX_TEXT + 1));
    let err = Request::decode(&long_path).unwrap_err();
    assert!(err.message.contains("at most 65536"), "{err}");

    // A frame length above the limit, or a frame cut short, is an error
    // and not a buffer of that size.
    let mut huge = (MAX_FRAME + 1).to_le_bytes().to_vec();
    huge.push(1);
    assert!(read_frame(&mut &huge[..]).is_err());
    assert!(read_answer(&mut &huge[..]).is_err());
    let mut short = MAX_FRAME.to_le_bytes().to_vec();
    short.extend_from_slice(&[1, 2, 3]);
    assert!(read_frame(&mut &short[..]).is_err());
    // The agent takes an empty frame for garbage; the coordinator for a heartbeat.
    assert!(read_frame(&mut &[0u8; 4][..]).is_err());
    assert!(matches!(read_answer(&mut &[0u8; 4][..]), Ok(None)));
}

/// A destination's size is a number from the peer: one of 16 EiB is
/// opened without allocating per window (the agent keeps only the windows
/// it has hashed), and a change across all of it fails as an I/O error,
/// not a crash.
#[test]
fn an_absurd_destination_size_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let location = cutover_copy::Location::Rooted {
        root: dir.path().to_path_buf(),
        path: "huge.img".to_string(),
    };
    let (mut endpoint, path) = cutover_copy::Endpoint::connect(&location).unwrap();
    endpoint.open_dest(&path, u64::MAX, false).unwrap();
    let err = endpoint
        .patch(vec![PatchOp::Punch {
            start: 0,
            len: u64::MAX,
        }])
        .and_then(|()| endpoint.flush())
        .unwrap_err();
    assert_ne!(err.kind, ErrorKind::Protocol, "{err}");
}
