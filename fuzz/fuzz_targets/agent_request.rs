//! Feeds arbitrary bytes to the agent's side of the protocol as its stdin
//! would: frame after frame through the request reader and decoder. A
//! decoded request must encode to bytes that decode the same again, and so
//! must those bytes compressed (the zstd form, which arbitrary input
//! starting with its tag reaches too).

#![no_main]

use cutover_copy::protocol::{Request, compressed, read_frame};
use libfuzzer_sys::fuzz_target;

/// The request encodes to bytes that decode to it, plain and compressed.
fn round_trips(request: &Request) {
    let plain = request.encode();
    assert_eq!(Request::decode(&plain).as_ref(), Ok(request));
    let packed = compressed(&plain, 1).expect("compressed in memory");
    assert_eq!(Request::decode(&packed).as_ref(), Ok(request));
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one message body, then as a stream of frames.
    if let Ok(request) = Request::decode(data) {
        round_trips(&request);
    }
    let mut input = data;
    while let Ok(Some(body)) = read_frame(&mut input) {
        if let Ok(request) = Request::decode(&body) {
            round_trips(&request);
        }
    }
});
