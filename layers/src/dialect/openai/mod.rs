//! The OpenAI Chat Completions dialect (`POST /v1/chat/completions`).
//!
//! [`parse_request`] turns the client's JSON into a [`ChatRequest`](crate::chat::ChatRequest);
//! [`sse_stream`] encodes the answer's [`EventStream`](crate::chat::EventStream) as
//! `chat.completion.chunk` server-sent events, and [`collect_response`] folds it into one
//! `chat.completion` body.
//!
//! ```
//! use futures_util::{stream, StreamExt};
//! use kiro_layers::chat::{ChatEvent, EventStream, ResponseMeta, StopReason};
//! use kiro_layers::dialect::openai;
//!
//! # tokio_test::block_on(async {
//! let request = openai::parse_request(
//!     br#"{"model":"claude-sonnet-4.5","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#,
//! )
//! .unwrap();
//! assert!(request.stream);
//!
//! let events: EventStream = Box::pin(stream::iter([
//!     Ok(ChatEvent::TextDelta("Hello!".into())),
//!     Ok(ChatEvent::Stop(StopReason::EndTurn)),
//! ]));
//! let meta = ResponseMeta {
//!     id: "chatcmpl-1".into(),
//!     model: request.model.clone(),
//!     created: 1_700_000_000,
//!     input_tokens_estimate: 3,
//!     context_window: 200_000,
//!     include_usage: request.include_usage,
//! };
//! let body: Vec<bytes::Bytes> = openai::sse_stream(events, meta).collect().await;
//! assert!(body.last().unwrap().ends_with(b"data: [DONE]\n\n"));
//! # });
//! ```
//!
//! Usage: when the client sets `stream_options.include_usage`, usage comes in a last chunk with
//! `"choices": []` exactly as OpenAI sends it, and nowhere else (clients such as LangChain add up
//! usage across chunks, so sending it twice would double-count). Otherwise it rides on the
//! finish chunk, as kiro-gateway does; SDKs accept the extra field.

mod collect;
pub(crate) mod content;
pub(crate) mod fields;
mod request;
mod stream;
#[cfg(test)]
mod tests;

pub use collect::collect_response;
pub use request::parse_request;
pub use stream::sse_stream;

use crate::chat::{StopReason, UsageTally};

/// The numbers of an OpenAI `usage` object.
#[derive(Debug, Clone, Copy, PartialEq)]
struct UsageFigures {
    /// All prompt tokens, cached ones included (OpenAI counts cache hits inside the prompt).
    prompt: u64,
    completion: u64,
    /// Prompt tokens served from the cache.
    cached: u64,
    /// Kiro credits, when the upstream metered any.
    credits: Option<f64>,
}

impl UsageFigures {
    fn new(tally: &UsageTally, input_tokens_estimate: u64, context_window: u64) -> Self {
        let usage = tally.usage(input_tokens_estimate, context_window);
        let credits = tally.credits();
        UsageFigures {
            prompt: usage.input_tokens
                + usage.cache_read_input_tokens
                + usage.cache_write_input_tokens,
            completion: usage.output_tokens,
            cached: usage.cache_read_input_tokens,
            credits: (credits > 0.0 && credits.is_finite()).then_some(credits),
        }
    }

    fn total(&self) -> u64 {
        self.prompt + self.completion
    }
}

/// The OpenAI `finish_reason`: the upstream's stop reason, or `tool_calls`/`stop` derived from
/// what was streamed when the upstream gave none.
fn finish_reason(stop: Option<StopReason>, made_tool_calls: bool) -> &'static str {
    match stop {
        Some(StopReason::ToolUse) => "tool_calls",
        Some(StopReason::MaxTokens) => "length",
        Some(StopReason::ContentFiltered) => "content_filter",
        Some(StopReason::StopSequence) => "stop",
        Some(StopReason::EndTurn) | None if made_tool_calls => "tool_calls",
        Some(StopReason::EndTurn) | None => "stop",
    }
}
