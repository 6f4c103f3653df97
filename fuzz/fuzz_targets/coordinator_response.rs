//! Feeds arbitrary bytes to the coordinator's side of the protocol as an
//! agent's stdout would: answer after answer (heartbeats skipped) through
//! the response reader and decoder. A decoded response must encode to
//! bytes that decode the same again.

#![no_main]

use cutover_copy::protocol::{Response, read_answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = Response::decode(data) {
        assert_eq!(Response::decode(&response.encode()).as_ref(), Ok(&response));
    }
    let mut input = data;
    while let Ok(Some(body)) = read_answer(&mut input) {
        if let Ok(response) = Response::decode(&body) {
            assert_eq!(Response::decode(&response.encode()).as_ref(), Ok(&response));
        }
    }
});
