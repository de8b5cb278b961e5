//! Debug capture hooks. `CaptureLayer` opens a [`CaptureHandle`] per request when the host gave
//! it a [`CaptureSink`]; the stages that see interesting bytes append to the handle when they
//! find it in the request extensions (the client request in Convert, the Kiro request and the
//! raw upstream chunks in the Kiro service), and the layer taps what is sent to the client.
//!
//! Nothing here touches the disk or does any work beyond cloning `Bytes` (reference counts) into
//! a vector: when the last clone of the handle is dropped (the response body ended or the client
//! left) the whole [`CaptureRecord`] is handed to the sink, which must only queue it. Without a
//! sink the layer adds no handle and the taps find nothing.
//!
//! Header values that carry credentials are replaced before they are stored, and every secret
//! seen on the way (the client's key, the Kiro access token) is listed in
//! [`CaptureRecord::secrets`] so the sink can scrub it from every byte before writing.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::rescue::RequestId;
use crate::traits::Principal;

/// Headers whose values are never stored.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
];

/// Default cap on the bytes one capture holds in memory.
pub const DEFAULT_CAPTURE_LIMIT: usize = 8 * 1024 * 1024;

/// Everything recorded about one request.
#[derive(Debug, Default, Clone)]
pub struct CaptureRecord {
    /// Request id.
    pub request_id: String,
    /// Wall-clock start.
    pub started_at: Option<SystemTime>,
    /// How long until the last clone of the handle was dropped.
    pub duration: Duration,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Request headers, credential headers already replaced by `<redacted>`.
    pub request_headers: Vec<(String, String)>,
    /// The caller, once authenticated.
    pub principal: Option<Principal>,
    /// The client's request body.
    pub client_request: Option<Bytes>,
    /// URL of the Kiro call.
    pub kiro_url: Option<String>,
    /// Body sent to Kiro (the last attempt's).
    pub kiro_request: Option<Bytes>,
    /// HTTP status Kiro answered with.
    pub kiro_status: Option<u16>,
    /// Raw upstream body chunks (event-stream frames, or an error body).
    pub upstream: Vec<Bytes>,
    /// Bytes sent to the client.
    pub client_response: Vec<Bytes>,
    /// Status sent to the client.
    pub status: Option<u16>,
    /// Errors, in order (an error answer or a failure mid-stream).
    pub errors: Vec<String>,
    /// Secret values to scrub from everything before it is written. Never write these.
    pub secrets: Vec<String>,
    /// The capture hit its size limit and later bytes were left out.
    pub truncated: bool,
}

impl CaptureRecord {
    /// True when the request failed: an error status or an error mid-stream.
    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || self.status.is_none_or(|s| s >= 400)
    }
}

/// Receives finished captures. Called from `Drop`: must not block (queue and return).
pub trait CaptureSink: Send + Sync + 'static {
    /// Takes one finished capture.
    fn submit(&self, record: CaptureRecord);
}

struct Shared {
    record: Mutex<(CaptureRecord, usize)>,
    sink: Arc<dyn CaptureSink>,
    started: Instant,
    limit: usize,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let record = match self.record.get_mut() {
            Ok((record, _)) => std::mem::take(record),
            Err(poisoned) => std::mem::take(&mut poisoned.into_inner().0),
        };
        let mut record = record;
        record.duration = self.started.elapsed();
        self.sink.submit(record);
    }
}

/// One request's capture, shared through request extensions. Cheap to clone.
#[derive(Clone)]
pub struct CaptureHandle(Arc<Shared>);

impl std::fmt::Debug for CaptureHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaptureHandle")
    }
}

impl CaptureHandle {
    /// A capture that goes to `sink` when the last clone is dropped; holds at most `limit` bytes.
    pub fn new(sink: Arc<dyn CaptureSink>, limit: usize) -> Self {
        CaptureHandle(Arc::new(Shared {
            record: Mutex::new((
                CaptureRecord {
                    started_at: Some(SystemTime::now()),
                    ..CaptureRecord::default()
                },
                0,
            )),
            sink,
            started: Instant::now(),
            limit,
        }))
    }

    fn with<R>(&self, f: impl FnOnce(&mut CaptureRecord) -> R) -> Option<R> {
        self.0.record.lock().ok().map(|mut guard| f(&mut guard.0))
    }

    /// Counts `len` bytes against the limit; false (and marks truncation) when over it.
    fn room_for(&self, len: usize) -> bool {
        let Ok(mut guard) = self.0.record.lock() else {
            return false;
        };
        let (record, used) = &mut *guard;
        if used.saturating_add(len) > self.0.limit {
            record.truncated = true;
            return false;
        }
        *used += len;
        true
    }

    /// Records the request line and headers (credential headers redacted here).
    pub fn request_head(&self, request_id: &str, method: &str, path: &str, headers: &HeaderMap) {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let value = if SECRET_HEADERS.contains(&name.as_str()) {
                    "<redacted>".to_owned()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name.as_str().to_owned(), value)
            })
            .collect();
        self.with(|r| {
            r.request_id = request_id.to_owned();
            r.method = method.to_owned();
            r.path = path.to_owned();
            r.request_headers = headers;
        });
    }

    /// Lists a value that must be scrubbed from everything written.
    pub fn secret(&self, value: &str) {
        if value.len() >= 4 {
            self.with(|r| {
                if !r.secrets.iter().any(|s| s == value) {
                    r.secrets.push(value.to_owned());
                }
            });
        }
    }

    /// Records the client's body and the authenticated caller.
    pub fn client_request(&self, body: &Bytes, principal: Option<&Principal>) {
        let body = self.room_for(body.len()).then(|| body.clone());
        self.with(|r| {
            r.client_request = body;
            r.principal = principal.cloned();
        });
    }

    /// Records the body sent to Kiro.
    pub fn kiro_request(&self, url: &str, body: &Bytes) {
        let body = self.room_for(body.len()).then(|| body.clone());
        self.with(|r| {
            r.kiro_url = Some(url.to_owned());
            r.kiro_request = body;
        });
    }

    /// Records Kiro's HTTP status.
    pub fn kiro_status(&self, status: u16) {
        self.with(|r| r.kiro_status = Some(status));
    }

    /// Records one raw upstream chunk.
    pub fn upstream_chunk(&self, chunk: &Bytes) {
        if self.room_for(chunk.len()) {
            self.with(|r| r.upstream.push(chunk.clone()));
        }
    }

    /// Records bytes sent to the client.
    pub fn client_chunk(&self, chunk: &Bytes) {
        if self.room_for(chunk.len()) {
            self.with(|r| r.client_response.push(chunk.clone()));
        }
    }

    /// Records the status sent to the client.
    pub fn status(&self, status: u16) {
        self.with(|r| r.status = Some(status));
    }

    /// Records an error.
    pub fn error(&self, error: &GatewayError) {
        let text = format!("{} {}", error.status().as_u16(), error.message());
        self.with(|r| r.errors.push(text));
    }
}

/// Builds [`Capture`].
#[derive(Clone, Default)]
pub struct CaptureLayer {
    sink: Option<Arc<dyn CaptureSink>>,
    limit: usize,
}

impl CaptureLayer {
    /// Captures into `sink` (none: pass through), at most `limit` bytes per request.
    pub fn new(sink: Option<Arc<dyn CaptureSink>>, limit: usize) -> Self {
        CaptureLayer { sink, limit }
    }
}

impl<S> Layer<S> for CaptureLayer {
    type Service = Capture<S>;
    fn layer(&self, inner: S) -> Capture<S> {
        Capture {
            inner,
            sink: self.sink.clone(),
            limit: self.limit,
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Capture<S> {
    inner: S,
    sink: Option<Arc<dyn CaptureSink>>,
    limit: usize,
}

impl<S, B> Service<Request<B>> for Capture<S>
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
        let Some(sink) = &self.sink else {
            return Box::pin(self.inner.call(request));
        };
        let capture = CaptureHandle::new(Arc::clone(sink), self.limit);
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default();
        capture.request_head(
            &request_id,
            request.method().as_str(),
            request.uri().path(),
            request.headers(),
        );
        if let Some(key) = crate::auth::presented_key(&request) {
            capture.secret(key);
        }
        request.extensions_mut().insert(capture.clone());
        let future = self.inner.call(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => {
                    capture.status(response.status().as_u16());
                    Ok(response.map(|inner| TappedBody { inner, capture }.boxed_unsync()))
                }
                Err(error) => {
                    capture.status(error.status().as_u16());
                    capture.error(&error);
                    Err(error)
                }
            }
        })
    }
}

/// The response body, copied into the capture as it goes out.
struct TappedBody {
    inner: ResponseBody,
    capture: CaptureHandle,
}

impl Body for TappedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.capture.client_chunk(data);
            }
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
    use crate::body::full;
    use http_body_util::BodyExt;
    use tower::{service_fn, ServiceExt};

    #[derive(Default, Clone)]
    struct Collect(Arc<Mutex<Vec<CaptureRecord>>>);
    impl CaptureSink for Collect {
        fn submit(&self, record: CaptureRecord) {
            self.0.lock().unwrap().push(record);
        }
    }

    #[tokio::test]
    async fn captures_once_after_the_body_is_read_and_redacts_headers() {
        let sink = Collect::default();
        let inner = service_fn(|req: Request<()>| async move {
            let capture = req.extensions().get::<CaptureHandle>().unwrap().clone();
            capture.kiro_status(200);
            Ok::<_, GatewayError>(Response::new(full("hello")))
        });
        let service = CaptureLayer::new(Some(Arc::new(sink.clone())), 1024).layer(inner);
        let request = Request::post("/v1/messages")
            .header("x-api-key", "sk-very-secret")
            .body(())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "not before the body ends"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello");
        let records = sink.0.lock().unwrap().clone();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.client_response, vec![Bytes::from("hello")]);
        assert_eq!(r.kiro_status, Some(200));
        assert!(!r.failed());
        assert!(r
            .request_headers
            .contains(&("x-api-key".into(), "<redacted>".into())));
        assert_eq!(r.secrets, vec!["sk-very-secret".to_owned()]);
    }

    #[tokio::test]
    async fn errors_mark_the_capture_failed_and_the_limit_truncates() {
        let sink = Collect::default();
        let inner = service_fn(|req: Request<()>| async move {
            let capture = req.extensions().get::<CaptureHandle>().unwrap();
            capture.upstream_chunk(&Bytes::from(vec![b'x'; 100]));
            Err::<Response<ResponseBody>, _>(GatewayError::rate_limited("slow down"))
        });
        let service = CaptureLayer::new(Some(Arc::new(sink.clone())), 10).layer(inner);
        let _ = service
            .oneshot(Request::post("/v1/messages").body(()).unwrap())
            .await;
        let records = sink.0.lock().unwrap().clone();
        assert_eq!(records.len(), 1);
        assert!(records[0].failed());
        assert!(records[0].truncated);
        assert!(records[0].upstream.is_empty());
        assert_eq!(records[0].status, Some(429));
    }
}
