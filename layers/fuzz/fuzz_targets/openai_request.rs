//! Fuzz target: arbitrary bytes through the OpenAI request parser. Errors are fine; panics are not.
#![no_main]

use kiro_layers::dialect::openai::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(request) = parse_request(input) {
        // The estimator runs on every parsed request; it must not panic either.
        let _ = kiro_layers::tokens::estimate_request_tokens(&request);
    }
});
