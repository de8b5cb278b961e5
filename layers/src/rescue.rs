//! `RescueLayer`: the outermost stage. Turns every `GatewayError` into a response in the
//! client's dialect, so nothing reaches hyper or axum as an error (`Error = Infallible`), and
//! gives every request an id that is echoed in the `x-request-id` response header.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::body::{full, ResponseBody};
use crate::chat::Dialect;
use crate::error::GatewayError;

/// The id of one client request, shared by all its upstream attempts and log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// A fresh random id.
    pub fn generate() -> Self {
        RequestId(format!("req_{}", uuid::Uuid::new_v4().simple()))
    }
}

/// Which dialect a path speaks: the Anthropic routes end in `/messages` (or `count_tokens`),
/// everything else answers in OpenAI's shape.
pub fn dialect_for_path(path: &str) -> Dialect {
    let path = path.trim_end_matches('/');
    if path.ends_with("/messages") || path.ends_with("/messages/count_tokens") {
        Dialect::Anthropic
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
            .unwrap_or_else(RequestId::generate);
        request.extensions_mut().insert(request_id.clone());
        let future = self.inner.call(request);
        Box::pin(async move {
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
            Ok(response)
        })
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

    #[test]
    fn dialect_follows_the_path() {
        assert_eq!(dialect_for_path("/v1/messages"), Dialect::Anthropic);
        assert_eq!(
            dialect_for_path("/v1/messages/count_tokens"),
            Dialect::Anthropic
        );
        assert_eq!(dialect_for_path("/v1/chat/completions"), Dialect::OpenAi);
        assert_eq!(dialect_for_path("/v1/models"), Dialect::OpenAi);
    }
}
