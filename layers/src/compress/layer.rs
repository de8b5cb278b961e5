//! `CompressLayer`: runs [`super::compress`] on every request after model resolution, with the
//! resolved model's context window minus the answer reserve as the token budget.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use super::{check_fits, compress, Budget, CompressConfig};
use crate::chat::ChatRequest;
use crate::error::GatewayError;
use crate::resolve::resolved_model;
use crate::usage::InputEstimate;

/// Response header that reports what compression removed.
pub const COMPRESSION_HEADER: &str = "x-kiro-compression";

/// Builds [`Compress`].
#[derive(Debug, Clone)]
pub struct CompressLayer {
    config: Arc<CompressConfig>,
}

impl CompressLayer {
    /// Compresses with `config`.
    pub fn new(config: CompressConfig) -> Self {
        CompressLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for CompressLayer {
    type Service = Compress<S>;
    fn layer(&self, inner: S) -> Compress<S> {
        Compress {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Compress<S> {
    inner: S,
    config: Arc<CompressConfig>,
}

impl<S, T> Service<Request<ChatRequest>> for Compress<S>
where
    S: Service<Request<ChatRequest>, Response = Response<T>, Error = GatewayError>,
    S::Future: Send + 'static,
    T: Send + 'static,
{
    type Response = Response<T>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<T>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ChatRequest>) -> Self::Future {
        let (budget, model_id) = match resolved_model(&request) {
            Ok(resolved) => (
                Budget {
                    max_tokens: resolved
                        .context_window
                        .saturating_sub(self.config.answer_reserve_tokens),
                    max_bytes: self
                        .config
                        .max_payload_bytes
                        .saturating_sub(self.config.payload_margin_bytes),
                },
                resolved.kiro_id.clone(),
            ),
            Err(error) => return Box::pin(async move { Err(error) }),
        };
        let outcome = if self.config.enabled {
            compress(request.body_mut(), &budget, &self.config, &model_id)
        } else {
            check_fits(request.body(), &budget, &model_id).map(|()| None)
        };
        let report = match outcome {
            Ok(report) => report,
            Err(error) => {
                tracing::info!(model = %model_id, "refused an oversized request: {}", error.message());
                return Box::pin(async move { Err(error) });
            }
        };
        if let Some(report) = &report {
            tracing::info!(
                model = %model_id,
                level = report.level,
                tokens_before = report.tokens_before,
                tokens_after = report.tokens_after,
                shortened = report.shortened_blocks,
                dropped_blocks = report.dropped_blocks,
                dropped_messages = report.dropped_messages,
                "compressed the conversation to fit the context window"
            );
            request
                .extensions_mut()
                .insert(InputEstimate(report.tokens_after));
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            if let Some(report) = report {
                if let Ok(value) = HeaderValue::from_str(&report.header_value()) {
                    response.headers_mut().insert(COMPRESSION_HEADER, value);
                }
            }
            Ok(response)
        })
    }
}
