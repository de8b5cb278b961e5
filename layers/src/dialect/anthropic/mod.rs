//! The Anthropic Messages dialect: `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! [`parse_request`] turns the client's JSON into a [`ChatRequest`]; [`sse_stream`] and
//! [`collect_response`] turn the answer's [`ChatEvent`](crate::ChatEvent)s back into exactly what
//! the official SDKs and Claude Code expect; [`with_keepalive`] adds `ping` frames during silence.
//!
//! ```
//! use futures_util::{stream, StreamExt};
//! use kiro_layers::chat::{ChatEvent, EventStream, ResponseMeta};
//! use kiro_layers::dialect::anthropic;
//!
//! let body = br#"{"model":"claude-sonnet-4-5","max_tokens":1024,
//!                 "messages":[{"role":"user","content":"Hello"}]}"#;
//! let request = anthropic::parse_request(body).unwrap();
//! assert_eq!(request.max_tokens, Some(1024));
//!
//! let events: EventStream = Box::pin(stream::iter([Ok(ChatEvent::TextDelta("Hi!".into()))]));
//! let meta = ResponseMeta {
//!     id: anthropic::new_message_id(),
//!     model: request.model.clone(),
//!     created: 0,
//!     input_tokens_estimate: 8,
//!     context_window: 200_000,
//!     include_usage: false,
//! };
//! let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let frames: Vec<_> = runtime.block_on(anthropic::sse_stream(events, meta).collect::<Vec<_>>());
//! let text = frames.concat();
//! let text = String::from_utf8_lossy(&text);
//! assert!(text.starts_with("event: message_start\n"));
//! assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
//! ```

mod blocks;
mod keepalive;
mod request;
mod response;
mod sse;

use rand::Rng;

use crate::chat::ChatRequest;
use crate::error::GatewayError;

pub use keepalive::{with_keepalive, KeepAlive, DEFAULT_KEEPALIVE};
pub use response::{collect_response, sse_stream};
pub use sse::write_json_string;

/// Parses the body of `POST /v1/messages`. Every rule violation is a 400 `invalid_request_error`
/// naming the field (`messages.2.content.0.source.type`).
pub fn parse_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    request::parse(body, request::MaxTokens::Required)
}

/// What the request's headers allow beyond the plain Messages API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// `system` messages inside `messages` are accepted (their text joins the system prompt).
    /// Claude Code sends them with `anthropic-beta: per-turn-control-…` for newer models.
    pub system_messages: bool,
}

impl ParseOptions {
    /// Reads the `anthropic-beta` headers.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let system_messages = headers
            .get_all("anthropic-beta")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|beta| beta.trim().starts_with("per-turn-control-"));
        ParseOptions { system_messages }
    }
}

/// [`parse_request`] with what the headers allow.
pub fn parse_request_with(body: &[u8], options: ParseOptions) -> Result<ChatRequest, GatewayError> {
    request::parse_with(body, request::MaxTokens::Required, options.system_messages)
}

/// Answers `POST /v1/messages/count_tokens`: the estimated input tokens of the same body
/// `/v1/messages` takes (`max_tokens` may be left out). Linear in the body size.
pub fn count_tokens(body: &[u8]) -> Result<u64, GatewayError> {
    count_tokens_for_model(body, ParseOptions::default()).map(|(_, tokens)| tokens)
}

/// Like [`count_tokens`], also returning the `model` the body names, so the caller can resolve
/// it the way `/v1/messages` does (aliases, normalisation, 404 for unknown names).
pub fn count_tokens_for_model(
    body: &[u8],
    options: ParseOptions,
) -> Result<(String, u64), GatewayError> {
    let request = request::parse_with(body, request::MaxTokens::Optional, options.system_messages)?;
    let tokens = crate::tokens::estimate_request_tokens(&request);
    Ok((request.model, tokens))
}

/// A fresh message id in Anthropic's shape: `msg_01` and 22 base62 characters.
pub fn new_message_id() -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(28);
    id.push_str("msg_01");
    for _ in 0..22 {
        id.push(char::from(BASE62[rng.gen_range(0..BASE62.len())]));
    }
    id
}
