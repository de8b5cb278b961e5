//! `ResolveModelLayer`: turns the client's model name into a [`ResolvedModel`] (Kiro id, context
//! window, output limit) through the [`ModelCatalog`], before any account is leased. An unknown
//! model is a 404 in the caller's dialect. The resolution is also copied into the response
//! extensions so the encoders can turn context-usage percentages into tokens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::chat::ChatRequest;
use crate::error::GatewayError;
use crate::traits::{ModelCatalog, Principal, ResolvedModel};

/// Builds [`ResolveModel`].
#[derive(Clone)]
pub struct ResolveModelLayer {
    catalog: Arc<dyn ModelCatalog>,
}

impl ResolveModelLayer {
    /// Resolves through `catalog`.
    pub fn new(catalog: Arc<dyn ModelCatalog>) -> Self {
        ResolveModelLayer { catalog }
    }
}

impl<S> Layer<S> for ResolveModelLayer {
    type Service = ResolveModel<S>;
    fn layer(&self, inner: S) -> ResolveModel<S> {
        ResolveModel {
            inner,
            catalog: Arc::clone(&self.catalog),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct ResolveModel<S> {
    inner: S,
    catalog: Arc<dyn ModelCatalog>,
}

impl<S, T> Service<Request<ChatRequest>> for ResolveModel<S>
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
        let requested = &request.body().model;
        let Some(resolved) = self.catalog.resolve(requested) else {
            let error = GatewayError::model_not_found(requested);
            return Box::pin(async move { Err(error) });
        };
        let allowed = request
            .extensions()
            .get::<Principal>()
            .map(|p| {
                p.allowed_models.is_empty()
                    || p.allowed_models
                        .iter()
                        .any(|m| *m == resolved.kiro_id || *m == resolved.requested)
            })
            .unwrap_or(true);
        if !allowed {
            let error = GatewayError::permission_denied(format!(
                "This API key may not use the model `{}`.",
                resolved.requested
            ));
            return Box::pin(async move { Err(error) });
        }
        if let Some(timings) = request.extensions().get::<crate::metrics::Timings>() {
            timings.model(&resolved.kiro_id);
        }
        let fallbacks = self.catalog.fallbacks(requested);
        if !fallbacks.is_empty() {
            request
                .extensions_mut()
                .insert(crate::traits::ModelFallbacks(fallbacks));
        }
        request.extensions_mut().insert(resolved.clone());
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            response.extensions_mut().insert(resolved);
            Ok(response)
        })
    }
}

/// Reads the resolution a previous stage stored, or explains the wiring mistake.
pub fn resolved_model<B>(request: &Request<B>) -> Result<&ResolvedModel, GatewayError> {
    request.extensions().get::<ResolvedModel>().ok_or_else(|| {
        GatewayError::internal("model was not resolved before this stage (stack wiring bug)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Dialect;
    use crate::models::ModelRegistry;
    use tower::{service_fn, ServiceExt};

    fn layer() -> ResolveModelLayer {
        ResolveModelLayer::new(Arc::new(ModelRegistry::with_defaults()))
    }

    #[tokio::test]
    async fn resolves_and_passes_the_model_down_and_back() {
        let inner = service_fn(|req: Request<ChatRequest>| async move {
            let model = resolved_model(&req)?.kiro_id.clone();
            Ok::<_, GatewayError>(Response::new(model))
        });
        let request = Request::new(ChatRequest::user_text(
            Dialect::OpenAi,
            "claude-sonnet-4-5",
            "hi",
        ));
        let response = layer().layer(inner).oneshot(request).await.unwrap();
        assert_eq!(response.body(), "claude-sonnet-4.5");
        assert_eq!(
            response
                .extensions()
                .get::<ResolvedModel>()
                .unwrap()
                .context_window,
            200_000
        );
    }

    #[tokio::test]
    async fn unknown_model_is_not_found_and_never_reaches_inner() {
        let inner = service_fn(|_req: Request<ChatRequest>| async move {
            panic!("inner must not be called");
            #[allow(unreachable_code)]
            Ok::<Response<()>, GatewayError>(Response::new(()))
        });
        let request = Request::new(ChatRequest::user_text(Dialect::OpenAi, "gpt-9", "hi"));
        let err = layer().layer(inner).oneshot(request).await.unwrap_err();
        assert_eq!(err.status(), 404);
        assert!(err.message().contains("gpt-9"));
    }

    #[tokio::test]
    async fn key_allow_list_is_enforced() {
        let inner = service_fn(|_req: Request<ChatRequest>| async move {
            Ok::<_, GatewayError>(Response::new(()))
        });
        let mut request = Request::new(ChatRequest::user_text(
            Dialect::OpenAi,
            "claude-opus-4.7",
            "hi",
        ));
        request.extensions_mut().insert(Principal {
            key_id: "k".into(),
            allowed_models: vec!["claude-haiku-4.5".into()],
            ..Principal::default()
        });
        let err = layer().layer(inner).oneshot(request).await.unwrap_err();
        assert_eq!(err.status(), 403);
    }
}
