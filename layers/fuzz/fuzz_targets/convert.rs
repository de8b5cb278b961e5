//! Fuzz target: the request converter on whatever the dialect parsers accept.
//!
//! The first byte picks the dialect (OpenAI chat, Anthropic Messages or OpenAI Responses). Every request the converter builds must pass the strict
//! validator (the fake upstream's rules, without the size limit): a body Kiro would refuse as
//! "Improperly formed request." is a bug in the converter, not the client's fault.
#![no_main]

use kiro_layers::dialect::{anthropic, openai, responses};
use kiro_layers::kiro::request::{build_request, BuildOptions};
use kiro_layers::kiro::validate::{validate_request, ValidationRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&which, body)) = input.split_first() else { return };
    let parsed = match which % 3 {
        0 => openai::parse_request(body),
        1 => anthropic::parse_request(body),
        _ => responses::parse_body(body)
            .and_then(|body| responses::parse_request(body, Vec::new()))
            .map(|(request, _context)| request),
    };
    let Ok(request) = parsed else { return };
    let Ok(built) = build_request(
        &request,
        "claude-sonnet-4.5",
        Some("arn:aws:codewhisperer:us-east-1:123456789012:profile/FUZZ"),
        &BuildOptions::default(),
    ) else {
        return;
    };
    let value: serde_json::Value =
        serde_json::from_slice(&built.body).expect("the converter emits valid JSON");
    let rules = ValidationRules {
        max_payload_bytes: usize::MAX,
        ..ValidationRules::default()
    };
    if let Err(rejection) = validate_request(&value, &rules) {
        panic!("converter built a body the strict upstream refuses: {rejection:?}");
    }
});
