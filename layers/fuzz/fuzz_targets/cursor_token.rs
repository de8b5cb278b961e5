//! Fuzz target: arbitrary text as a pasted Cursor credential (a bare JWT, `<userId>::<jwt>`,
//! `<userId>%3A%3A<jwt>`), through the same functions `POST /admin/accounts` uses. Errors are
//! fine; panics are not, and an accepted token must be what the gateway promises to send on.
#![no_main]

use kiro_layers::cursor::auth::{session_token_from_input, token_expiry, token_type};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let _ = token_expiry(&text);
    let _ = token_type(&text);
    if let Ok(jwt) = session_token_from_input(&text) {
        assert_eq!(jwt.split('.').count(), 3, "accepted a token that is not a JWT: {jwt:?}");
        assert!(
            jwt.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "accepted a token with characters a JWT does not have: {jwt:?}"
        );
        assert_ne!(token_type(&jwt).as_deref(), Some("web"), "accepted a browser token");
        assert!(!jwt.contains("::"), "the cookie's user id was kept: {jwt:?}");
    }
});
