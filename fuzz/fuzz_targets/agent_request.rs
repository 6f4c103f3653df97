//! Feeds arbitrary bytes to the agent's side of the protocol as its stdin
//! would: frame after frame through the request reader and decoder. A
//! decoded request must encode to bytes that decode the same again.

#![no_main]

use cutover_copy::protocol::{Request, read_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The whole input as one message body, then as a stream of frames.
    if let Ok(request) = Request::decode(data) {
        assert_eq!(Request::decode(&request.encode()).as_ref(), Ok(&request));
    }
    let mut input = data;
    while let Ok(Some(body)) = read_frame(&mut input) {
        if let Ok(request) = Request::decode(&body) {
            assert_eq!(Request::decode(&request.encode()).as_ref(), Ok(&request));
        }
    }
});
