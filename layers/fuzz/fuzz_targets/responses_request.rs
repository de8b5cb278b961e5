//! Fuzz target: arbitrary bytes through the Responses request parser (`/v1/responses`), as if
//! the first half of the bytes were the request and a stored conversation (for
//! `previous_response_id`) were the second. Errors are fine; panics are not.
#![no_main]

use kiro_layers::dialect::responses::{parse_body, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // A NUL byte, if any, splits the request from the stored items that go in front of it.
    let (body, prior) = match input.iter().position(|&b| b == 0) {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[][..]),
    };
    let prior_items = match serde_json::from_slice::<serde_json::Value>(prior) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let Ok(body) = parse_body(body) else { return };
    if let Ok((request, _context)) = parse_request(body, prior_items) {
        // The estimator runs on every parsed request; it must not panic either.
        let _ = kiro_layers::tokens::estimate_request_tokens(&request);
    }
});
