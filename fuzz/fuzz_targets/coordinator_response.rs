//! Feeds arbitrary bytes to the coordinator's side of the protocol as an
//! agent's stdout would: answer after answer (heartbeats skipped) through
//! the response reader and decoder. A decoded response must encode to
//! bytes that decode the same again, and so must those bytes compressed
//! (the zstd form, which arbitrary input starting with its tag reaches too).

#![no_main]

use cutover_copy::protocol::{Response, compressed, read_answer};
use libfuzzer_sys::fuzz_target;

/// The response encodes to bytes that decode to it, plain and compressed.
fn round_trips(response: &Response) {
    let plain = response.encode();
    assert_eq!(Response::decode(&plain).as_ref(), Ok(response));
    let packed = compressed(&plain, 1).expect("compressed in memory");
    assert_eq!(Response::decode(&packed).as_ref(), Ok(response));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = Response::decode(data) {
        round_trips(&response);
    }
    let mut input = data;
    while let Ok(Some(body)) = read_answer(&mut input) {
        if let Ok(response) = Response::decode(&body) {
            round_trips(&response);
        }
    }
});
