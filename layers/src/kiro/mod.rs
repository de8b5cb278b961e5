//! The Kiro upstream: event-stream codec, event decoding, request building, credentials and the
//! service that calls `generateAssistantResponse`.

pub mod auth;
pub mod catalog;
pub mod errors;
pub mod events;
pub mod eventstream;
pub mod headers;
pub mod http;
pub mod lanes;
pub mod request;
pub mod service;
pub mod validate;
