//! Any bytes as a Responses API event stream: decoding never panics, and nothing after the
//! terminal event or an error is read.
#![no_main]

use confab::llm::{Api, decode_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let events = decode_body(Api::Responses, body);
    if let Some(end) = events.iter().position(Result::is_err) {
        assert_eq!(end + 1, events.len(), "nothing is read after an error");
    }
});
