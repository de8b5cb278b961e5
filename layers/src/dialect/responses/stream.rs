//! [`EventStream`] -> the Responses server-sent event sequence.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, Stream};
use tokio::time::{Instant, Sleep};

use super::writer::{Ending, ResponseWriter};
use super::{OnFinished, ResponseContext};
use crate::chat::{EventStream, ResponseMeta};

/// Events that are ready together leave in one body frame, up to about this many bytes.
const CHUNK_TARGET: usize = 16 * 1024;

/// Silence after which a `response.in_progress` event goes out. Codex's idle timer counts parsed
/// events only (SSE comments do not reset it), and it gives up after 300 s by default; a long
/// Kiro silence (slow first token, long reasoning) must not look like a dead stream.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Encodes `events` as a Responses SSE body: `response.created`, `response.in_progress`, the
/// items' events, then exactly one of `response.completed`, `response.incomplete` or
/// `response.failed` (also for an answer that breaks its `text.format`), after which the body
/// ends. `on_finished` receives a completed or
/// incomplete response (to store it); a failed one is not kept.
pub fn sse_stream(
    events: EventStream,
    meta: ResponseMeta,
    context: ResponseContext,
    on_finished: Option<OnFinished>,
) -> impl Stream<Item = Bytes> + Send + 'static {
    ResponseSse {
        events,
        writer: ResponseWriter::new(meta, context, true),
        started: false,
        done: false,
        on_finished,
        keepalive: Box::pin(tokio::time::sleep(KEEPALIVE)),
    }
}

struct ResponseSse {
    events: EventStream,
    writer: ResponseWriter,
    started: bool,
    done: bool,
    on_finished: Option<OnFinished>,
    /// Fires after [`KEEPALIVE`] without output.
    keepalive: Pin<Box<Sleep>>,
}

impl ResponseSse {
    /// Lets go of the upstream (and whatever it holds, such as a pooled credential) right away.
    fn close_upstream(&mut self) {
        self.done = true;
        self.events = Box::pin(stream::empty());
    }

    fn finished(&mut self, ending: Ending) {
        if let Some(on_finished) = self.on_finished.take() {
            on_finished(self.writer.finished(ending));
        }
    }
}

impl Stream for ResponseSse {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if !this.started {
            this.started = true;
            this.writer.start();
        }
        while !this.done && this.writer.out.len() < CHUNK_TARGET {
            match this.events.as_mut().poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(event))) => this.writer.event(event),
                Poll::Ready(Some(Err(error))) => {
                    this.close_upstream();
                    this.writer.fail(&error);
                }
                Poll::Ready(None) => {
                    this.close_upstream();
                    if let Ok(ending) = this.writer.finish() {
                        this.finished(ending);
                    }
                }
            }
        }
        let mut ready = this.writer.out.split().freeze();
        if ready.is_empty() && !this.done && this.keepalive.as_mut().poll(cx).is_ready() {
            this.writer.keepalive();
            ready = this.writer.out.split().freeze();
        }
        if !ready.is_empty() {
            this.keepalive.as_mut().reset(Instant::now() + KEEPALIVE);
            Poll::Ready(Some(ready))
        } else if this.done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
