//! [`decode_body`]: an HTTP body stream in, the typed [`EventStream`] out.

use std::collections::VecDeque;
use std::fmt::Display;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use super::EventDecoder;
use crate::chat::{ChatEvent, EventStream};
use crate::error::GatewayError;
use crate::kiro::eventstream::Decoder;

/// Decodes a Kiro response body (a stream of byte chunks) into the typed event stream.
///
/// Events are yielded as soon as their frame is complete. The first failure is yielded as one
/// error and then the stream ends: a transport error, a framing error or a body that ends inside
/// a frame as [`GatewayError::upstream_stream`] naming what broke; an `exception`/`error` frame as
/// mapped by [`crate::kiro::errors::from_exception_frame`]. A tool call that
/// was started but never stopped is left as it is (the recover layer judges cut streams).
pub fn decode_body<S, E>(body: S) -> EventStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    Box::pin(BodyDecoder {
        body: Box::pin(body),
        frames: Decoder::new(),
        events: EventDecoder::new(),
        ready: VecDeque::new(),
        done: false,
    })
}

struct BodyDecoder<S> {
    body: Pin<Box<S>>,
    frames: Decoder,
    events: EventDecoder,
    ready: VecDeque<ChatEvent>,
    done: bool,
}

impl<S, E> Stream for BodyDecoder<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    type Item = Result<ChatEvent, GatewayError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.frames.next_frame() {
                Ok(Some(message)) => {
                    if let Err(error) = this.events.decode(&message, &mut this.ready) {
                        return this.fail(error);
                    }
                }
                Err(error) => {
                    return this.fail(GatewayError::upstream_stream(format!(
                        "The Kiro response stream is corrupt: {error}"
                    )));
                }
                Ok(None) => match ready!(this.body.as_mut().poll_next(cx)) {
                    Some(Ok(chunk)) => this.frames.push_bytes(chunk),
                    Some(Err(error)) => {
                        return this.fail(GatewayError::upstream_stream(format!(
                            "Reading the Kiro response body failed: {error}"
                        )));
                    }
                    None => {
                        this.done = true;
                        if let Err(error) = this.frames.finish() {
                            return Poll::Ready(Some(Err(GatewayError::upstream_stream(format!(
                                "The Kiro response was cut off: {error}"
                            )))));
                        }
                        if !this.events.open_tool_calls().is_empty() {
                            tracing::debug!(
                                open = this.events.open_tool_calls().len(),
                                "Kiro response ended with tool calls still open"
                            );
                        }
                    }
                },
            }
        }
    }
}

impl<S> BodyDecoder<S> {
    fn fail(&mut self, error: GatewayError) -> Poll<Option<Result<ChatEvent, GatewayError>>> {
        self.done = true;
        Poll::Ready(Some(Err(error)))
    }
}
