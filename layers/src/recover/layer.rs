//! The tower side of the recover layer.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::attempt::{until_first_event, Template};
use super::stream::Recovering;
use super::tracker::Tracker;
use super::{RecoverConfig, RetriedService, TruncationMemory};
use crate::chat::{ChatRequest, EventStream};
use crate::error::GatewayError;
use crate::usage::AttemptCounter;

/// Builds [`Recover`].
#[derive(Clone)]
pub struct RecoverLayer {
    config: Arc<RecoverConfig>,
    memory: TruncationMemory,
}

impl RecoverLayer {
    /// Recovers with `config`; cut tool calls are remembered in a memory of its own.
    pub fn new(config: RecoverConfig) -> Self {
        RecoverLayer {
            config: Arc::new(config),
            memory: TruncationMemory::default(),
        }
    }

    /// The memory of cut tool calls (shared by every service this layer builds).
    pub fn memory(&self) -> &TruncationMemory {
        &self.memory
    }
}

impl<S> Layer<S> for RecoverLayer {
    type Service = Recover<S>;
    fn layer(&self, inner: S) -> Recover<S> {
        Recover {
            inner,
            config: Arc::clone(&self.config),
            memory: self.memory.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Recover<S> {
    inner: S,
    config: Arc<RecoverConfig>,
    memory: TruncationMemory,
}

impl<S> Service<Request<ChatRequest>> for Recover<S>
where
    S: RetriedService,
{
    type Response = Response<EventStream>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EventStream>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        // Each attempt waits for readiness of its own clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<ChatRequest>) -> Self::Future {
        let inner = self.inner.clone();
        let config = Arc::clone(&self.config);
        let memory = self.memory.clone();
        if config.truncation_recovery {
            let noted = memory.annotate(request.body_mut());
            if noted > 0 {
                tracing::info!(results = noted, "told the model about tool calls Kiro cut");
            }
        }
        if request.extensions().get::<AttemptCounter>().is_none() {
            request.extensions_mut().insert(AttemptCounter::default());
        }
        Box::pin(async move {
            let template = Template::new(request);
            let started = until_first_event(
                inner.clone(),
                &template,
                &template.body,
                Arc::clone(&config),
            )
            .await?;
            let recovering = Recovering {
                inner,
                template,
                config,
                memory,
                current: Some(started.rest),
                pending: VecDeque::new(),
                tracker: Tracker::default(),
                continuations: 0,
                finished: false,
            };
            let events = recovering.into_stream(started.first);
            Ok(Response::from_parts(started.parts, events))
        })
    }
}
