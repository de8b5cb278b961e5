//! The OpenAI Responses dialect (`POST /v1/responses`), spoken by Codex CLI and by
//! `client.responses.*` in the OpenAI SDKs.
//!
//! [`parse_body`] + [`parse_request`] turn the client's JSON into a
//! [`ChatRequest`](crate::chat::ChatRequest) and a [`ResponseContext`] (how each tool was declared,
//! and what the response object echoes back); [`sse_stream`] encodes the answer's
//! [`EventStream`](crate::chat::EventStream) as the Responses event sequence, and
//! [`collect_response`] folds it into one response object. Both run the same [`writer`], so a
//! streamed and a collected answer hold the same items.
//!
//! ```
//! use futures_util::{stream, StreamExt};
//! use kiro_layers::chat::{ChatEvent, EventStream, ResponseMeta, StopReason};
//! use kiro_layers::dialect::responses;
//!
//! # tokio_test::block_on(async {
//! let body = responses::parse_body(br#"{"model":"claude-sonnet-4.5","stream":true,"input":"Hi"}"#).unwrap();
//! let (request, context) = responses::parse_request(body, Vec::new()).unwrap();
//! assert!(request.stream);
//!
//! let events: EventStream = Box::pin(stream::iter([
//!     Ok(ChatEvent::TextDelta("Hello!".into())),
//!     Ok(ChatEvent::Stop(StopReason::EndTurn)),
//! ]));
//! let meta = ResponseMeta {
//!     id: "resp_1".into(),
//!     model: request.model.clone(),
//!     created: 1_700_000_000,
//!     input_tokens_estimate: 3,
//!     context_window: 200_000,
//!     include_usage: true,
//! };
//! let body: Vec<bytes::Bytes> = responses::sse_stream(events, meta, context, None).collect().await;
//! let text = String::from_utf8(body.concat()).unwrap();
//! assert!(text.starts_with("event: response.created\n"));
//! assert!(text.contains("event: response.completed\n"));
//! # });
//! ```
//!
//! Endings (responses-api.md §3.6, §3.7, §4): the client's `max_output_tokens` reached, or a Kiro
//! cut recovery could not mend (both arrive as `Stop(MaxTokens)`), end in `response.incomplete`
//! with `incomplete_details.reason: "max_output_tokens"`, never `completed`; an error after the
//! stream began ends in `response.failed` with `response.error.code` (`context_length_exceeded`,
//! `rate_limit_exceeded` with "try again in N s", `server_error`), because Codex ignores a bare
//! `error` event. The body closes right after the terminal event: Codex ends its turn at EOF.

mod collect;
mod output;
mod payload;
mod request;
pub mod store;
mod stream;
#[cfg(test)]
mod tests;
pub mod tools;
mod writer;

pub use collect::collect_response;
pub use request::{parse_body, parse_request, RequestBody};
pub use stream::sse_stream;
pub use tools::{ToolKind, ToolKinds};

use serde_json::Value;

/// What the answer of one request needs to know about the request, besides [`ResponseMeta`](
/// crate::chat::ResponseMeta): how each tool was declared, and the fields the response object
/// echoes back.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseContext {
    /// The declared tools, by the name Kiro calls them.
    pub tools: ToolKinds,
    /// `reasoning.summary` was set: reasoning goes out as summary text, else as raw content.
    pub summary: bool,
    /// `include` asked for `reasoning.encrypted_content` (Kiro's signature travels there).
    pub encrypted_reasoning: bool,
    /// `text.format`.
    pub text_format: TextFormat,
    /// This request's own `input` items, kept for a stored response's conversation.
    pub input_items: Vec<Value>,
    /// Echoed request fields.
    pub echo: Echo,
}

/// Request fields the response object repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    /// `instructions`.
    pub instructions: Option<String>,
    /// `max_output_tokens`.
    pub max_output_tokens: Option<u32>,
    /// `tool_choice` as sent (`"auto"` when absent).
    pub tool_choice: Value,
    /// `tools` as sent.
    pub tools: Value,
    /// `parallel_tool_calls` (default true).
    pub parallel_tool_calls: bool,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `text` (with `format`).
    pub text: Value,
    /// `reasoning` (`effort`, `summary`).
    pub reasoning: Value,
    /// `metadata` (an object).
    pub metadata: Value,
    /// `store` (default true).
    pub store: bool,
    /// `previous_response_id`.
    pub previous_response_id: Option<String>,
    /// `user`.
    pub user: Option<String>,
}

/// `text.format`: Kiro has no structured output, so JSON modes become an instruction (and the
/// collected answer is unwrapped from a Markdown code fence, which models like to add).
#[derive(Debug, Clone, PartialEq)]
pub enum TextFormat {
    /// Plain text.
    Text,
    /// `json_object`: any JSON object.
    JsonObject,
    /// `json_schema`: an object matching `schema`.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// The JSON schema.
        schema: Value,
    },
}

impl TextFormat {
    /// The system-prompt instruction standing in for the format.
    pub fn instruction(&self) -> Option<String> {
        match self {
            TextFormat::Text => None,
            TextFormat::JsonObject => Some(
                "Answer with one valid JSON object and nothing else: no prose, no Markdown code fence."
                    .to_owned(),
            ),
            TextFormat::JsonSchema { name, schema } => Some(format!(
                "Answer with one valid JSON value named `{name}` that matches this JSON schema, and nothing else: no prose, no Markdown code fence.\n{schema}"
            )),
        }
    }

    /// True when the answer must be JSON.
    pub fn is_json(&self) -> bool {
        !matches!(self, TextFormat::Text)
    }
}

/// A finished response to keep (`store: true`): the response object, and the conversation so
/// far (earlier items, this request's input, this answer's output) for `previous_response_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedResponse {
    /// Response id (`resp_...`).
    pub id: String,
    /// The response object as JSON.
    pub response: Value,
    /// This request's input items followed by the output items.
    pub items: Vec<Value>,
}

/// Receives each finished (completed or incomplete) response, e.g. to store it.
pub type OnFinished = Box<dyn FnOnce(FinishedResponse) + Send>;
