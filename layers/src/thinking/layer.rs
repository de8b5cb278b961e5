//! `ThinkingLayer`: decides per request whether to ask Kiro for reasoning (the `<thinking>` tag
//! injection of protocol §5.1) and parses the tagged reasoning out of the answer.
//!
//! The client's wish comes first (Anthropic `thinking`, OpenAI `reasoning_effort`), then the
//! configured default (`FAKE_REASONING`), capped at `FAKE_REASONING_BUDGET_CAP`. The request
//! builder never puts the tags on a turn that only carries tool results (a known cause of 400s).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::{
    injection_prefix, resolve_budget, system_prompt_addition, thinking_stream, ThinkingHandling,
};
use crate::chat::{ChatRequest, EventStream};
use crate::error::GatewayError;
use crate::kiro::service::BuildOverrides;

/// Reasoning settings of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkingConfig {
    /// Inject when the client did not say (`FAKE_REASONING`).
    pub enabled_by_default: bool,
    /// Budget when the client did not give one (`FAKE_REASONING_MAX_TOKENS`).
    pub default_budget: u32,
    /// Upper bound for any budget; 0 = none (`FAKE_REASONING_BUDGET_CAP`).
    pub budget_cap: u32,
    /// What to do with the parsed reasoning (`FAKE_REASONING_HANDLING`).
    pub handling: ThinkingHandling,
}

impl Default for ThinkingConfig {
    fn default() -> Self {
        ThinkingConfig {
            enabled_by_default: true,
            default_budget: 4000,
            budget_cap: 10_000,
            handling: ThinkingHandling::AsReasoningContent,
        }
    }
}

/// Builds [`Thinking`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ThinkingLayer {
    config: ThinkingConfig,
}

impl ThinkingLayer {
    /// Applies `config`.
    pub fn new(config: ThinkingConfig) -> Self {
        ThinkingLayer { config }
    }
}

impl<S> Layer<S> for ThinkingLayer {
    type Service = Thinking<S>;
    fn layer(&self, inner: S) -> Thinking<S> {
        Thinking {
            inner,
            config: self.config,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Thinking<S> {
    inner: S,
    config: ThinkingConfig,
}

impl<S> Service<Request<ChatRequest>> for Thinking<S>
where
    S: Service<Request<ChatRequest>, Response = Response<EventStream>, Error = GatewayError>,
    S::Future: Send + 'static,
{
    type Response = Response<EventStream>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EventStream>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ChatRequest>) -> Self::Future {
        let config = self.config;
        let budget = resolve_budget(
            request.body().thinking,
            config.enabled_by_default,
            config.default_budget,
            config.budget_cap,
        );
        if let Some(budget) = budget {
            let overrides = request
                .extensions_mut()
                .get_or_insert_default::<BuildOverrides>();
            overrides
                .system_prompt_additions
                .push(system_prompt_addition());
            overrides.current_message_prefix = Some(injection_prefix(budget));
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(match budget {
                Some(_) => response.map(|events| thinking_stream(events, config.handling)),
                None => response,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ChatEvent, Dialect, ThinkingRequest};
    use futures_util::{stream, StreamExt};
    use tower::{service_fn, ServiceExt};

    async fn run(
        thinking: ThinkingRequest,
        config: ThinkingConfig,
    ) -> (Option<BuildOverrides>, Vec<ChatEvent>) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen_inner = seen.clone();
        let inner = service_fn(move |req: Request<ChatRequest>| {
            *seen_inner.lock().unwrap() = req.extensions().get::<BuildOverrides>().cloned();
            async move {
                let events: EventStream = Box::pin(stream::iter(vec![
                    Ok(ChatEvent::TextDelta("<thinking>plan</thinking>".into())),
                    Ok(ChatEvent::TextDelta("answer".into())),
                ]));
                Ok::<_, GatewayError>(Response::new(events))
            }
        });
        let mut chat = ChatRequest::user_text(Dialect::Anthropic, "auto", "hi");
        chat.thinking = thinking;
        let response = ThinkingLayer::new(config)
            .layer(inner)
            .oneshot(Request::new(chat))
            .await
            .unwrap();
        let events: Vec<ChatEvent> = response.into_body().map(Result::unwrap).collect().await;
        let overrides = seen.lock().unwrap().clone();
        (overrides, events)
    }

    #[tokio::test]
    async fn client_budget_injects_and_parses() {
        let (overrides, events) =
            run(ThinkingRequest::Budget(2000), ThinkingConfig::default()).await;
        let prefix = overrides.unwrap().current_message_prefix.unwrap();
        assert!(prefix.contains("2000"), "{prefix}");
        assert!(events
            .iter()
            .any(|e| matches!(e, ChatEvent::ReasoningDelta(t) if t.contains("plan"))));
        assert!(events
            .iter()
            .any(|e| matches!(e, ChatEvent::TextDelta(t) if t.contains("answer"))));
    }

    #[tokio::test]
    async fn disabled_leaves_text_alone() {
        let (overrides, events) = run(ThinkingRequest::Disabled, ThinkingConfig::default()).await;
        assert!(overrides.is_none());
        assert_eq!(
            events[0],
            ChatEvent::TextDelta("<thinking>plan</thinking>".into())
        );
    }

    #[tokio::test]
    async fn budget_is_capped() {
        let config = ThinkingConfig {
            budget_cap: 500,
            ..ThinkingConfig::default()
        };
        let (overrides, _) = run(ThinkingRequest::Budget(90_000), config).await;
        let prefix = overrides.unwrap().current_message_prefix.unwrap();
        assert!(
            prefix.contains("500") && !prefix.contains("90000"),
            "{prefix}"
        );
    }

    #[tokio::test]
    async fn default_off_means_no_injection() {
        let config = ThinkingConfig {
            enabled_by_default: false,
            ..ThinkingConfig::default()
        };
        let (overrides, _) = run(ThinkingRequest::Default, config).await;
        assert!(overrides.is_none());
    }
}
