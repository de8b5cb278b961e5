//! `MetricsLayer`: request counts, durations, time to first token and the gateway's own
//! overhead, through the [`metrics`] facade. The crate installs no exporter: without a recorder
//! every call is a no-op, and the host picks the exporter (Prometheus in the app).
//!
//! Labels stay bounded: the endpoint is one of a fixed set, the model is the *resolved* Kiro id
//! when the catalog lists it (anything else is `other`), the status is the HTTP status code.
//!
//! The overhead histogram is `total − time waiting on Kiro − time waiting on the client`: the
//! Kiro service adds every upstream wait (response head, refreshes, each body chunk) to the
//! request's [`RequestTimings`], and the response body measures the gaps in which the server
//! had a frame but had not asked for the next one yet.
//!
//! ```
//! use std::sync::Arc;
//! use kiro_layers::metrics::MetricsLayer;
//! use kiro_layers::models::ModelRegistry;
//!
//! let layer = MetricsLayer::new(Arc::new(ModelRegistry::with_defaults()));
//! # let _ = layer;
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::traits::{ModelCatalog, ResolvedModel};

/// Counter: requests by `endpoint`, `model`, `status`.
pub const REQUESTS_TOTAL: &str = "kiro_gateway_requests_total";
/// Histogram: whole request duration (until the last byte or the client left), seconds.
pub const REQUEST_DURATION: &str = "kiro_gateway_request_duration_seconds";
/// Histogram: time from the request to the first output token, seconds.
pub const TIME_TO_FIRST_TOKEN: &str = "kiro_gateway_time_to_first_token_seconds";
/// Histogram: time spent in the gateway itself (not waiting on Kiro or the client), seconds.
pub const OVERHEAD: &str = "kiro_gateway_overhead_seconds";
/// Counter: upstream errors by `reason` (a bounded set, see [`upstream_reason_label`]).
pub const UPSTREAM_ERRORS_TOTAL: &str = "kiro_gateway_upstream_errors_total";
/// Gauge: usage records waiting to be written.
pub const USAGE_QUEUE_DEPTH: &str = "kiro_gateway_usage_queue_depth";
/// Counter: usage records dropped (queue full or store failure). Must stay 0.
pub const USAGE_DROPPED_TOTAL: &str = "kiro_gateway_usage_dropped_total";

/// Kiro reasons and exception types worth their own label; anything else is `other`.
const KNOWN_REASONS: &[&str] = &[
    "CONTENT_LENGTH_EXCEEDS_THRESHOLD",
    "PROMPT_TOO_LONG",
    "MONTHLY_REQUEST_COUNT",
    "MONTHLY_TOKEN_COUNT",
    "INVALID_MODEL_ID",
    "INSUFFICIENT_MODEL_CAPACITY",
    "ThrottlingException",
    "ValidationException",
    "ServiceUnavailableException",
    "InternalServerException",
    "ContentLengthExceededException",
    "AccessDeniedException",
    "invalid_grant",
    "UNKNOWN",
];

/// HTTP statuses that get their own `HTTP_<code>` label.
const KNOWN_HTTP: &[&str] = &[
    "HTTP_400", "HTTP_401", "HTTP_402", "HTTP_403", "HTTP_404", "HTTP_408", "HTTP_413", "HTTP_422",
    "HTTP_429", "HTTP_500", "HTTP_502", "HTTP_503", "HTTP_504",
];

/// The bounded label for an upstream error: Kiro's reason when it is a known one, `stream` for
/// an error without a Kiro reason (corrupt or broken stream), else `other`. Connection failures
/// are counted as `transport` by [`record_upstream_transport_error`].
pub fn upstream_reason_label(error: &GatewayError) -> &'static str {
    match error.upstream_reason() {
        Some(reason) => KNOWN_REASONS
            .iter()
            .chain(KNOWN_HTTP)
            .find(|known| **known == reason)
            .copied()
            .unwrap_or("other"),
        None => "stream",
    }
}

/// Counts one upstream error.
pub fn record_upstream_error(error: &GatewayError) {
    metrics::counter!(UPSTREAM_ERRORS_TOTAL, "reason" => upstream_reason_label(error)).increment(1);
}

/// Counts one upstream call that could not connect or whose connection failed.
pub fn record_upstream_transport_error() {
    metrics::counter!(UPSTREAM_ERRORS_TOTAL, "reason" => "transport").increment(1);
}

/// Sets the usage queue depth gauge (called by the usage writer).
pub fn usage_queue_depth(depth: usize) {
    metrics::gauge!(USAGE_QUEUE_DEPTH).set(depth as f64);
}

/// Counts usage records that were dropped (called by the usage writer).
pub fn usage_dropped(count: u64) {
    metrics::counter!(USAGE_DROPPED_TOTAL).increment(count);
}

/// Registers every metric with its help text and puts the usage figures at 0, so a scrape shows
/// them before the first request.
pub fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "Chat requests by endpoint, resolved model and HTTP status"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Whole request duration, until the last byte was sent or the client left"
    );
    metrics::describe_histogram!(
        TIME_TO_FIRST_TOKEN,
        metrics::Unit::Seconds,
        "Time from the request to the first output token"
    );
    metrics::describe_histogram!(
        OVERHEAD,
        metrics::Unit::Seconds,
        "Time spent in the gateway itself, not waiting on Kiro or on the client"
    );
    metrics::describe_counter!(UPSTREAM_ERRORS_TOTAL, "Kiro errors by reason");
    metrics::describe_gauge!(USAGE_QUEUE_DEPTH, "Usage records waiting to be written");
    metrics::describe_counter!(USAGE_DROPPED_TOTAL, "Usage records dropped; must stay 0");
    usage_queue_depth(0);
    usage_dropped(0);
}

/// Per-request timing notes shared by the layers through request extensions.
#[derive(Debug, Default)]
pub struct RequestTimings {
    upstream_wait_nanos: AtomicU64,
    first_token: OnceLock<Instant>,
    model: OnceLock<String>,
}

impl RequestTimings {
    /// Adds time spent waiting on Kiro.
    pub fn add_upstream_wait(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.upstream_wait_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Notes the first output token (later calls do nothing).
    pub fn first_token(&self) {
        let _ = self.first_token.set(Instant::now());
    }

    /// Notes the resolved Kiro model id (first call wins).
    pub fn model(&self, kiro_id: &str) {
        if self.model.get().is_none() {
            let _ = self.model.set(kiro_id.to_owned());
        }
    }

    fn upstream_wait(&self) -> Duration {
        Duration::from_nanos(self.upstream_wait_nanos.load(Ordering::Relaxed))
    }
}

/// The shared handle to a request's [`RequestTimings`], as found in request extensions.
pub type Timings = Arc<RequestTimings>;

/// Builds [`Metrics`].
#[derive(Clone)]
pub struct MetricsLayer {
    known_models: Arc<HashSet<String>>,
}

impl MetricsLayer {
    /// Labels models by the ids `catalog` lists (taken once, here).
    pub fn new(catalog: Arc<dyn ModelCatalog>) -> Self {
        MetricsLayer {
            known_models: Arc::new(catalog.list().into_iter().map(|m| m.id).collect()),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;
    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics {
            inner,
            known_models: Arc::clone(&self.known_models),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
    known_models: Arc<HashSet<String>>,
}

/// The bounded endpoint label of a chat path.
pub fn endpoint_label(path: &str) -> &'static str {
    let path = path.trim_end_matches('/');
    if path.ends_with("/chat/completions") {
        "chat_completions"
    } else if path.ends_with("/messages") {
        "messages"
    } else if path.ends_with("/responses") {
        "responses"
    } else {
        "other"
    }
}

impl<S, B> Service<Request<B>> for Metrics<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = GatewayError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = GatewayError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let endpoint = endpoint_label(request.uri().path());
        let timings: Timings = Arc::default();
        request.extensions_mut().insert(Arc::clone(&timings));
        let known = Arc::clone(&self.known_models);
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let model = {
                let resolved = match &result {
                    Ok(response) => response
                        .extensions()
                        .get::<ResolvedModel>()
                        .map(|r| r.kiro_id.as_str()),
                    Err(_) => None,
                };
                match resolved.or(timings.model.get().map(String::as_str)) {
                    Some(id) if known.contains(id) => id.to_owned(),
                    _ => "other".to_owned(),
                }
            };
            let status = match &result {
                Ok(response) => response.status().as_u16(),
                Err(error) => error.status().as_u16(),
            };
            metrics::counter!(REQUESTS_TOTAL, "endpoint" => endpoint, "model" => model.clone(), "status" => status.to_string())
                .increment(1);
            let mut recorder = Finish {
                started,
                timings,
                endpoint,
                status,
                model,
                client_wait: Duration::ZERO,
                done: false,
            };
            match result {
                Ok(response) => Ok(response.map(|body| {
                    MetricsBody {
                        inner: body,
                        finish: recorder,
                        handed_over: None,
                    }
                    .boxed_unsync()
                })),
                Err(error) => {
                    recorder.finish();
                    Err(error)
                }
            }
        })
    }
}

/// Records the duration figures exactly once: at the end of the body, or when it is dropped.
struct Finish {
    started: Instant,
    timings: Timings,
    endpoint: &'static str,
    status: u16,
    model: String,
    client_wait: Duration,
    done: bool,
}

impl Finish {
    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let total = self.started.elapsed();
        let labels = [
            ("endpoint", self.endpoint.to_owned()),
            ("model", self.model.clone()),
        ];
        metrics::histogram!(REQUEST_DURATION, &labels).record(total.as_secs_f64());
        if let Some(first) = self.timings.first_token.get() {
            let ttft = first.saturating_duration_since(self.started);
            metrics::histogram!(TIME_TO_FIRST_TOKEN, &labels).record(ttft.as_secs_f64());
        }
        let overhead = total
            .saturating_sub(self.timings.upstream_wait())
            .saturating_sub(self.client_wait);
        metrics::histogram!(OVERHEAD, "endpoint" => self.endpoint).record(overhead.as_secs_f64());
        // The access log line; runs inside the request span, which carries the request id.
        tracing::info!(
            endpoint = self.endpoint,
            model = %self.model,
            status = self.status,
            duration_ms = total.as_millis() as u64,
            ttft_ms = self.timings.first_token.get().map(|f| f.saturating_duration_since(self.started).as_millis() as u64),
            overhead_us = overhead.as_micros() as u64,
            "request completed"
        );
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The response body, timed.
struct MetricsBody {
    inner: ResponseBody,
    finish: Finish,
    /// When the last frame was handed to the server (the client's turn until the next poll).
    handed_over: Option<Instant>,
}

impl Body for MetricsBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(at) = self.handed_over.take() {
            self.finish.client_wait += at.elapsed();
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(_)) => self.handed_over = Some(Instant::now()),
            Poll::Ready(None) => self.finish.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded() {
        let known = GatewayError::rate_limited("x").with_upstream_reason("ThrottlingException");
        assert_eq!(upstream_reason_label(&known), "ThrottlingException");
        let http = GatewayError::rate_limited("x").with_upstream_reason("HTTP_429");
        assert_eq!(upstream_reason_label(&http), "HTTP_429");
        let odd = GatewayError::rate_limited("x").with_upstream_reason("user-chosen junk 123");
        assert_eq!(upstream_reason_label(&odd), "other");
        let odd_http = GatewayError::rate_limited("x").with_upstream_reason("HTTP_418");
        assert_eq!(upstream_reason_label(&odd_http), "other");
    }

    #[test]
    fn endpoints_are_bounded() {
        assert_eq!(endpoint_label("/v1/chat/completions"), "chat_completions");
        assert_eq!(endpoint_label("/v1/messages/"), "messages");
        assert_eq!(endpoint_label("/v1/responses"), "responses");
        assert_eq!(endpoint_label("/anything/else"), "other");
    }
}
