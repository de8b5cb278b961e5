//! [`ChatEvent`] stream -> Anthropic SSE frames, or one Messages JSON body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};

use super::blocks::{BlockDelta, BlockSink, BlockStart, BlockTracker};
use super::sse::{self, DeltaKind};
#[cfg(doc)]
use crate::chat::UsageTally;
use crate::chat::{ChatEvent, Dialect, EventStream, ResponseMeta, TokenUsage};
use crate::error::GatewayError;

/// Frames are batched while events are ready, up to about this many bytes per chunk.
const CHUNK_TARGET: usize = 16 * 1024;

/// Encodes an answer as Anthropic SSE: `message_start`, the content blocks in order, then
/// `message_delta` and `message_stop`. An error after the start becomes an `error` event that
/// ends the stream.
///
/// `message_start` goes out on the first poll, before any event arrives, as Anthropic's API does;
/// a caller that wants an HTTP error status for a failure before any output must look at the first
/// event before calling this. Usage in `message_start` is the prompt estimate with
/// `output_tokens: 0`; `message_delta` carries the final figures from [`UsageTally`]
/// (real counts, else derived from context usage, else estimates). Wrap the result in
/// [`with_keepalive`](super::with_keepalive) to add `ping` frames during silence.
pub fn sse_stream(
    events: EventStream,
    meta: ResponseMeta,
) -> impl Stream<Item = Bytes> + Send + 'static {
    AnthropicSse {
        events,
        meta,
        tracker: BlockTracker::default(),
        started: false,
        done: false,
        buf: BytesMut::with_capacity(1024),
    }
}

struct AnthropicSse {
    events: EventStream,
    meta: ResponseMeta,
    tracker: BlockTracker,
    started: bool,
    done: bool,
    buf: BytesMut,
}

struct SseSink<'a>(&'a mut BytesMut);

impl BlockSink for SseSink<'_> {
    fn start(&mut self, index: usize, block: BlockStart<'_>) {
        match block {
            BlockStart::Thinking => sse::thinking_start(self.0, index),
            BlockStart::Text => sse::text_start(self.0, index),
            BlockStart::ToolUse { id, name } => sse::tool_use_start(self.0, index, id, name),
        }
    }

    fn delta(&mut self, index: usize, delta: BlockDelta<'_>) {
        let (kind, value) = match delta {
            BlockDelta::Thinking(text) => (DeltaKind::Thinking, text),
            BlockDelta::Signature(text) => (DeltaKind::Signature, text),
            BlockDelta::Text(text) => (DeltaKind::Text, text),
            BlockDelta::InputJson(text) => (DeltaKind::InputJson, text),
        };
        sse::block_delta(self.0, index, kind, value);
    }

    fn stop(&mut self, index: usize) {
        sse::block_stop(self.0, index);
    }
}

impl Stream for AnthropicSse {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if !this.started {
            this.started = true;
            sse::message_start(&mut this.buf, &this.meta);
            return Poll::Ready(Some(this.buf.split().freeze()));
        }
        while !this.done && this.buf.len() < CHUNK_TARGET {
            match this.events.as_mut().poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(event))) => {
                    this.tracker.apply(&event, &mut SseSink(&mut this.buf));
                }
                Poll::Ready(Some(Err(err))) => {
                    this.done = true;
                    let body =
                        serde_json::to_vec(&err.body(Dialect::Anthropic)).unwrap_or_default();
                    sse::error(&mut this.buf, &body);
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let stop_reason = this.tracker.finish(&mut SseSink(&mut this.buf));
                    let usage = this
                        .tracker
                        .tally
                        .usage(this.meta.input_tokens_estimate, this.meta.context_window);
                    let stop_sequence = this.tracker.stop_sequence().map(str::to_owned);
                    sse::message_end(&mut this.buf, stop_reason, stop_sequence.as_deref(), &usage);
                }
            }
        }
        if !this.buf.is_empty() {
            Poll::Ready(Some(this.buf.split().freeze()))
        } else if this.done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

#[derive(Debug)]
enum Collected {
    Thinking {
        thinking: String,
        signature: String,
    },
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input_json: String,
    },
}

#[derive(Default)]
struct CollectSink(Vec<Collected>);

impl BlockSink for CollectSink {
    fn start(&mut self, _index: usize, block: BlockStart<'_>) {
        self.0.push(match block {
            BlockStart::Thinking => Collected::Thinking {
                thinking: String::new(),
                signature: String::new(),
            },
            BlockStart::Text => Collected::Text(String::new()),
            BlockStart::ToolUse { id, name } => Collected::ToolUse {
                id: id.to_owned(),
                name: name.to_owned(),
                input_json: String::new(),
            },
        });
    }

    fn delta(&mut self, index: usize, delta: BlockDelta<'_>) {
        match (self.0.get_mut(index), delta) {
            (Some(Collected::Thinking { thinking, .. }), BlockDelta::Thinking(text)) => {
                thinking.push_str(text)
            }
            (Some(Collected::Thinking { signature, .. }), BlockDelta::Signature(text)) => {
                signature.push_str(text)
            }
            (Some(Collected::Text(buf)), BlockDelta::Text(text)) => buf.push_str(text),
            (Some(Collected::ToolUse { input_json, .. }), BlockDelta::InputJson(text)) => {
                input_json.push_str(text)
            }
            _ => tracing::warn!(index, "content delta for a block of another kind dropped"),
        }
    }

    fn stop(&mut self, _index: usize) {}
}

fn block_json(block: Collected) -> Value {
    match block {
        Collected::Thinking {
            thinking,
            signature,
        } => json!({"type": "thinking", "thinking": thinking, "signature": signature}),
        Collected::Text(text) => json!({"type": "text", "text": text}),
        Collected::ToolUse {
            id,
            name,
            input_json,
        } => {
            let input = if input_json.trim().is_empty() {
                json!({})
            } else {
                match serde_json::from_str::<Value>(&input_json) {
                    Ok(input @ Value::Object(_)) => input,
                    _ => {
                        // A cut-off call: the client still needs an object; say so in the logs.
                        tracing::warn!(tool = %name, "tool input is not a JSON object; sent as {{}}");
                        json!({})
                    }
                }
            };
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
    }
}

fn usage_json(usage: &TokenUsage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "output_tokens": usage.output_tokens,
    })
}

/// Collects a whole answer into one Anthropic Messages JSON body (the non-streaming response).
/// Any error in the stream fails the whole response.
pub async fn collect_response(
    mut events: EventStream,
    meta: ResponseMeta,
) -> Result<Bytes, GatewayError> {
    let mut tracker = BlockTracker::default();
    let mut sink = CollectSink::default();
    while let Some(event) = events.next().await {
        let event: ChatEvent = event?;
        tracker.apply(&event, &mut sink);
    }
    let stop_reason = tracker.finish(&mut sink);
    let usage = tracker
        .tally
        .usage(meta.input_tokens_estimate, meta.context_window);
    let content: Vec<Value> = sink.0.into_iter().map(block_json).collect();
    let body = json!({
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": tracker.stop_sequence(),
        "usage": usage_json(&usage),
    });
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|err| GatewayError::internal(format!("could not serialise the response: {err}")))
}
