//! Fuzz target: arbitrary bytes through the Anthropic request parser and the token counter.
#![no_main]

use kiro_layers::dialect::anthropic::{count_tokens, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = parse_request(input);
    let _ = count_tokens(input);
});
