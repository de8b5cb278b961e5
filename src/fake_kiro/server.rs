//! The HTTP side of the fake: routing, the refresh flows, the token check,
//! `ListAvailableModels` and `generateAssistantResponse`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use kiro_layers::kiro::validate::{validate_request, Rejection};
use serde_json::{json, Value};

use super::body::{self, FakeBody};
use super::scenarios::{self, ChatContext, Scenario, Script, EVENT_STREAM};
use super::{FakeKiroConfig, FakeStats};

/// Largest request body the fake reads (far above the validator's payload limit, so the
/// validator, not the transport, answers oversized requests).
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Shared by the handle and every connection.
pub(crate) struct State {
    pub config: FakeKiroConfig,
    pub inner: Mutex<Inner>,
    /// The pre-encoded body of the load-test mode.
    pub precomputed: Option<Bytes>,
    /// Sign-in flows (`login.rs`).
    pub login: Mutex<super::login::LoginState>,
    /// `getUsageLimits` answers (`usage_limits.rs`).
    pub usage_limits: Mutex<super::usage_limits::UsageLimitsState>,
}

pub(crate) struct Inner {
    pub refresh_token: String,
    pub access_tokens: HashMap<String, Instant>,
    pub queue: std::collections::VecDeque<Scenario>,
    pub stats: FakeStats,
    pub counter: u64,
    /// The refresh endpoints answer 503 while set.
    pub refresh_down: bool,
}

impl State {
    pub(crate) fn new(config: FakeKiroConfig) -> Self {
        let precomputed = config.precomputed_deltas.map(scenarios::precomputed_body);
        State {
            inner: Mutex::new(Inner {
                refresh_token: config.refresh_token.clone(),
                access_tokens: HashMap::new(),
                queue: Default::default(),
                stats: FakeStats::default(),
                counter: 0,
                refresh_down: false,
            }),
            config,
            precomputed,
            login: Mutex::new(Default::default()),
            usage_limits: Mutex::new(Default::default()),
        }
    }

    /// The sign-in state, even if poisoned.
    pub(crate) fn login(&self) -> MutexGuard<'_, super::login::LoginState> {
        self.login
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The usage-limits state, even if poisoned.
    pub(crate) fn usage_limits(&self) -> MutexGuard<'_, super::usage_limits::UsageLimitsState> {
        self.usage_limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lock, even if a panicking test thread poisoned it (the data stays usable).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Mints an access token valid for the configured TTL.
    pub(crate) fn issue_access_token(&self) -> String {
        let mut inner = self.lock();
        inner.counter += 1;
        let token = format!("aoaFAKE{}{}", inner.counter, uuid::Uuid::new_v4().simple());
        let expiry = Instant::now() + self.config.access_token_ttl;
        inner.access_tokens.insert(token.clone(), expiry);
        token
    }

    pub(crate) fn bearer_is_valid(&self, request: &Request<hyper::body::Incoming>) -> bool {
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = token else { return false };
        self.lock()
            .access_tokens
            .get(token)
            .is_some_and(|expiry| Instant::now() < *expiry)
    }
}

/// Returned by [`handle`] to make hyper close the connection without a response.
#[derive(Debug)]
pub(crate) struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fake: connection reset before the response head")
    }
}

impl std::error::Error for ResetConnection {}

/// Marks a response that must not be sent: the connection is reset instead.
#[derive(Debug, Clone, Copy)]
struct ResetMarker;

/// Answers one request. Every problem becomes a response, except the `reset` scenario, which
/// closes the connection before the head.
pub(crate) async fn handle(
    state: Arc<State>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<FakeBody>, ResetConnection> {
    let route = (request.method().clone(), request.uri().path().to_owned());
    let response = match (&route.0, route.1.as_str()) {
        (&Method::POST, "/refreshToken" | "/token") if state.lock().refresh_down => json_response(
            503,
            json!({"message": "fake: the refresh endpoint is down", "reason": null}),
        ),
        (&Method::POST, "/refreshToken") => desktop_refresh(&state, request).await,
        (&Method::POST, "/token") => oidc_refresh(&state, request).await,
        (&Method::GET, "/ListAvailableModels") => list_models(&state, &request),
        (&Method::GET, "/getUsageLimits") => super::usage_limits::handle(&state, &request),
        (&Method::POST, "/generateAssistantResponse") => chat(&state, request).await,
        (method, path) if super::login::serves(method, path) => {
            super::login::handle(&state, request).await
        }
        _ => json_response(404, json!({"message": "Not Found", "reason": null})),
    };
    if response.extensions().get::<ResetMarker>().is_some() {
        return Err(ResetConnection);
    }
    Ok(response)
}

async fn read_json(request: Request<hyper::body::Incoming>) -> Option<(Value, usize)> {
    let bytes = Limited::new(request.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
        .ok()?
        .to_bytes();
    let value = serde_json::from_slice(&bytes).ok()?;
    Some((value, bytes.len()))
}

pub(crate) fn json_response(status: u16, body: Value) -> Response<FakeBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(body::full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_request_id(&mut response);
    response
}

fn add_request_id(response: &mut Response<FakeBody>) {
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
}

/// Checks a presented refresh token, rotating it on success when configured.
fn accept_refresh_token(state: &State, presented: Option<&str>) -> Option<String> {
    let mut inner = state.lock();
    if presented != Some(inner.refresh_token.as_str()) {
        return None;
    }
    if state.config.rotate_refresh_tokens {
        inner.counter += 1;
        inner.refresh_token = format!("aorFAKE{}{}", inner.counter, uuid::Uuid::new_v4().simple());
    }
    inner.stats.refreshes += 1;
    Some(inner.refresh_token.clone())
}

async fn desktop_refresh(
    state: &State,
    request: Request<hyper::body::Incoming>,
) -> Response<FakeBody> {
    let body = read_json(request).await.map(|(value, _)| value);
    let presented = body.as_ref().and_then(|b| b["refreshToken"].as_str());
    if let Some(answer) = super::login::desktop_refresh(state, presented) {
        return answer;
    }
    let Some(refresh_token) = accept_refresh_token(state, presented) else {
        return json_response(401, json!({"message": "Invalid refresh token provided"}));
    };
    json_response(
        200,
        json!({
            "accessToken": state.issue_access_token(),
            "expiresIn": state.config.access_token_ttl.as_secs(),
            "profileArn": state.config.profile_arn,
            "refreshToken": refresh_token,
        }),
    )
}

async fn oidc_refresh(
    state: &State,
    request: Request<hyper::body::Incoming>,
) -> Response<FakeBody> {
    let body = read_json(request).await.map(|(value, _)| value);
    let body = body.unwrap_or(Value::Null);
    if body["grantType"].as_str() == Some("urn:ietf:params:oauth:grant-type:device_code") {
        return super::login::device_token(state, &body);
    }
    if let Some(answer) = super::login::oidc_refresh(state, &body) {
        return answer;
    }
    let config = &state.config;
    let client_ok = body["grantType"].as_str() == Some("refresh_token")
        && body["clientId"].as_str() == Some(config.oidc_client_id.as_str())
        && body["clientSecret"].as_str() == Some(config.oidc_client_secret.as_str());
    let accepted = if client_ok {
        accept_refresh_token(state, body["refreshToken"].as_str())
    } else {
        None
    };
    let Some(refresh_token) = accepted else {
        return json_response(
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid refresh token provided"}),
        );
    };
    // The OIDC CreateToken answer carries no profileArn.
    json_response(
        200,
        json!({
            "accessToken": state.issue_access_token(),
            "expiresIn": config.access_token_ttl.as_secs(),
            "refreshToken": refresh_token,
            "tokenType": "Bearer",
        }),
    )
}

pub(crate) fn bearer_rejection() -> Response<FakeBody> {
    json_response(
        403,
        json!({"message": "The bearer token included in the request is invalid.", "reason": null}),
    )
}

fn list_models(state: &State, request: &Request<hyper::body::Incoming>) -> Response<FakeBody> {
    state.lock().stats.list_models_requests += 1;
    if !state.config.serve_list_models {
        // The runtime host does not serve this operation; the one measured answer is a 400.
        return json_response(400, Rejection::improperly_formed().body());
    }
    if !state.bearer_is_valid(request) {
        return bearer_rejection();
    }
    let has_origin = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("origin=")));
    if !has_origin {
        return json_response(400, Rejection::improperly_formed().body());
    }
    json_response(200, super::models::list_body(&state.config.rules))
}

async fn chat(state: &State, request: Request<hyper::body::Incoming>) -> Response<FakeBody> {
    let headers = request.headers().clone();
    let http2 = request.version() == http::Version::HTTP_2;
    let authorized = state.bearer_is_valid(&request);
    let parsed = read_json(request).await;
    let (scenario, seed, chat_number) = {
        let mut inner = state.lock();
        inner.stats.chat_requests += 1;
        inner.stats.http2_chat_requests += u64::from(http2);
        inner.counter += 1;
        if state.precomputed.is_none() {
            inner.stats.last_headers = Some(headers);
            inner.stats.last_request_body = parsed.as_ref().map(|(value, _)| value.clone());
        }
        let chat_number = inner.stats.chat_requests;
        (inner.queue.pop_front(), inner.counter, chat_number)
    };
    if !authorized {
        return bearer_rejection();
    }
    let Some((body, body_bytes)) = parsed else {
        return json_response(400, Rejection::improperly_formed().body());
    };
    if let Some(every) = state.config.throttle_every.filter(|n| *n > 0) {
        if chat_number % every == 0 {
            return script_response(state, scenarios::status_script(429), seed);
        }
    }
    if let Some(precomputed) = &state.precomputed {
        return stream_response(body::full(precomputed.clone()));
    }
    if let Err(rejection) = validate_request(&body, &state.config.rules) {
        return json_response(rejection.status, rejection.body());
    }
    let model_id = body["conversationState"]["currentMessage"]["userInputMessage"]["modelId"]
        .as_str()
        .unwrap_or_default();
    let window = state.config.rules.context_window(model_id).unwrap_or(0);
    let ctx = ChatContext::from_body(&body, window, body_bytes);
    let scenario = scenario
        .or_else(|| Scenario::from_directive(&ctx.user_text))
        .unwrap_or(Scenario::Echo);
    if scenario == Scenario::ResetBeforeHeaders {
        let mut response = json_response(500, json!({}));
        response.extensions_mut().insert(ResetMarker);
        return response;
    }
    let script = scenarios::script(&scenario, &ctx, |name| {
        super::models::load_capture(&state.config.capture_dir, name)
    });
    script_response(state, script, seed)
}

fn stream_response(body: FakeBody) -> Response<FakeBody> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    add_request_id(&mut response);
    response
}

fn script_response(state: &State, script: Script, seed: u64) -> Response<FakeBody> {
    let mut parts = script.parts;
    if script.status == 200 && !state.config.first_byte_delay.is_zero() {
        parts.insert(0, scenarios::Part::Pause(state.config.first_byte_delay));
    }
    let body = if script.status == 200 {
        body::streaming(parts, state.config.chunking, seed)
    } else {
        // Error answers are small JSON documents sent whole, like the real ones.
        let bytes: Vec<u8> = parts
            .into_iter()
            .filter_map(|part| match part {
                scenarios::Part::Bytes(bytes) => Some(bytes.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        body::full(Bytes::from(bytes))
    };
    let mut response = stream_response(body);
    *response.status_mut() =
        StatusCode::from_u16(script.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(content_type) = HeaderValue::from_str(script.content_type) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    for (name, value) in script.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
