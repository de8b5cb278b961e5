//! `ConvertLayer`: the only boundary between HTTP and the typed pipeline. It reads the body with
//! a size limit, parses it in the dialect of the route (OpenAI or Anthropic) into a
//! [`ChatRequest`], and on the way back encodes the typed event stream once: as SSE while it
//! arrives, or collected into one JSON body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tower::{Layer, Service};

use crate::body::{full, streaming, ResponseBody};
use crate::chat::{ChatRequest, Dialect, EventStream, ResponseMeta};
use crate::dialect::{anthropic, openai, responses};
use crate::error::GatewayError;
use crate::rescue::dialect_for_path;
use crate::tokens::estimate_request_tokens;
use crate::traits::ResolvedModel;
use crate::usage::InputEstimate;

/// Default limit on a request body: large enough for long agent conversations with images.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Builds [`Convert`].
#[derive(Debug, Clone, Copy)]
pub struct ConvertLayer {
    max_body_bytes: usize,
}

impl ConvertLayer {
    /// Refuses bodies over `max_body_bytes` with a 413.
    pub fn new(max_body_bytes: usize) -> Self {
        ConvertLayer { max_body_bytes }
    }
}

impl Default for ConvertLayer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BODY_BYTES)
    }
}

impl<S> Layer<S> for ConvertLayer {
    type Service = Convert<S>;
    fn layer(&self, inner: S) -> Convert<S> {
        Convert {
            inner,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Convert<S> {
    inner: S,
    max_body_bytes: usize,
}

/// Reads a whole body, refusing more than `limit` bytes with a 413.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, GatewayError>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::payload_too_large(limit))
        }
        Err(error) => Err(GatewayError::invalid_request(format!(
            "Could not read the request body: {error}"
        ))),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn response_id(dialect: Dialect) -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    match dialect {
        Dialect::OpenAi => format!("chatcmpl-{hex}"),
        Dialect::Anthropic => format!("msg_{}", &hex[..24]),
        Dialect::Responses => format!("resp_{hex}"),
    }
}

impl<S, B> Service<Request<B>> for Convert<S>
where
    S: Service<Request<ChatRequest>, Response = Response<EventStream>, Error = GatewayError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = GatewayError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.max_body_bytes;
        Box::pin(async move {
            let dialect = dialect_for_path(request.uri().path());
            let (parts, body) = request.into_parts();
            let bytes = read_body(body, limit).await?;
            if let Some(capture) = parts.extensions.get::<crate::capture::CaptureHandle>() {
                capture.client_request(&bytes, parts.extensions.get::<crate::traits::Principal>());
            }
            // The Responses answer needs to know how the request declared its tools.
            let mut responses_context = None;
            let chat = match dialect {
                Dialect::OpenAi => openai::parse_request(&bytes)?,
                Dialect::Anthropic => anthropic::parse_request_with(
                    &bytes,
                    anthropic::ParseOptions::from_headers(&parts.headers),
                )?,
                Dialect::Responses => {
                    let (chat, context, on_finished) =
                        responses::store::prepare_request(&bytes, &parts.extensions).await?;
                    responses_context = Some((context, on_finished));
                    chat
                }
            };
            drop(bytes);
            let estimate = estimate_request_tokens(&chat);
            let streamed = chat.stream;
            let mut meta = ResponseMeta {
                id: response_id(dialect),
                model: chat.model.clone(),
                created: now_unix(),
                input_tokens_estimate: estimate,
                context_window: 0,
                include_usage: chat.include_usage,
            };
            let mut request = Request::from_parts(parts, chat);
            request.extensions_mut().insert(InputEstimate(estimate));
            let response = inner.call(request).await?;
            let (mut parts, events) = response.into_parts();
            if let Some(resolved) = parts.extensions.get::<ResolvedModel>() {
                meta.context_window = resolved.context_window;
            }
            let body = if streamed {
                parts.headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream; charset=utf-8"),
                );
                parts.headers.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache"),
                );
                // Stops nginx and similar proxies from buffering the stream.
                parts
                    .headers
                    .insert("x-accel-buffering", HeaderValue::from_static("no"));
                match (dialect, responses_context) {
                    (Dialect::Responses, Some((context, on_finished))) => {
                        streaming(responses::sse_stream(events, meta, context, on_finished))
                    }
                    (Dialect::Anthropic, _) => streaming(anthropic::with_keepalive(
                        anthropic::sse_stream(events, meta),
                        anthropic::DEFAULT_KEEPALIVE,
                    )),
                    _ => streaming(openai::sse_stream(events, meta)),
                }
            } else {
                let json = match (dialect, responses_context) {
                    (Dialect::Responses, Some((context, on_finished))) => {
                        responses::collect_response(events, meta, context, on_finished).await?
                    }
                    (Dialect::Anthropic, _) => anthropic::collect_response(events, meta).await?,
                    _ => openai::collect_response(events, meta).await?,
                };
                parts.headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                full(json)
            };
            Ok(Response::from_parts(parts, body))
        })
    }
}
