//! The response body type every layer returns: boxed, `Send`, never failing (errors are written
//! into the body in the client's dialect before it ends).

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;

/// The body of every response the stack produces.
pub type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// A body holding `bytes` at once.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed_unsync()
}

/// A body fed by a stream of chunks (SSE). The dialect encoders batch what is ready together
/// into one chunk themselves, so each chunk becomes one body frame as it is.
pub fn streaming<S>(chunks: S) -> ResponseBody
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    StreamBody::new(chunks.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)))).boxed_unsync()
}
