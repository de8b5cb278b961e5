//! The Kiro upstream: event-stream codec, event decoding, request building, credentials and the
//! service that calls `generateAssistantResponse`.

pub mod eventstream;
pub mod auth;
