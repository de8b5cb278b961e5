//! `KiroService`: the innermost service. Builds the Kiro request body, POSTs it to
//! `generateAssistantResponse` with the leased credential, forces one refresh and retries once
//! on a 403 (each attempt with its own usage record), reports the outcome to the pool, and
//! decodes the event-stream answer into [`ChatEvent`]s. The lease rides inside the returned
//! stream until its last event.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use http::{Request, Response, StatusCode};
use tower::Service;

use crate::capture::CaptureHandle;
use crate::chat::{ChatEvent, ChatRequest, EventStream};
use crate::error::GatewayError;
use crate::kiro::errors::from_status;
use crate::kiro::events::decode_body;
use crate::kiro::headers::kiro_headers;
use crate::kiro::http::{BodyStream, ChatUrl, UpstreamClient};
use crate::kiro::request::{build_request, BuildOptions, ToolNameMap};
use crate::metrics::{record_upstream_error, record_upstream_transport_error, Timings};
use crate::resolve::resolved_model;
use crate::traits::{AccountKind, AttemptOutcome, Lease, LeaseSlot};
use crate::upstream::Upstream;
use crate::usage::AttemptRecords;

/// Largest upstream error body read (the rest is dropped).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Settings of the Kiro call.
#[derive(Debug, Clone)]
pub struct KiroConfig {
    /// Request-building options (tool description limit, placeholder text, ...).
    pub build: BuildOptions,
    /// Longest silence allowed between two chunks of an answer (`STREAMING_READ_TIMEOUT`).
    pub read_timeout: Duration,
    /// Reuse upstream connections. kiro-gateway closes streaming connections because of
    /// CLOSE_WAIT leaks seen through VPNs; both clients here expire idle pooled sockets (30 s),
    /// so keep-alive is the default and `close` is the opt-out.
    pub keep_alive: bool,
    /// Join text deltas that arrive in the same reads into one (see [`decode_body`]).
    pub merge_ready_deltas: bool,
}

impl Default for KiroConfig {
    fn default() -> Self {
        KiroConfig {
            build: BuildOptions::default(),
            read_timeout: Duration::from_secs(300),
            keep_alive: true,
            merge_ready_deltas: true,
        }
    }
}

/// Per-request changes to the build options, set by layers above (thinking injection).
#[derive(Debug, Clone, Default)]
pub struct BuildOverrides {
    /// Extra system prompt sections.
    pub system_prompt_additions: Vec<String>,
    /// Prefix for the current user message.
    pub current_message_prefix: Option<String>,
}

/// See the module docs.
#[derive(Clone)]
pub struct KiroService {
    http: UpstreamClient,
    config: Arc<KiroConfig>,
    urls: Arc<ChatUrls>,
}

impl KiroService {
    /// A service calling Kiro through `http` (a [`UpstreamClient`] or a `reqwest::Client`).
    pub fn new(http: impl Into<UpstreamClient>, config: KiroConfig) -> Self {
        KiroService {
            http: http.into(),
            config: Arc::new(config),
            urls: Arc::default(),
        }
    }
}

/// The parsed `generateAssistantResponse` URL of each API base seen. Parsing a URL costs more
/// than the rest of sending a request; there are only ever a few bases (one per region).
#[derive(Default)]
struct ChatUrls(std::sync::RwLock<Vec<(String, ChatUrl)>>);

impl ChatUrls {
    fn for_base(&self, api_base: &str) -> Result<ChatUrl, GatewayError> {
        if let Ok(known) = self.0.read() {
            if let Some((_, url)) = known.iter().find(|(base, _)| base == api_base) {
                return Ok(url.clone());
            }
        }
        let text = format!(
            "{}/generateAssistantResponse",
            api_base.trim_end_matches('/')
        );
        let url = ChatUrl::parse(&text).map_err(|error| {
            GatewayError::internal(format!("the Kiro API URL {text:?} is not valid: {error}"))
        })?;
        if let Ok(mut known) = self.0.write() {
            if known.len() < 64 {
                known.push((api_base.to_owned(), url.clone()));
            }
        }
        Ok(url)
    }
}

impl Service<Request<ChatRequest>> for KiroService {
    type Response = Response<EventStream>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EventStream>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ChatRequest>) -> Self::Future {
        let lease = request
            .extensions()
            .get::<LeaseSlot>()
            .and_then(LeaseSlot::take);
        match lease {
            Some(lease) => self.send(request, lease),
            None => Box::pin(async {
                Err(GatewayError::internal(
                    "no Kiro credential was leased for this request (stack wiring bug)",
                ))
            }),
        }
    }
}

impl Upstream for KiroService {
    fn kind(&self) -> AccountKind {
        AccountKind::KIRO
    }

    fn send(
        &self,
        request: Request<ChatRequest>,
        lease: Lease,
    ) -> BoxFuture<'static, Result<Response<EventStream>, GatewayError>> {
        let http = self.http.clone();
        let config = Arc::clone(&self.config);
        let urls = Arc::clone(&self.urls);
        Box::pin(async move { call_kiro(http, &config, &urls, request, lease).await })
    }
}

async fn call_kiro(
    http: UpstreamClient,
    config: &KiroConfig,
    urls: &ChatUrls,
    request: Request<ChatRequest>,
    mut lease: Lease,
) -> Result<Response<EventStream>, GatewayError> {
    let model_id = resolved_model(&request)?
        .upstream_id(&crate::traits::AccountKind::KIRO)
        .to_owned();
    let options = match request.extensions().get::<BuildOverrides>() {
        Some(overrides) => {
            let mut options = config.build.clone();
            options
                .system_prompt_additions
                .extend(overrides.system_prompt_additions.iter().cloned());
            if overrides.current_message_prefix.is_some() {
                options.current_message_prefix = overrides.current_message_prefix.clone();
            }
            std::borrow::Cow::Owned(options)
        }
        None => std::borrow::Cow::Borrowed(&config.build),
    };
    let kiro = build_request(
        request.body(),
        &model_id,
        lease.credential.profile_arn.as_deref(),
        &options,
    )?;
    let tap = Tap {
        capture: request.extensions().get::<CaptureHandle>().cloned(),
        timings: request.extensions().get::<Timings>().cloned(),
    };
    let records = request.extensions().get::<AttemptRecords>().cloned();
    drop(request);

    let mut refreshed = false;
    loop {
        let url = urls.for_base(&lease.credential.api_base)?;
        if let Some(capture) = &tap.capture {
            capture.secret(&lease.credential.access_token);
            capture.kiro_request(url.as_str(), &kiro.body);
        }
        let waiting = Instant::now();
        let headers = kiro_headers(&lease.credential, true, config.keep_alive);
        let sent = http.post(&url, headers, kiro.body.clone()).await;
        tap.waited(waiting);
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                record_upstream_transport_error();
                lease.report(AttemptOutcome::TransportError);
                return Err(GatewayError::upstream_stream(format!(
                    "Could not reach the Kiro API: {error}"
                )));
            }
        };
        let status = response.status;
        if status == StatusCode::FORBIDDEN && !refreshed {
            // Kiro answers 403 for an expired or revoked access token: refresh once, try again.
            refreshed = true;
            tracing::info!(account = %lease.credential.account_id, "Kiro answered 403; refreshing the token and retrying once");
            let waiting = Instant::now();
            let refreshed_credential = lease.force_refresh().await;
            tap.waited(waiting);
            refreshed_credential?;
            // The 403 was an upstream attempt of its own: it gets its own usage record.
            if let Some(records) = &records {
                records.next_attempt();
            }
            continue;
        }
        if let Some(capture) = &tap.capture {
            capture.kiro_status(status.as_u16());
        }
        if !status.is_success() {
            let headers = response.headers;
            let waiting = Instant::now();
            let body = read_error_body(response.body).await;
            tap.waited(waiting);
            if let Some(capture) = &tap.capture {
                capture.upstream_chunk(&Bytes::from(body.clone()));
            }
            let error = from_status(status, &headers, &body);
            record_upstream_error(&error);
            lease.report(outcome_for(status, &error));
            return Err(error);
        }
        lease.report(AttemptOutcome::Success);
        let chunks = with_idle_timeout(response.body, config.read_timeout, tap.clone());
        let events = LeasedEvents {
            inner: decode_body(chunks, config.merge_ready_deltas),
            names: kiro.tool_names,
            tap,
            _lease: lease,
        };
        return Ok(Response::new(Box::pin(events) as EventStream));
    }
}

fn outcome_for(status: StatusCode, error: &GatewayError) -> AttemptOutcome {
    match status.as_u16() {
        429 => AttemptOutcome::Throttled {
            retry_after: error.retry_after(),
        },
        402 => AttemptOutcome::QuotaExhausted,
        403 => AttemptOutcome::Forbidden,
        // Kiro is out of capacity for the model, whatever the status: the account is not at
        // fault, so it neither rests nor moves towards its breaker (the retry still happens).
        _ if error.upstream_reason() == Some("INSUFFICIENT_MODEL_CAPACITY") => {
            AttemptOutcome::Success
        }
        s if s >= 500 => AttemptOutcome::TransportError,
        _ if error.upstream_reason() == Some("MONTHLY_REQUEST_COUNT") => {
            AttemptOutcome::QuotaExhausted
        }
        _ => AttemptOutcome::Success,
    }
}

async fn read_error_body(mut chunks: BodyStream) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(Ok(chunk)) = chunks.next().await {
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    body
}

/// The optional observers of one Kiro call: the debug capture and the metrics timings. Both are
/// absent unless the layers above put them in the request, and then cost one branch each.
#[derive(Clone, Default)]
struct Tap {
    capture: Option<CaptureHandle>,
    timings: Option<Timings>,
}

impl Tap {
    /// Counts the time since `since` as waiting on Kiro.
    fn waited(&self, since: Instant) {
        if let Some(timings) = &self.timings {
            timings.add_upstream_wait(since.elapsed());
        }
    }
}

/// Ends a byte stream with an error when no chunk arrives for `idle`, so a stalled upstream can
/// never hang a client.
fn with_idle_timeout<S>(
    chunks: S,
    idle: Duration,
    tap: Tap,
) -> impl Stream<Item = Result<Bytes, String>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, String>> + Send + 'static,
{
    let chunks = Box::pin(chunks);
    futures_util::stream::unfold(Some(chunks), move |state| {
        let tap = tap.clone();
        async move {
            let mut chunks = state?;
            let waiting = Instant::now();
            let next = tokio::time::timeout(idle, chunks.next()).await;
            tap.waited(waiting);
            if let (Some(capture), Ok(Some(Ok(chunk)))) = (&tap.capture, &next) {
                capture.upstream_chunk(chunk);
            }
            match next {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(chunks))),
                Ok(Some(Err(error))) => {
                    Some((Err(format!("the connection to Kiro broke: {error}")), None))
                }
                Ok(None) => None,
                Err(_) => Some((
                    Err(format!(
                        "Kiro sent nothing for {} s (STREAMING_READ_TIMEOUT)",
                        idle.as_secs()
                    )),
                    None,
                )),
            }
        }
    })
}

/// The decoded answer, with shortened tool names mapped back and the lease held to the end.
struct LeasedEvents {
    inner: EventStream,
    names: ToolNameMap,
    tap: Tap,
    _lease: Lease,
}

impl Stream for LeasedEvents {
    type Item = Result<ChatEvent, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(Some(Err(error))) => {
                record_upstream_error(error);
                if let Some(capture) = &self.tap.capture {
                    capture.error(error);
                }
            }
            Poll::Ready(Some(Ok(
                ChatEvent::TextDelta(_)
                | ChatEvent::ReasoningDelta(_)
                | ChatEvent::ToolUseStart { .. },
            ))) => {
                if let Some(timings) = &self.tap.timings {
                    timings.first_token();
                }
            }
            _ => {}
        }
        match item {
            Poll::Ready(Some(Ok(ChatEvent::ToolUseStart { id, name }))) => {
                let client_name = self.names.to_client(&name);
                let name = if client_name == &*name {
                    name
                } else {
                    ByteString::from(client_name.to_owned())
                };
                Poll::Ready(Some(Ok(ChatEvent::ToolUseStart { id, name })))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: u16, body: &str) -> AttemptOutcome {
        let status = StatusCode::from_u16(status).unwrap();
        let error = from_status(status, &http::HeaderMap::new(), body.as_bytes());
        outcome_for(status, &error)
    }

    #[test]
    fn model_capacity_is_not_held_against_the_account() {
        let body = r#"{"message":"busy","reason":"INSUFFICIENT_MODEL_CAPACITY"}"#;
        assert!(matches!(outcome(503, body), AttemptOutcome::Success));
        assert!(matches!(outcome(400, body), AttemptOutcome::Success));
        assert!(matches!(
            outcome(503, r#"{"message":"down"}"#),
            AttemptOutcome::TransportError
        ));
        assert!(matches!(
            outcome(400, r#"{"message":"x","reason":"MONTHLY_REQUEST_COUNT"}"#),
            AttemptOutcome::QuotaExhausted
        ));
        assert!(matches!(
            outcome(429, "{}"),
            AttemptOutcome::Throttled { .. }
        ));
    }
}
