//! [`EventStream`] -> OpenAI `chat.completion.chunk` server-sent events.
//!
//! Every chunk is written by hand into one reused output buffer: the envelope (`id`, `object`,
//! `created`, `model`) is rendered once per response and copied, the delta text is escaped
//! straight into place. Each event that carries output becomes its own SSE chunk at once; the
//! chunks of events that are ready together leave as one body frame. Nothing is held back until
//! the end except the finish chunk, which must wait for the upstream's usage.

use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{stream, Stream};

use super::{finish_reason, UsageFigures};
use crate::chat::{ChatEvent, Dialect, EventStream, ResponseMeta, StopReason, UsageTally};
use crate::dialect::json::{str_size_hint, write_str, write_u64};
use crate::error::GatewayError;

/// Opens the single choice of a chunk, up to its `delta` value.
const CHOICE_OPEN: &[u8] = b",\"choices\":[{\"index\":0,\"delta\":";
/// Closes a content chunk.
const CHOICE_CLOSE: &[u8] = b",\"finish_reason\":null}]}\n\n";
/// Room for a delta's keys and punctuation around its escaped text.
const DELTA_OVERHEAD: usize = 96;
/// Chunks are batched while events are ready, up to about this many bytes per body frame.
const CHUNK_TARGET: usize = 16 * 1024;
/// The encoder's first buffer. It lives as long as the stream, and a slow stream's frames are
/// a few hundred bytes: starting at `CHUNK_TARGET` cost every open stream 17 KiB for nothing.
/// A burst grows it (doubling); once a frame is written its room is reused.
const INITIAL_BUFFER: usize = 512;

/// Encodes `events` as an OpenAI SSE body: a role chunk, one chunk per text, reasoning or
/// tool-call event, a finish chunk (plus a usage chunk when `meta.include_usage`), then
/// `data: [DONE]`. An error from `events` becomes an in-band
/// `data: {"error":{...}}` event and ends the stream without a finish reason.
pub fn sse_stream(
    events: EventStream,
    meta: ResponseMeta,
) -> impl Stream<Item = Bytes> + Send + 'static {
    SseEncoder::new(events, meta)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The role chunk has not been sent yet.
    Head,
    /// Relaying events.
    Body,
    /// Finished (normally or with an error); the upstream stream is dropped.
    Done,
}

/// A tool call seen in this answer; its position in the list is its OpenAI `index`.
struct ToolCall {
    id: ByteString,
    /// Some arguments text went out; a call that got none is sent `{}` so it parses.
    sent_arguments: bool,
}

struct SseEncoder {
    events: EventStream,
    /// `data: {"id":...,"object":"chat.completion.chunk","created":...,"model":...`
    envelope: Bytes,
    include_usage: bool,
    input_tokens_estimate: u64,
    context_window: u64,
    tally: UsageTally,
    tool_calls: Vec<ToolCall>,
    stop: Option<StopReason>,
    phase: Phase,
    /// Output being gathered; its spare capacity is reused from one batch to the next.
    buf: BytesMut,
}

impl SseEncoder {
    fn new(events: EventStream, meta: ResponseMeta) -> Self {
        let mut envelope = BytesMut::with_capacity(96 + meta.id.len() + meta.model.len());
        envelope.put_slice(b"data: {\"id\":");
        write_str(&mut envelope, &meta.id);
        envelope.put_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        write_u64(&mut envelope, meta.created);
        envelope.put_slice(b",\"model\":");
        write_str(&mut envelope, &meta.model);
        SseEncoder {
            events,
            envelope: envelope.freeze(),
            include_usage: meta.include_usage,
            input_tokens_estimate: meta.input_tokens_estimate,
            context_window: meta.context_window,
            tally: UsageTally::default(),
            tool_calls: Vec::new(),
            stop: None,
            phase: Phase::Head,
            buf: BytesMut::with_capacity(INITIAL_BUFFER),
        }
    }

    /// Appends one content chunk whose `delta` object `write_delta` writes.
    fn write_chunk(&self, out: &mut BytesMut, write_delta: impl FnOnce(&mut BytesMut)) {
        out.put_slice(&self.envelope);
        out.put_slice(CHOICE_OPEN);
        write_delta(out);
        out.put_slice(CHOICE_CLOSE);
    }

    /// Appends one content chunk for `text`, reserving room for it and the fixed parts first.
    fn chunk_for(&self, out: &mut BytesMut, text: &str, write_delta: impl FnOnce(&mut BytesMut)) {
        out.reserve(
            self.envelope.len()
                + CHOICE_OPEN.len()
                + DELTA_OVERHEAD
                + str_size_hint(text)
                + CHOICE_CLOSE.len(),
        );
        self.write_chunk(out, write_delta);
    }

    /// Appends the bytes for one event (nothing when it carries nothing the client sees yet).
    fn encode(&mut self, event: ChatEvent, out: &mut BytesMut) {
        self.tally.observe(&event);
        match event {
            ChatEvent::TextDelta(text) if !text.is_empty() => self.chunk_for(out, &text, |out| {
                out.put_slice(b"{\"content\":");
                write_str(out, &text);
                out.put_u8(b'}');
            }),
            ChatEvent::ReasoningDelta(text) if !text.is_empty() => {
                self.chunk_for(out, &text, |out| {
                    out.put_slice(b"{\"reasoning_content\":");
                    write_str(out, &text);
                    out.put_u8(b'}');
                })
            }
            ChatEvent::ToolUseStart { id, name } => {
                if self.tool_index(&id).is_some() {
                    return;
                }
                let index = self.tool_calls.len() as u64;
                self.chunk_for(out, &name, |out| {
                    out.put_slice(b"{\"tool_calls\":[{\"index\":");
                    write_u64(out, index);
                    out.put_slice(b",\"id\":");
                    write_str(out, &id);
                    out.put_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                    write_str(out, &name);
                    out.put_slice(b",\"arguments\":\"\"}}]}");
                });
                self.tool_calls.push(ToolCall {
                    id,
                    sent_arguments: false,
                });
            }
            ChatEvent::ToolUseInput { id, fragment } if !fragment.is_empty() => {
                let Some(index) = self.tool_index(&id) else {
                    tracing::warn!("tool-call arguments for a call that never started; dropped");
                    return;
                };
                self.tool_calls[index].sent_arguments = true;
                self.arguments_chunk(out, index, &fragment);
            }
            ChatEvent::ToolUseStop { id } => {
                let Some(index) = self.tool_index(&id) else {
                    return;
                };
                if !self.tool_calls[index].sent_arguments {
                    self.tool_calls[index].sent_arguments = true;
                    self.arguments_chunk(out, index, "{}");
                }
            }
            ChatEvent::Stop(reason) => self.stop = Some(reason),
            _ => {}
        }
    }

    fn tool_index(&self, id: &ByteString) -> Option<usize> {
        self.tool_calls.iter().position(|call| call.id == *id)
    }

    fn arguments_chunk(&self, out: &mut BytesMut, index: usize, arguments: &str) {
        self.chunk_for(out, arguments, |out| {
            write_arguments_delta(out, index, arguments)
        });
    }

    /// Appends arguments for calls that never got any, the finish chunk, the usage chunk if
    /// asked for, and `[DONE]`.
    fn finish(&mut self, out: &mut BytesMut) {
        out.reserve(3 * self.envelope.len() + 512);
        for index in 0..self.tool_calls.len() {
            if !self.tool_calls[index].sent_arguments {
                self.tool_calls[index].sent_arguments = true;
                self.write_chunk(out, |out| write_arguments_delta(out, index, "{}"));
            }
        }
        let usage = UsageFigures::new(&self.tally, self.input_tokens_estimate, self.context_window);
        let reason = finish_reason(self.stop, !self.tool_calls.is_empty());
        out.put_slice(&self.envelope);
        out.put_slice(CHOICE_OPEN);
        out.put_slice(b"{},\"finish_reason\":\"");
        out.put_slice(reason.as_bytes());
        out.put_slice(b"\"}]");
        if !self.include_usage {
            out.put_slice(b",\"usage\":");
            write_usage(out, &usage);
        }
        out.put_slice(b"}\n\n");
        if self.include_usage {
            out.put_slice(&self.envelope);
            out.put_slice(b",\"choices\":[],\"usage\":");
            write_usage(out, &usage);
            out.put_slice(b"}\n\n");
        }
        out.put_slice(b"data: [DONE]\n\n");
    }

    /// Lets go of the upstream (and whatever it holds, such as a pooled credential) right away.
    fn close_upstream(&mut self) {
        self.phase = Phase::Done;
        self.events = Box::pin(stream::empty());
    }
}

impl Stream for SseEncoder {
    type Item = Bytes;

    /// Encodes every event that is ready right now into one buffer (up to [`CHUNK_TARGET`]), so
    /// a burst of deltas costs one body frame and one write; never waits for more.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        let mut out = std::mem::take(&mut this.buf);
        if this.phase == Phase::Head {
            this.phase = Phase::Body;
            this.chunk_for(&mut out, "", |out| {
                out.put_slice(b"{\"role\":\"assistant\",\"content\":\"\"}");
            });
        }
        while this.phase == Phase::Body && out.len() < CHUNK_TARGET {
            match this.events.as_mut().poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(event))) => this.encode(event, &mut out),
                Poll::Ready(Some(Err(error))) => {
                    this.close_upstream();
                    write_error_event(&mut out, &error);
                }
                Poll::Ready(None) => {
                    this.finish(&mut out);
                    this.close_upstream();
                }
            }
        }
        let ready = out.split().freeze();
        this.buf = out;
        if !ready.is_empty() {
            Poll::Ready(Some(ready))
        } else if this.phase == Phase::Done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

fn write_arguments_delta(out: &mut BytesMut, index: usize, arguments: &str) {
    out.put_slice(b"{\"tool_calls\":[{\"index\":");
    write_u64(out, index as u64);
    out.put_slice(b",\"function\":{\"arguments\":");
    write_str(out, arguments);
    out.put_slice(b"}}]}");
}

fn write_usage(out: &mut BytesMut, usage: &UsageFigures) {
    out.put_slice(b"{\"prompt_tokens\":");
    write_u64(out, usage.prompt);
    out.put_slice(b",\"completion_tokens\":");
    write_u64(out, usage.completion);
    out.put_slice(b",\"total_tokens\":");
    write_u64(out, usage.total());
    out.put_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
    write_u64(out, usage.cached);
    out.put_u8(b'}');
    if let Some(credits) = usage.credits {
        // `UsageFigures` keeps only finite credits, whose Display form is valid JSON.
        let _ = write!(out, ",\"credits_used\":{credits}");
    }
    out.put_u8(b'}');
}

/// `data: {"error":{...}}`: how OpenAI reports a failure once the stream has begun; the SDKs
/// raise it as an API error.
fn write_error_event(out: &mut BytesMut, error: &GatewayError) {
    let body = serde_json::to_vec(&error.body(Dialect::OpenAi)).unwrap_or_else(|_| {
        br#"{"error":{"message":"The upstream stream failed.","type":"upstream_error","code":null}}"#
            .to_vec()
    });
    out.reserve(body.len() + 8);
    out.put_slice(b"data: ");
    out.put_slice(&body);
    out.put_slice(b"\n\n");
}
