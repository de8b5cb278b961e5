//! `RescueLayer`: the outermost stage. Turns every `GatewayError` into a response in the
//! client's dialect, so nothing reaches hyper or axum as an error (`Error = Infallible`), and
//! gives every request an id that is echoed in the `x-request-id` response header.
//!
//! The id is the client's own `x-request-id` when it is sane (at most 64 characters of
//! `[A-Za-z0-9_.-]`, not starting with `req_`, the prefix of the gateway's own ids), else a fresh
//! one. Every log line of the request carries it: the layer opens
//! a `request` span with a `request_id` field around the inner future and enters it again on
//! every poll of the response body, so lines logged while streaming belong to the request too.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::body::{full, ResponseBody};
use crate::chat::Dialect;
use crate::error::GatewayError;

/// The prefix of the ids the gateway makes.
const GENERATED_PREFIX: &str = "req_";

/// The id of one client request, shared by all its upstream attempts and log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// A fresh random id.
    pub fn generate() -> Self {
        RequestId(format!(
            "{GENERATED_PREFIX}{}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// True for an id made by [`RequestId::generate`] (clients cannot send that prefix).
    pub fn is_generated(&self) -> bool {
        self.0.starts_with(GENERATED_PREFIX)
    }

    /// The client's id, if it is safe to log and echo: 1 to 64 characters of `[A-Za-z0-9_.-]`.
    /// `req_` is reserved for [`RequestId::generate`], so an id with that prefix is always the
    /// gateway's own (unique) one.
    pub fn from_client(value: &str) -> Option<Self> {
        let sane = !value.is_empty()
            && value.len() <= 64
            && !value.starts_with(GENERATED_PREFIX)
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        sane.then(|| RequestId(value.to_owned()))
    }
}

/// Which dialect a path speaks: the Anthropic routes end in `/messages` (or `count_tokens`),
/// the Responses routes are `/responses` and `/responses/{id}`, everything else answers in
/// OpenAI's shape.
pub fn dialect_for_path(path: &str) -> Dialect {
    let path = path.trim_end_matches('/');
    if path.ends_with("/messages") || path.ends_with("/messages/count_tokens") {
        Dialect::Anthropic
    } else if path.ends_with("/responses") || path.contains("/responses/") {
        Dialect::Responses
    } else {
        Dialect::OpenAi
    }
}

/// Builds [`Rescue`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Rescue<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = GatewayError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // An inner service that cannot become ready still gets its error answered per request.
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let dialect = dialect_for_path(request.uri().path());
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .cloned()
            .or_else(|| {
                let header = request.headers().get("x-request-id")?.to_str().ok()?;
                RequestId::from_client(header.trim())
            })
            .unwrap_or_else(RequestId::generate);
        request.extensions_mut().insert(request_id.clone());
        let span = tracing::info_span!("request", request_id = %request_id.0);
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let body_span = span.clone();
        let future = async move {
            let mut response = match future.await {
                Ok(response) => response,
                Err(error) => {
                    if error.is_client_error() {
                        tracing::info!(request_id = %request_id.0, status = %error.status(), "request refused: {}", error.message());
                    } else {
                        tracing::warn!(request_id = %request_id.0, status = %error.status(), "request failed: {}", error.message());
                    }
                    error.to_response(dialect).map(full)
                }
            };
            if let Ok(value) = HeaderValue::from_str(&request_id.0) {
                response.headers_mut().insert("x-request-id", value);
            }
            Ok(response.map(|inner| {
                InSpan {
                    inner: Some(inner),
                    span: body_span,
                }
                .boxed_unsync()
            }))
        };
        Box::pin(tracing::Instrument::instrument(future, span))
    }
}

/// A response body polled inside the request's span.
struct InSpan {
    /// Always `Some` until drop, which takes it out to drop it inside the span.
    inner: Option<ResponseBody>,
    span: tracing::Span,
}

impl http_body::Body for InSpan {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            |inner| inner.size_hint(),
        )
    }
}

impl Drop for InSpan {
    fn drop(&mut self) {
        // The stream's own guards (usage, lease, capture) run their drop work inside the span.
        let _entered = self.span.enter();
        drop(self.inner.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::{service_fn, ServiceExt};

    #[tokio::test]
    async fn errors_become_dialect_bodies_with_a_request_id() {
        let inner = service_fn(|_req: Request<()>| async {
            Err::<Response<ResponseBody>, _>(GatewayError::unauthenticated("bad key"))
        });
        let service = RescueLayer.layer(inner);
        let response = service
            .oneshot(Request::post("/v1/messages").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert!(response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["error"]["type"], "authentication_error");
    }

    #[tokio::test]
    async fn a_sane_client_request_id_is_kept_and_a_bad_one_replaced() {
        let inner = service_fn(|_req: Request<()>| async {
            Ok::<_, GatewayError>(Response::new(full("ok")))
        });
        let service = RescueLayer.layer(inner);
        let sane = Request::post("/v1/messages")
            .header("x-request-id", "trace-1.2_ABC")
            .body(())
            .unwrap();
        let response = service.clone().oneshot(sane).await.unwrap();
        assert_eq!(response.headers()["x-request-id"], "trace-1.2_ABC");
        for bad in ["has space", "semi;colon", &"x".repeat(65), "req_forged"] {
            let request = Request::post("/v1/messages")
                .header("x-request-id", bad)
                .body(())
                .unwrap();
            let response = service.clone().oneshot(request).await.unwrap();
            let id = response.headers()["x-request-id"].to_str().unwrap();
            assert!(id.starts_with("req_") && id != bad, "{bad:?} gave {id}");
        }
    }

    #[test]
    fn dialect_follows_the_path() {
        assert_eq!(dialect_for_path("/v1/messages"), Dialect::Anthropic);
        assert_eq!(
            dialect_for_path("/v1/messages/count_tokens"),
            Dialect::Anthropic
        );
        assert_eq!(dialect_for_path("/v1/chat/completions"), Dialect::OpenAi);
        assert_eq!(dialect_for_path("/v1/models"), Dialect::OpenAi);
        assert_eq!(dialect_for_path("/v1/responses"), Dialect::Responses);
        assert_eq!(dialect_for_path("/v1/responses/resp_1"), Dialect::Responses);
    }
}
