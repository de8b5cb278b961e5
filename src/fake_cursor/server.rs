//! Request routing and the streamed answers.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use kiro_layers::cursor::headers::{MODELS_PATH, REFRESH_PATH};
use kiro_layers::cursor::proto::{
    available_models_response::AvailableModel, AvailableModelsResponse,
};
use prost::Message as _;

use super::checks::{check_chat, Refusal};
use super::scenarios::{error_end, frames, Scenario};
use super::{State, SLOW_FIRST_BYTE};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

pub(crate) async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(full(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "unreadable body",
            ))
        }
    };
    let path = parts.uri.path().to_owned();
    if parts.method == http::Method::POST && path == REFRESH_PATH {
        return Ok(refresh(&state, &body));
    }
    if parts.method == http::Method::POST && path == MODELS_PATH {
        let models = AvailableModelsResponse {
            model_names: state.config.models.clone(),
            models: state
                .config
                .models
                .iter()
                .map(|name| AvailableModel {
                    name: name.clone(),
                    default_on: true,
                    supports_thinking: Some(name.contains("thinking")),
                    ..Default::default()
                })
                .collect(),
        };
        return Ok(full(
            StatusCode::OK,
            "application/proto",
            models.encode_to_vec(),
        ));
    }
    let seen = check_chat(
        &state,
        &parts.method,
        &path,
        parts.version,
        &parts.headers,
        &body,
    );
    let seen = match seen {
        Ok(seen) => seen,
        Err(Refusal::Http(status, text)) => {
            state.refused.fetch_add(1, Ordering::Relaxed);
            return Ok(full(status, "text/plain", text));
        }
        Err(Refusal::Stream {
            code,
            connect,
            title,
            detail,
        }) => {
            state.refused.fetch_add(1, Ordering::Relaxed);
            return Ok(full(
                StatusCode::OK,
                "application/connect+proto",
                error_end(code, connect, &title, &detail),
            ));
        }
    };
    state.chat_calls.fetch_add(1, Ordering::Relaxed);
    let scenario = state
        .next_scenario()
        .or_else(|| Scenario::from_directive(&seen.last_user_text))
        .unwrap_or(Scenario::Echo);
    let wire: Vec<u8> = frames(&scenario, &seen).concat();
    let chunk = state.config.chunk.max(1);
    let pieces: Vec<Bytes> = wire.chunks(chunk).map(Bytes::copy_from_slice).collect();
    let slow = scenario == Scenario::SlowFirstByte;
    let stream = futures_util::stream::iter(pieces.into_iter().enumerate()).then(
        move |(i, piece)| async move {
            if slow && i == 0 {
                tokio::time::sleep(SLOW_FIRST_BYTE).await;
            }
            Ok::<_, Infallible>(Frame::data(piece))
        },
    );
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/connect+proto"),
    );
    Ok(response)
}

fn refresh(state: &State, body: &[u8]) -> Response<Body> {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let known = request["grant_type"] == "refresh_token"
        && request["refresh_token"].as_str().is_some_and(|token| {
            state
                .refresh_tokens
                .lock()
                .is_ok_and(|t| t.contains_key(token))
        });
    if !known {
        return full(
            StatusCode::UNAUTHORIZED,
            "application/json",
            r#"{"error":"invalid_grant","shouldLogout":true}"#,
        );
    }
    state.refreshes.fetch_add(1, Ordering::Relaxed);
    let token = state.issue(3600);
    full(
        StatusCode::OK,
        "application/json",
        serde_json::json!({"access_token": token, "id_token": "", "shouldLogout": false})
            .to_string(),
    )
}
