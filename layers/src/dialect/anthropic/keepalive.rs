//! [`with_keepalive`]: `ping` frames while the upstream is silent, so proxies and clients with
//! idle timeouts keep the connection open during long reasoning.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::sse::PING_FRAME;

/// Silence after which a `ping` is sent, as Anthropic's own API does.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);

pin_project! {
    /// An SSE byte stream with `event: ping` frames inserted after every `every` of silence.
    /// Ends when the inner stream ends. Built by [`with_keepalive`].
    pub struct KeepAlive<S> {
        #[pin]
        inner: S,
        #[pin]
        timer: Sleep,
        every: Duration,
        done: bool,
    }
}

/// Wraps an SSE byte stream so a `ping` frame goes out whenever `every` passes without a frame.
/// Needs a tokio runtime (it uses tokio's timer).
pub fn with_keepalive<S>(stream: S, every: Duration) -> KeepAlive<S>
where
    S: Stream<Item = Bytes>,
{
    KeepAlive {
        inner: stream,
        timer: tokio::time::sleep(every),
        every,
        done: false,
    }
}

impl<S: Stream<Item = Bytes>> Stream for KeepAlive<S> {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(frame)) => {
                this.timer.as_mut().reset(Instant::now() + *this.every);
                Poll::Ready(Some(frame))
            }
            Poll::Ready(None) => {
                *this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.timer.as_mut().reset(Instant::now() + *this.every);
                    Poll::Ready(Some(Bytes::from_static(PING_FRAME)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
