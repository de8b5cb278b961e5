//! The default pipeline, composed in one place. The binary, the tests, the examples and the
//! benches all call [`chat_stack`], so what is measured is what runs.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kiro_layers::stack::{chat_stack, StackDeps};
//!
//! # fn demo(deps: StackDeps) {
//! let service = chat_stack(deps);
//! // Mount `service` with axum: Router::new().route_service("/v1/chat/completions", service)
//! # }
//! ```

use std::sync::Arc;

use tower::ServiceBuilder;

use crate::auth::AuthLayer;
use crate::capture::{CaptureLayer, CaptureSink, DEFAULT_CAPTURE_LIMIT};
use crate::compress::{CompressConfig, CompressLayer};
use crate::convert::ConvertLayer;
use crate::kiro::service::{KiroConfig, KiroService};
use crate::limits::OutputLimitLayer;
use crate::metrics::MetricsLayer;
use crate::pool::TokenPoolLayer;
use crate::quota::{QuotaGuard, QuotaLayer};
use crate::recover::{RecoverConfig, RecoverLayer};
use crate::rescue::RescueLayer;
use crate::resolve::ResolveModelLayer;
use crate::thinking::{ThinkingConfig, ThinkingLayer};
use crate::traits::{KeyStore, ModelCatalog, TokenSource, UsageSink};
use crate::upstream::{Upstream, UpstreamService};
use crate::usage::UsageLayer;

/// What the stack needs from its host.
#[derive(Clone)]
pub struct StackDeps {
    /// API keys.
    pub keys: Arc<dyn KeyStore>,
    /// Upstream accounts of every kind.
    pub tokens: Arc<dyn TokenSource>,
    /// Models.
    pub models: Arc<dyn ModelCatalog>,
    /// Usage records.
    pub usage: Arc<dyn UsageSink>,
    /// HTTP client for Kiro's chat calls (`UpstreamClient::direct()`, or a `reqwest::Client`
    /// converted with `.into()` when a proxy is needed).
    pub http: crate::kiro::http::UpstreamClient,
    /// Kiro call settings.
    pub kiro: KiroConfig,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Reasoning injection and parsing.
    pub thinking: ThinkingConfig,
    /// Where debug captures go (`DEBUG_MODE`); `None` captures nothing.
    pub capture: Option<Arc<dyn CaptureSink>>,
    /// Per-key quotas and rate limits (`quota::Unlimited` without users).
    pub quota: Arc<dyn QuotaGuard>,
    /// Context compression.
    pub compress: CompressConfig,
    /// Retries and truncation recovery.
    pub recover: RecoverConfig,
    /// Upstreams beside Kiro (a Cursor upstream, ...), each serving the accounts of its kind.
    /// Empty for a Kiro-only gateway.
    pub upstreams: Vec<Arc<dyn Upstream>>,
}

/// The chat pipeline (`/v1/chat/completions`, `/v1/messages`), outermost first: rescue, metrics,
/// debug capture, auth, convert, quota, output limits, thinking, model resolution, compression,
/// recovery, token pool, usage, and the upstream of the leased account's kind.
pub fn chat_stack(deps: StackDeps) -> ChatStack {
    ServiceBuilder::new()
        .layer(RescueLayer)
        .layer(MetricsLayer::new(Arc::clone(&deps.models)))
        .layer(CaptureLayer::new(deps.capture, DEFAULT_CAPTURE_LIMIT))
        .layer(AuthLayer::new(deps.keys))
        .layer(ConvertLayer::new(deps.max_body_bytes))
        .layer(QuotaLayer::new(deps.quota, Arc::clone(&deps.usage)))
        .layer(OutputLimitLayer)
        .layer(ThinkingLayer::new(deps.thinking))
        .layer(ResolveModelLayer::new(deps.models))
        .layer(CompressLayer::new(deps.compress))
        .layer(RecoverLayer::new(deps.recover))
        .layer(TokenPoolLayer::new(deps.tokens))
        .layer(UsageLayer::new(deps.usage))
        .service(bottom(deps.http, deps.kiro, deps.upstreams))
}

/// The service at the bottom: Kiro plus the other upstreams, dispatched by the lease's kind.
fn bottom(
    http: crate::kiro::http::UpstreamClient,
    kiro: KiroConfig,
    others: Vec<Arc<dyn Upstream>>,
) -> UpstreamService {
    let mut upstreams: Vec<Arc<dyn Upstream>> = vec![Arc::new(KiroService::new(http, kiro))];
    upstreams.extend(others);
    UpstreamService::new(upstreams)
}

/// The type of the composed chat pipeline.
pub type ChatStack = crate::rescue::Rescue<
    crate::metrics::Metrics<
        crate::capture::Capture<
            crate::auth::Auth<
                crate::convert::Convert<
                    crate::quota::Quota<
                        crate::limits::OutputLimit<
                            crate::thinking::Thinking<
                                crate::resolve::ResolveModel<
                                    crate::compress::Compress<
                                        crate::recover::Recover<
                                            crate::pool::TokenPool<
                                                crate::usage::Usage<UpstreamService>,
                                            >,
                                        >,
                                    >,
                                >,
                            >,
                        >,
                    >,
                >,
            >,
        >,
    >,
>;
