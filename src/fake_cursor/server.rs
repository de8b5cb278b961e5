//! Request routing and the streamed answers.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use kiro_layers::cursor::headers::{MODELS_PATH, POLL_PATH, REFRESH_PATH, UPGRADE_PATH};
use kiro_layers::cursor::proto::{
    available_models_response::AvailableModel, AvailableModelsResponse,
};
use prost::Message as _;
use sha2::Digest as _;

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
    if parts.method == http::Method::POST && path == UPGRADE_PATH {
        return Ok(upgrade(&state, &parts.headers, &body));
    }
    if parts.method == http::Method::GET && path == POLL_PATH {
        return Ok(poll(&state, parts.uri.query().unwrap_or("")));
    }
    if parts.method == http::Method::POST && path == MODELS_PATH {
        state.model_lists.fetch_add(1, Ordering::Relaxed);
        let failing =
            state
                .failing_model_lists
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Ok(full(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "upstream connect error",
            ));
        }
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

/// §5.3, the website's half: a live browser cookie token (`type: web`, issued here) in
/// `WorkosCursorSessionToken=<userId>%3A%3A<jwt>` and a JSON `{uuid, challenge}` register a
/// login that `/auth/poll` completes.
fn upgrade(state: &State, headers: &http::HeaderMap, body: &[u8]) -> Response<Body> {
    let cookie = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("WorkosCursorSessionToken="))
        .unwrap_or("");
    let jwt = cookie.split_once("%3A%3A").map_or("", |(_, jwt)| jwt);
    let live = state
        .tokens
        .lock()
        .ok()
        .and_then(|t| t.get(jwt).copied())
        .is_some_and(|exp| exp > super::now_seconds());
    let is_web = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|claims| claims["type"] == "web");
    if !live || !is_web {
        return full(
            StatusCode::UNAUTHORIZED,
            "application/json",
            r#"{"error":"not logged in"}"#,
        );
    }
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let (Some(uuid), Some(challenge)) = (request["uuid"].as_str(), request["challenge"].as_str())
    else {
        return full(
            StatusCode::BAD_REQUEST,
            "application/json",
            r#"{"error":"uuid and challenge are required"}"#,
        );
    };
    if let Ok(mut pending) = state.pending_logins.lock() {
        pending.insert(uuid.to_owned(), challenge.to_owned());
    }
    full(StatusCode::OK, "application/json", "{}")
}

/// §5.2's poll: 404 while no login is pending for the uuid, 200 with fresh tokens once the
/// verifier hashes to the registered challenge (each login is handed out once).
fn poll(state: &State, query: &str) -> Response<Body> {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
            .to_owned()
    };
    let (uuid, verifier) = (param("uuid"), param("verifier"));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let matched =
        state
            .pending_logins
            .lock()
            .ok()
            .and_then(|mut pending| match pending.get(&uuid) {
                Some(expected) if *expected == challenge => pending.remove(&uuid),
                _ => None,
            });
    if matched.is_none() {
        return full(StatusCode::NOT_FOUND, "text/plain", "pending");
    }
    let access = state.issue(3600);
    let refresh = state.issue_refresh_token();
    full(
        StatusCode::OK,
        "application/json",
        serde_json::json!({
            "accessToken": access,
            "refreshToken": refresh,
            "challenge": challenge,
            "authId": "auth0|user_01FAKECURSORUPGRADE",
            "uuid": uuid,
        })
        .to_string(),
    )
}
