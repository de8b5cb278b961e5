//! The gateway's routes: the chat pipeline on `/v1/chat/completions` and `/v1/messages`, plus
//! `/v1/models`, `/v1/messages/count_tokens`, `/health` and `/`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use kiro_layers::auth::AuthLayer;
use kiro_layers::body::{full, ResponseBody};
use kiro_layers::convert::read_body;
use kiro_layers::dialect::anthropic;
use kiro_layers::dialect::responses::store::ResponseStore;
use kiro_layers::rescue::RescueLayer;
use kiro_layers::stack::{chat_stack, StackDeps};
use kiro_layers::traits::ModelCatalog;
use kiro_layers::GatewayError;
use serde_json::json;
use tower::ServiceBuilder;

/// The version reported by `/` and `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// All routes of the gateway, ready to serve or to nest in another axum app.
pub fn router(deps: StackDeps) -> Router {
    router_with_responses(deps, None)
}

/// [`router`], with stored responses (`/v1/responses` `store: true`) kept in `responses`.
pub fn router_with_responses(deps: StackDeps, responses: Option<Arc<dyn ResponseStore>>) -> Router {
    let chat = chat_stack(deps.clone());
    let responses = crate::responses_api::routes(&deps, chat.clone(), responses);
    let authed = ServiceBuilder::new()
        .layer(RescueLayer)
        .layer(AuthLayer::new(Arc::clone(&deps.keys)));
    let models = {
        let catalog = Arc::clone(&deps.models);
        authed.clone().service_fn(move |request: Request<Body>| {
            let catalog = Arc::clone(&catalog);
            async move { Ok::<_, GatewayError>(list_models(&*catalog, &request)) }
        })
    };
    let max_body = deps.max_body_bytes;
    let catalog = Arc::clone(&deps.models);
    let count_tokens = authed.service_fn(move |request: Request<Body>| {
        let catalog = Arc::clone(&catalog);
        async move {
            let options = anthropic::ParseOptions::from_headers(request.headers());
            let body = read_body(request.into_body(), max_body).await?;
            let (model, tokens) = anthropic::count_tokens_for_model(&body, options)?;
            // Same name resolution as /v1/messages: an unknown model is a 404 here too.
            if catalog.resolve(&model).is_none() {
                return Err(GatewayError::model_not_found(&model));
            }
            Ok::<_, GatewayError>(json_response(&json!({ "input_tokens": tokens })))
        }
    });
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route_service("/v1/chat/completions", chat.clone())
        .route_service("/v1/messages", chat)
        .route_service("/v1/messages/count_tokens", count_tokens)
        .route_service("/v1/models", models)
        .merge(responses)
        .fallback(not_found)
}

fn json_response(value: &serde_json::Value) -> Response<ResponseBody> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /v1/models`: OpenAI shape, or Anthropic's when the caller sends `anthropic-version`.
fn list_models<B>(catalog: &dyn ModelCatalog, request: &Request<B>) -> Response<ResponseBody> {
    let models = catalog.list();
    if request.headers().contains_key("anthropic-version") {
        let data: Vec<_> = models
            .iter()
            .map(|m| {
                json!({
                    "type": "model",
                    "id": m.id,
                    "display_name": m.display_name,
                    "created_at": "2025-01-01T00:00:00Z",
                })
            })
            .collect();
        let first = data
            .first()
            .and_then(|m| m["id"].as_str())
            .map(str::to_owned);
        let last = data
            .last()
            .and_then(|m| m["id"].as_str())
            .map(str::to_owned);
        json_response(
            &json!({ "data": data, "has_more": false, "first_id": first, "last_id": last }),
        )
    } else {
        let created = unix_now();
        let data: Vec<_> = models
            .iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "object": "model",
                    "created": created,
                    "owned_by": "kiro",
                    "context_window": m.context_window,
                    "max_output_tokens": m.max_output_tokens,
                })
            })
            .collect();
        json_response(&json!({ "object": "list", "data": data }))
    }
}

async fn root() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok", "message": "Kiro Gateway is running", "version": VERSION }))
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "healthy", "timestamp": unix_now(), "version": VERSION }))
}

pub(crate) async fn not_found(request: Request<Body>) -> Response<ResponseBody> {
    let path = request.uri().path().to_owned();
    let dialect = kiro_layers::rescue::dialect_for_path(&path);
    GatewayError::not_found(format!("No route for {} {path}.", request.method()))
        .to_response(dialect)
        .map(full)
}
