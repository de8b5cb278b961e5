//! [`decode_body`]: an HTTP body stream in, the typed [`EventStream`] out.

use std::collections::VecDeque;
use std::fmt::Display;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

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
    let state = BodyDecoder {
        body: Box::pin(body),
        frames: Decoder::new(),
        events: EventDecoder::new(),
        ready: VecDeque::new(),
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        |mut state| async move {
            let item = state.next_item().await?;
            Some((item, state))
        },
    ))
}

struct BodyDecoder<S> {
    body: Pin<Box<S>>,
    frames: Decoder,
    events: EventDecoder,
    ready: VecDeque<ChatEvent>,
    done: bool,
}

impl<S, E> BodyDecoder<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    async fn next_item(&mut self) -> Option<Result<ChatEvent, GatewayError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            match self.frames.next_message() {
                Ok(Some(message)) => {
                    if let Err(error) = self.events.decode(&message, &mut self.ready) {
                        return self.fail(error);
                    }
                }
                Err(error) => {
                    return self.fail(GatewayError::upstream_stream(format!(
                        "The Kiro response stream is corrupt: {error}"
                    )));
                }
                Ok(None) => match self.body.next().await {
                    Some(Ok(chunk)) => self.frames.push_bytes(chunk),
                    Some(Err(error)) => {
                        return self.fail(GatewayError::upstream_stream(format!(
                            "Reading the Kiro response body failed: {error}"
                        )));
                    }
                    None => {
                        self.done = true;
                        if let Err(error) = self.frames.finish() {
                            return Some(Err(GatewayError::upstream_stream(format!(
                                "The Kiro response was cut off: {error}"
                            ))));
                        }
                        if !self.events.open_tool_calls().is_empty() {
                            tracing::debug!(
                                open = self.events.open_tool_calls().len(),
                                "Kiro response ended with tool calls still open"
                            );
                        }
                    }
                },
            }
        }
    }

    fn fail(&mut self, error: GatewayError) -> Option<Result<ChatEvent, GatewayError>> {
        self.done = true;
        Some(Err(error))
    }
}
