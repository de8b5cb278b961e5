//! The Responses routes: `POST /v1/responses` runs the chat pipeline in the Responses dialect;
//! `GET` and `DELETE /v1/responses/{id}` read and remove stored responses.
//!
//! The store, when the gateway has a database, reaches the pipeline as a request extension
//! ([`ResponseStoreHandle`]), so the shared stack needs no new dependency. `GET /v1/responses`
//! (Codex's WebSocket transport) is a plain 404, never a 426, so Codex falls back to HTTP.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::routing::{get_service, post_service};
use axum::Router;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use kiro_layers::auth::AuthLayer;
use kiro_layers::body::{full, ResponseBody};
use kiro_layers::dialect::responses::store::{
    owner_of, response_not_found, ResponseStore, ResponseStoreHandle, StoredResponse,
};
use kiro_layers::dialect::responses::FinishedResponse;
use kiro_layers::rescue::RescueLayer;
use kiro_layers::stack::{ChatStack, StackDeps};
use kiro_layers::store::{ResponseRow, Store};
use kiro_layers::traits::Principal;
use kiro_layers::GatewayError;
use serde_json::Value;
use tower::ServiceBuilder;

/// The Responses routes over `chat` (the composed pipeline), with stored responses when `store`
/// is given.
pub fn routes(deps: &StackDeps, chat: ChatStack, store: Option<Arc<dyn ResponseStore>>) -> Router {
    let handle = store.clone().map(ResponseStoreHandle);
    let create = ServiceBuilder::new()
        .map_request(move |mut request: Request<Body>| {
            if let Some(handle) = &handle {
                request.extensions_mut().insert(handle.clone());
            }
            request
        })
        .service(chat);
    let authed = ServiceBuilder::new()
        .layer(RescueLayer)
        .layer(AuthLayer::new(Arc::clone(&deps.keys)));
    let read = {
        let store = store.clone();
        authed.clone().service_fn(move |request: Request<Body>| {
            let store = store.clone();
            let target = Target::of(&request);
            async move { stored(store.as_deref(), target, Action::Get).await }
        })
    };
    let delete = authed.service_fn(move |request: Request<Body>| {
        let store = store.clone();
        let target = Target::of(&request);
        async move { stored(store.as_deref(), target, Action::Delete).await }
    });
    Router::new()
        .route(
            "/v1/responses",
            post_service(create).fallback(crate::routes::not_found),
        )
        .route(
            "/v1/responses/{id}",
            get_service(read).delete_service(delete),
        )
}

/// [`ResponseStore`] over the gateway's database, keeping each response for `retention`.
pub struct DbResponses {
    store: Arc<dyn Store>,
    retention: Duration,
}

impl DbResponses {
    /// Stored responses in `store`, kept for `retention`.
    pub fn new(store: Arc<dyn Store>, retention: Duration) -> Self {
        DbResponses { store, retention }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl ResponseStore for DbResponses {
    fn save(
        &self,
        owner: &str,
        response: FinishedResponse,
    ) -> BoxFuture<'_, Result<(), GatewayError>> {
        let now = now_ms();
        let retention = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let row = ResponseRow {
            owner: owner.to_owned(),
            id: response.id,
            response: response.response.to_string(),
            items: Value::Array(response.items).to_string(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(retention),
        };
        Box::pin(async move { Ok(self.store.put_response(row).await?) })
    }

    fn load<'a>(
        &'a self,
        owner: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredResponse>, GatewayError>> {
        Box::pin(async move {
            let Some(row) = self.store.get_response(owner, id, now_ms()).await? else {
                return Ok(None);
            };
            let corrupt = |_| GatewayError::internal("a stored response is corrupt");
            let response: Value = serde_json::from_str(&row.response).map_err(corrupt)?;
            let items: Vec<Value> = serde_json::from_str(&row.items).map_err(corrupt)?;
            Ok(Some(StoredResponse { response, items }))
        })
    }

    fn delete<'a>(
        &'a self,
        owner: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, GatewayError>> {
        Box::pin(async move { Ok(self.store.delete_response(owner, id).await?) })
    }
}

#[derive(Clone, Copy)]
enum Action {
    Get,
    Delete,
}

/// The response id of the path, and the caller who asks.
struct Target {
    id: String,
    owner: Option<String>,
}

impl Target {
    fn of(request: &Request<Body>) -> Self {
        let id = request
            .uri()
            .path()
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let owner = request.extensions().get::<Principal>().map(owner_of);
        Target { id, owner }
    }
}

/// `GET` / `DELETE /v1/responses/{id}`, scoped to the caller: another user's id is a 404.
async fn stored(
    store: Option<&dyn ResponseStore>,
    Target { id, owner }: Target,
    action: Action,
) -> Result<Response<ResponseBody>, GatewayError> {
    let (Some(store), Some(owner)) = (store, owner) else {
        return Err(GatewayError::not_found(
            "No stored responses: this gateway runs without a database, so `store` keeps nothing.",
        ));
    };
    let body = match action {
        Action::Get => match store.load(&owner, &id).await? {
            Some(stored) => stored.response,
            None => return Err(response_not_found(&id)),
        },
        Action::Delete => {
            if !store.delete(&owner, &id).await? {
                return Err(response_not_found(&id));
            }
            serde_json::json!({ "id": id, "object": "response", "deleted": true })
        }
    };
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
