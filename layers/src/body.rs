//! The response body type every layer returns: boxed, `Send`, never failing (errors are written
//! into the body in the client's dialect before it ends).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;

/// The body of every response the stack produces.
pub type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// Largest body chunk [`Coalesce`] builds from chunks that are ready together.
const MAX_COALESCED: usize = 64 * 1024;

/// A body holding `bytes` at once.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed_unsync()
}

/// A body fed by a stream of chunks (SSE). Chunks that are ready at the same moment go out as
/// one write; a chunk is never held back waiting for the next.
pub fn streaming<S>(chunks: S) -> ResponseBody
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let coalesced = Coalesce {
        inner: Box::pin(chunks),
        done: false,
    };
    StreamBody::new(coalesced.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)))).boxed_unsync()
}

/// Joins the chunks an inner stream has ready right now into one, so a burst of deltas costs one
/// body frame (and one write) instead of one each. It only ever takes what is already there:
/// the first `Pending` ends the batch, so streaming latency is unchanged.
struct Coalesce<S> {
    inner: Pin<Box<S>>,
    done: bool,
}

impl<S: Stream<Item = Bytes>> Stream for Coalesce<S> {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.done {
            return Poll::Ready(None);
        }
        let first = match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(chunk)) => chunk,
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => return Poll::Pending,
        };
        let mut batch: Option<BytesMut> = None;
        loop {
            let size = batch.as_ref().map_or(first.len(), BytesMut::len);
            if size >= MAX_COALESCED {
                break;
            }
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(next)) => {
                    let buffer = batch.get_or_insert_with(|| {
                        let mut buffer = BytesMut::with_capacity(first.len() + next.len() * 8);
                        buffer.extend_from_slice(&first);
                        buffer
                    });
                    buffer.extend_from_slice(&next);
                }
                Poll::Ready(None) => {
                    self.done = true;
                    break;
                }
                // The waker is registered: the inner stream will wake this task when it has more.
                Poll::Pending => break,
            }
        }
        Poll::Ready(Some(batch.map_or(first, BytesMut::freeze)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    #[tokio::test]
    async fn ready_chunks_are_joined_and_nothing_is_lost() {
        let chunks = stream::iter(vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")]);
        let out: Vec<Bytes> = Coalesce {
            inner: Box::pin(chunks),
            done: false,
        }
        .collect()
        .await;
        assert_eq!(out, vec![Bytes::from("abc")]);
    }

    #[tokio::test]
    async fn a_pending_inner_stream_ends_the_batch() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let mut coalesced = Coalesce {
            inner: Box::pin(tokio_stream_from(rx)),
            done: false,
        };
        tx.send(Bytes::from("first")).unwrap();
        assert_eq!(coalesced.next().await.unwrap(), "first");
        tx.send(Bytes::from("second")).unwrap();
        drop(tx);
        assert_eq!(coalesced.next().await.unwrap(), "second");
        assert!(coalesced.next().await.is_none());
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    ) -> impl Stream<Item = Bytes> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
