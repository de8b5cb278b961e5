//! `CursorService`: the [`Upstream`] for Cursor accounts. Builds the protobuf request, POSTs one
//! envelope to `StreamUnifiedChatWithTools` over HTTP/2 (TLS with ALPN `h2` for `https://`, prior
//! knowledge for `http://` so test fakes need no certificate), and decodes the answer frames.
//!
//! Cursor answers HTTP 200 even when it refuses, with the error in the end-of-stream frame, and
//! that frame usually comes first. So the service reads until the first event or the end before
//! it answers: an error with no output yet is returned as an error (the recover layer then tries
//! another account), reported to the pool by class (rate limit and usage limit rest the account,
//! a refused token is refreshed once and then rests it, a blocked account is disabled), while
//! "Update Required" is the operator's problem: it raises [`CursorAlerts`] and is not held
//! against the account.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyDataStream, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::end_stream::{parse_unary_error, CursorError, ErrorClass};
use super::envelope::data_envelope;
use super::events::{ChatDecoder, StreamError};
use super::headers::{chat_headers, CursorConfig, CHAT_PATH};
use super::request::{build_request, BuildContext};
use crate::chat::{ChatEvent, ChatRequest, EventStream};
use crate::error::GatewayError;
use crate::resolve::resolved_model;
use crate::traits::{AccountKind, AttemptOutcome, Lease};
use crate::upstream::Upstream;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
type Chunks = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// The operator alert for a refused client version: the latest refusal, shown on `/ready`.
#[derive(Debug, Default)]
pub struct CursorAlerts {
    outdated: Mutex<Option<String>>,
    refusals: AtomicU64,
}

impl CursorAlerts {
    /// The latest "Update Required" refusal, if any since the last success.
    pub fn outdated_client(&self) -> Option<String> {
        self.outdated.lock().ok().and_then(|o| o.clone())
    }

    /// Refusals seen since start.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    fn raise(&self, detail: String) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("kiro_gateway_cursor_outdated_client_total").increment(1);
        tracing::error!(
            "Cursor refused the configured client version: {detail}. Set CURSOR_CLIENT_VERSION to \
             the current Cursor IDE version (docs/cursor.md)."
        );
        if let Ok(mut slot) = self.outdated.lock() {
            *slot = Some(detail);
        }
    }

    fn clear(&self) {
        if let Ok(mut slot) = self.outdated.lock() {
            *slot = None;
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct CursorService {
    client: Arc<HttpClient>,
    config: Arc<CursorConfig>,
    alerts: Arc<CursorAlerts>,
}

impl CursorService {
    /// A service with its own HTTP/2 client.
    pub fn new(config: CursorConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        CursorService {
            client: Arc::new(client),
            config: Arc::new(config),
            alerts: Arc::default(),
        }
    }

    /// The operator alerts (for `/ready` and metrics).
    pub fn alerts(&self) -> Arc<CursorAlerts> {
        Arc::clone(&self.alerts)
    }

    /// The settings.
    pub fn config(&self) -> &CursorConfig {
        &self.config
    }
}

impl Upstream for CursorService {
    fn kind(&self) -> AccountKind {
        AccountKind::CURSOR
    }

    fn send(
        &self,
        request: Request<ChatRequest>,
        lease: Lease,
    ) -> BoxFuture<'static, Result<Response<EventStream>, GatewayError>> {
        let service = self.clone();
        Box::pin(async move { service.call(request, lease).await })
    }
}

/// How far the answer got before the service had to answer.
enum Opening {
    /// Events (and the decoder to go on with, or the error that came after them).
    Events(Vec<ChatEvent>, ChatDecoder, Chunks, Option<GatewayError>),
    /// Cursor refused before any output.
    Refused(CursorError),
    /// The stream broke before any output.
    Broken(String),
}

impl CursorService {
    async fn call(
        &self,
        request: Request<ChatRequest>,
        mut lease: Lease,
    ) -> Result<Response<EventStream>, GatewayError> {
        let model = resolved_model(&request)?
            .upstream_id(&AccountKind::CURSOR)
            .to_owned();
        let body = build_request(
            request.body(),
            &BuildContext {
                model: &model,
                conversation_id: uuid::Uuid::new_v4().to_string(),
            },
        )?;
        let envelope = data_envelope(&body, self.config.gzip_requests);
        drop(request);
        let mut refreshed = false;
        loop {
            let opening = match self.post(&lease, envelope.clone()).await {
                Ok(opening) => opening,
                Err(error) => {
                    lease.report(AttemptOutcome::TransportError);
                    return Err(error);
                }
            };
            match opening {
                Opening::Events(events, decoder, chunks, pending) => {
                    lease.report(AttemptOutcome::Success);
                    self.alerts.clear();
                    return Ok(Response::new(answer(
                        events,
                        pending,
                        decoder,
                        chunks,
                        self.config.read_timeout,
                        lease,
                    )));
                }
                Opening::Broken(why) => {
                    lease.report(AttemptOutcome::TransportError);
                    return Err(GatewayError::upstream_stream(format!(
                        "The Cursor stream broke before any output: {why}"
                    )));
                }
                Opening::Refused(error) => {
                    let class = error.class();
                    if class == ErrorClass::AuthFailed && !refreshed {
                        refreshed = true;
                        tracing::info!(account = %lease.credential.account_id, "Cursor refused the session token; refreshing it and retrying once");
                        if let Err(refused) = lease.force_refresh().await {
                            // A refresh token refused for good disables the account.
                            lease.report(match refused.upstream_reason() {
                                Some("invalid_grant") => AttemptOutcome::InvalidGrant {
                                    reason: refused.message().to_owned(),
                                },
                                _ => AttemptOutcome::Forbidden,
                            });
                            return Err(refused);
                        }
                        continue;
                    }
                    lease.report(self.outcome(class, &error));
                    return Err(to_gateway_error(class, &error, &self.config));
                }
            }
        }
    }

    fn outcome(&self, class: ErrorClass, error: &CursorError) -> AttemptOutcome {
        match class {
            ErrorClass::RateLimited => AttemptOutcome::Throttled { retry_after: None },
            ErrorClass::UsageExhausted => AttemptOutcome::QuotaExhausted,
            ErrorClass::AuthFailed => AttemptOutcome::Forbidden,
            ErrorClass::Blocked => AttemptOutcome::InvalidGrant {
                reason: format!("Cursor refused the account: {}", error.describe()),
            },
            ErrorClass::OutdatedClient => {
                self.alerts.raise(error.describe());
                AttemptOutcome::Success
            }
            _ => AttemptOutcome::Success,
        }
    }

    async fn post(&self, lease: &Lease, envelope: Bytes) -> Result<Opening, GatewayError> {
        let base = if lease.credential.api_base.is_empty() {
            self.config.api_base.as_str()
        } else {
            lease.credential.api_base.as_str()
        };
        let url = format!("{}{CHAT_PATH}", base.trim_end_matches('/'));
        let uri: http::Uri = url.parse().map_err(|e| {
            GatewayError::internal(format!("the Cursor URL {url:?} is not valid: {e}"))
        })?;
        let mut request = http::Request::new(Full::new(envelope));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        *request.version_mut() = http::Version::HTTP_2;
        *request.headers_mut() = chat_headers(&self.config, &lease.credential);
        let response = self.client.request(request).await.map_err(|error| {
            GatewayError::upstream_stream(format!("Could not reach Cursor: {error}"))
        })?;
        let (parts, body) = response.into_parts();
        let mut chunks: Chunks =
            Box::pin(BodyDataStream::new(body).map(|chunk| chunk.map_err(|e| e.to_string())));
        if parts.status != StatusCode::OK {
            let mut text = Vec::new();
            while let Ok(Some(Ok(chunk))) =
                tokio::time::timeout(self.config.read_timeout, chunks.next()).await
            {
                text.extend_from_slice(&chunk);
                if text.len() > 64 * 1024 {
                    break;
                }
            }
            return Ok(match parse_unary_error(&text) {
                Some(error) if !error.connect_code.is_empty() => Opening::Refused(error),
                _ => Opening::Broken(format!(
                    "HTTP {} ({})",
                    parts.status,
                    String::from_utf8_lossy(&text[..text.len().min(200)])
                )),
            });
        }
        let mut decoder = ChatDecoder::with_max_frame(self.config.max_frame);
        let mut events = Vec::new();
        loop {
            let next = tokio::time::timeout(self.config.read_timeout, chunks.next()).await;
            match next {
                Err(_) => {
                    return Ok(Opening::Broken(format!(
                        "nothing for {} s",
                        self.config.read_timeout.as_secs()
                    )))
                }
                Ok(None) => {
                    return Ok(match decoder.finish() {
                        Ok(()) => Opening::Events(events, decoder, chunks, None),
                        Err(error) => Opening::Broken(error.to_string()),
                    })
                }
                Ok(Some(Err(error))) => return Ok(Opening::Broken(error)),
                Ok(Some(Ok(chunk))) => match decoder.decode(&chunk, &mut events) {
                    Err(StreamError::Cursor(error)) if events.is_empty() => {
                        return Ok(Opening::Refused(*error))
                    }
                    Err(error) if events.is_empty() => {
                        return Ok(Opening::Broken(error.to_string()))
                    }
                    Err(error) => {
                        // Output came before the error: it goes out, then the error in-band.
                        let pending = Some(stream_error(&error));
                        return Ok(Opening::Events(events, decoder, chunks, pending));
                    }
                    Ok(()) if !events.is_empty() || decoder.is_finished() => {
                        return Ok(Opening::Events(events, decoder, chunks, None))
                    }
                    Ok(()) => {}
                },
            }
        }
    }
}

/// The rest of the answer: buffered events first, then the decoded stream; the lease rides
/// along to the end.
fn answer(
    first: Vec<ChatEvent>,
    pending: Option<GatewayError>,
    decoder: ChatDecoder,
    chunks: Chunks,
    idle: Duration,
    lease: Lease,
) -> EventStream {
    struct State {
        ready: VecDeque<ChatEvent>,
        pending: Option<GatewayError>,
        decoder: ChatDecoder,
        chunks: Chunks,
        done: bool,
        _lease: Lease,
    }
    let state = State {
        ready: first.into(),
        done: pending.is_some(),
        pending,
        decoder,
        chunks,
        _lease: lease,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut state| async move {
            loop {
                if let Some(event) = state.ready.pop_front() {
                    return Some((Ok(event), state));
                }
                if let Some(error) = state.pending.take() {
                    return Some((Err(error), state));
                }
                if state.done || state.decoder.is_finished() {
                    return None;
                }
                match tokio::time::timeout(idle, state.chunks.next()).await {
                    Err(_) => {
                        state.done = true;
                        return Some((
                            Err(GatewayError::upstream_stream(format!(
                                "Cursor sent nothing for {} s",
                                idle.as_secs()
                            ))),
                            state,
                        ));
                    }
                    Ok(None) => {
                        state.done = true;
                        return match state.decoder.finish() {
                            Ok(()) => None,
                            Err(error) => Some((Err(stream_error(&error)), state)),
                        };
                    }
                    Ok(Some(Err(error))) => {
                        state.done = true;
                        return Some((
                            Err(GatewayError::upstream_stream(format!(
                                "the connection to Cursor broke: {error}"
                            ))),
                            state,
                        ));
                    }
                    Ok(Some(Ok(chunk))) => {
                        let mut events = Vec::new();
                        let decoded = state.decoder.decode(&chunk, &mut events);
                        state.ready.extend(events);
                        if let Err(error) = decoded {
                            // What came before the error goes out first.
                            state.done = true;
                            state.pending = Some(stream_error(&error));
                        }
                    }
                }
            }
        },
    ))
}

fn stream_error(error: &StreamError) -> GatewayError {
    match error {
        StreamError::Cursor(cursor) => {
            to_gateway_error(cursor.class(), cursor, &CursorConfig::default())
        }
        other => GatewayError::upstream_stream(other.to_string()),
    }
}

/// The canonical error for a Cursor refusal (statuses follow the Kiro upstream's: the client is
/// told what it can act on; account trouble is a 502 the pool acts on).
pub fn to_gateway_error(
    class: ErrorClass,
    error: &CursorError,
    config: &CursorConfig,
) -> GatewayError {
    let described = error.describe();
    let reason = if error.error_name.is_empty() {
        error.connect_code.clone()
    } else {
        error.error_name.clone()
    };
    let gateway = match class {
        ErrorClass::RateLimited => GatewayError::rate_limited(format!(
            "Cursor is rate limiting this account (Cursor: {described}). Retry later."
        )),
        ErrorClass::UsageExhausted => GatewayError::rate_limited(format!(
            "The Cursor account's usage is used up (Cursor: {described})."
        )),
        ErrorClass::OutdatedClient => GatewayError::upstream(
            StatusCode::BAD_GATEWAY,
            format!(
                "Cursor refused the gateway's client version {} (Cursor: {described}). The \
                 operator must set CURSOR_CLIENT_VERSION to a current Cursor version.",
                config.client_version
            ),
        ),
        ErrorClass::AuthFailed | ErrorClass::Blocked => GatewayError::upstream(
            StatusCode::UNAUTHORIZED,
            format!("Cursor refused the account (Cursor: {described})."),
        ),
        ErrorClass::BadModel => GatewayError::invalid_request(format!(
            "Cursor does not know this model (Cursor: {described})."
        ))
        .with_param("model"),
        ErrorClass::BadRequest => GatewayError::upstream(
            StatusCode::BAD_REQUEST,
            format!("Cursor rejected the request (Cursor: {described})."),
        ),
        ErrorClass::ContextTooLong => GatewayError::context_length_exceeded(format!(
            "The conversation is too long for the model (Cursor: {described})."
        )),
        ErrorClass::AbortedAfterTool | ErrorClass::Other => GatewayError::upstream(
            StatusCode::BAD_GATEWAY,
            format!("Cursor failed (Cursor: {described})."),
        ),
    };
    gateway.with_upstream_reason(reason)
}
