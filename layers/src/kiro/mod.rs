//! The Kiro upstream: event-stream codec, event decoding, request building, credentials and the
//! service that calls `generateAssistantResponse`.

pub mod errors;
pub mod events;
pub mod eventstream;
