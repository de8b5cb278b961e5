//! One answer's attempts before the first event: a new request (and so a new lease) each time,
//! a first-token deadline, backoff between attempts.

use futures_util::StreamExt;
use http::Request;
use tower::ServiceExt;

use std::sync::Arc;

use super::{RecoverConfig, RetriedService};
use crate::chat::{ChatEvent, ChatRequest, EventStream};
use crate::error::GatewayError;
use crate::kiro::errors::{is_account_problem, is_retryable, is_throttle};
use crate::pool::queue::{waiting_until, LeaseClock};

/// Most throttled attempts of one answer, whatever the budget (with many accounts, each may
/// throttle once without any rest to wait for).
const MAX_THROTTLED_ATTEMPTS: u32 = 16;

/// Everything needed to send the same request again.
#[derive(Debug, Clone)]
pub(super) struct Template {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    /// The request body; continuations change it.
    pub body: ChatRequest,
}

impl Template {
    pub fn new(request: Request<ChatRequest>) -> Self {
        let (parts, body) = request.into_parts();
        Template {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            extensions: parts.extensions,
            body,
        }
    }

    pub fn request(&self, body: ChatRequest) -> Request<ChatRequest> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        *request.extensions_mut() = self.extensions.clone();
        request
    }
}

/// An attempt that produced its first event.
pub(super) struct Started {
    pub parts: http::response::Parts,
    pub first: ChatEvent,
    pub rest: EventStream,
}

/// Calls `inner` until an attempt yields its first event, or the attempts run out. Each attempt
/// sends its own copy of `body`: the caller keeps the original for later continuations.
pub(super) async fn until_first_event<S>(
    inner: S,
    template: &Template,
    body: &ChatRequest,
    config: Arc<RecoverConfig>,
) -> Result<Started, GatewayError>
where
    S: RetriedService,
{
    let attempts = config.max_attempts.max(1);
    let deadline = tokio::time::Instant::now() + config.throttle_budget;
    let mut attempt = 1;
    let mut throttled = 0;
    let error = loop {
        let mut request = template.request(body.clone());
        // A wait in the pool's line does not count against the first-token limit.
        let clock = LeaseClock::default();
        request.extensions_mut().insert(clock.clone());
        let service = inner.clone();
        let started = async move {
            let response = service.oneshot(request).await?;
            let (parts, mut events) = response.into_parts();
            match events.next().await {
                Some(Ok(first)) => Ok(Started {
                    parts,
                    first,
                    rest: events,
                }),
                Some(Err(error)) => Err(error),
                None => Err(GatewayError::upstream_stream(
                    "Kiro ended the answer before sending anything.",
                )),
            }
        };
        let started = waiting_until(deadline, started);
        let outcome = tokio::select! {
            outcome = started => Some(outcome),
            _ = clock.upstream_limit(config.first_token_timeout) => None,
        };
        let error = match outcome {
            Some(Ok(started)) => return Ok(started),
            Some(Err(error)) => error,
            None => GatewayError::timeout(format!(
                "Kiro sent nothing within {} s of the request (FIRST_TOKEN_TIMEOUT).",
                config.first_token_timeout.as_secs_f64()
            )),
        };
        if !is_retryable(&error) {
            return Err(error);
        }
        if is_throttle(&error) {
            throttled += 1;
            let in_budget = tokio::time::Instant::now() < deadline;
            tracing::info!(
                throttled,
                in_budget,
                "Kiro throttled an attempt before any output: {}",
                error.message()
            );
            if !in_budget || throttled >= MAX_THROTTLED_ATTEMPTS {
                break error;
            }
            // No backoff of our own: the pool waits for the rest this throttle started.
            continue;
        }
        tracing::warn!(
            attempt,
            attempts,
            "upstream attempt failed before any output: {}",
            error.message()
        );
        if attempt >= attempts {
            break error;
        }
        attempt += 1;
        tokio::time::sleep(config.backoff(attempt)).await;
    };
    Err(if is_account_problem(&error) {
        GatewayError::no_account(format!(
            "No Kiro account of this gateway could serve the request: every account tried was \
             refused ({}).",
            error.message()
        ))
    } else {
        error
    })
}
