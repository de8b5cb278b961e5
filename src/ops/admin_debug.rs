//! `GET /admin/debug` (the captures, newest first) and `GET /admin/debug/{id}` (one capture as
//! JSON lines), for operators who cannot reach the machine's disk. Mounted only when
//! `ADMIN_API_KEY` is set; the key goes in `Authorization: Bearer` or `x-api-key`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kiro_layers::auth::{presented_key, SingleKeyStore};
use kiro_layers::traits::KeyStore;
use serde_json::json;

use crate::debug::store;

#[derive(Clone)]
struct AdminState {
    key: Arc<SingleKeyStore>,
    dir: PathBuf,
}

/// The routes, guarded by `admin_key`, reading captures from `dir`.
pub fn routes(admin_key: &str, dir: PathBuf) -> Router {
    let state = AdminState {
        key: Arc::new(SingleKeyStore::new(admin_key)),
        dir,
    };
    Router::new()
        .route("/admin/debug", get(list))
        .route("/admin/debug/{id}", get(show))
        .with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"message": message}}))).into_response()
}

fn authorised<B>(state: &AdminState, request: &Request<B>) -> bool {
    let key = presented_key(request).unwrap_or_default();
    state.key.authenticate(key).is_ok()
}

fn denied() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "Send the admin key (ADMIN_API_KEY) as `Authorization: Bearer <key>` or `x-api-key`.",
    )
}

async fn list(State(state): State<AdminState>, request: Request<axum::body::Body>) -> Response {
    if !authorised(&state, &request) {
        return denied();
    }
    if !state.dir.exists() {
        return axum::Json(json!({"data": []})).into_response();
    }
    match store::list(&state.dir) {
        Ok(captures) => {
            let data: Vec<_> = captures
                .iter()
                .map(|c| json!({"id": c.id, "bytes": c.bytes, "request": c.request}))
                .collect();
            axum::Json(json!({"data": data})).into_response()
        }
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

async fn show(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    request: Request<axum::body::Body>,
) -> Response {
    if !authorised(&state, &request) {
        return denied();
    }
    let text = store::find(&state.dir, &id).and_then(|path| {
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read the capture: {e}"))
    });
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response(),
        Err(message) => error(StatusCode::NOT_FOUND, &message),
    }
}
