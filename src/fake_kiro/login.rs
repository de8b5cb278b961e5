//! The sign-in side of the fake: AWS SSO OIDC device authorization (`/client/register`,
//! `/device_authorization`, the device-code grant on `/token`), Kiro's social device flow
//! (`/oauth/device/authorization`, `/oauth/device/poll`), the browser portal with PKCE
//! (`/signin`, `/oauth/token`), the verification page (`/device`) and `ListAvailableProfiles`
//! (`POST /` with `x-amz-target`). Tokens it issues refresh on the ordinary refresh endpoints.
//!
//! Strict like the rest of the fake: unknown clients, wrong secrets, a verifier that does not
//! match its challenge, a redirect URI off the allow-list, a reused code, or polling faster
//! than the interval are refused the way the real services refuse them.
//!
//! Which case a device authorization plays ([`LoginCase`]): the next one pushed with
//! [`FakeKiroHandle::push_login_case`](super::FakeKiroHandle::push_login_case), else a
//! `fake=<case>` parameter in the Identity Center start URL (so `--demo` can play every
//! case), else `normal`. Every case stays pending until someone approves or denies the code on
//! the verification page (or with
//! [`approve_device`](super::FakeKiroHandle::approve_device)).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::body::{self, FakeBody};
use super::server::State;

/// How a device authorization behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoginCase {
    /// Pending until approved or denied.
    #[default]
    Normal,
    /// The first poll is answered `slow_down` (later ones as `normal`); polling faster than
    /// the raised interval is answered `slow_down` again.
    SlowDown,
    /// The device code expires two seconds after the start (`expired_token`).
    Expired,
    /// The next poll is answered `access_denied`.
    Denied,
    /// Approved users have two Kiro profiles (Identity Center), listed on two pages.
    SeveralProfiles,
}

impl LoginCase {
    /// Parses `normal`, `slow-down`, `expired`, `denied`, `several-profiles`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "normal" => LoginCase::Normal,
            "slow-down" => LoginCase::SlowDown,
            "expired" => LoginCase::Expired,
            "denied" => LoginCase::Denied,
            "several-profiles" => LoginCase::SeveralProfiles,
            _ => return None,
        })
    }
}

/// The device-code lifetime the fake advertises.
const DEVICE_CODE_TTL: Duration = Duration::from_secs(600);
/// How long the `expired` case's code really lives.
const EXPIRED_CASE_TTL: Duration = Duration::from_secs(2);
/// The poll interval the fake asks for, in seconds.
const INTERVAL_SECS: u64 = 1;
/// Polls may arrive this much early (clock skew) before they count as too fast.
const POLL_TOLERANCE: Duration = Duration::from_millis(250);
/// The loopback redirects the portal accepts (kiro-cli's allow-list, console-and-login C.4.1).
const ALLOWED_REDIRECT_PORTS: [u16; 10] = [
    3128, 4649, 6588, 8008, 9091, 49153, 50153, 51153, 52153, 53153,
];

/// The two profiles of the several-profiles case; the first is also the single profile.
pub const FAKE_IDC_PROFILES: [(&str, &str); 2] = [
    (
        "arn:aws:codewhisperer:us-east-1:111111111111:profile/FAKEIDC0001",
        "Engineering",
    ),
    (
        "arn:aws:codewhisperer:eu-central-1:222222222222:profile/FAKEIDC0002",
        "Research",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Waiting,
    Approved,
    Denied,
}

struct Registration {
    secret: String,
    expires_at: Instant,
}

struct DeviceCode {
    /// The OIDC client it was issued to; `None` for the social flow.
    client_id: Option<String>,
    user_code: String,
    case: LoginCase,
    started: Instant,
    decision: Decision,
    /// The interval the poller must keep (raised by slow_down).
    interval: Duration,
    last_poll: Option<Instant>,
    polls: u32,
    /// Used up once tokens were issued.
    redeemed: bool,
    /// Social flow: the provider.
    social: bool,
}

/// What a refresh token issued by a sign-in may do.
struct Grant {
    /// OIDC grants refresh only with this client.
    client_id: Option<String>,
    profiles: usize,
}

struct PendingCode {
    challenge: String,
    redirect_uri: String,
    login_option: String,
    used: bool,
}

/// The sign-in state of the fake.
#[derive(Default)]
pub(crate) struct LoginState {
    registrations: HashMap<String, Registration>,
    devices: HashMap<String, DeviceCode>,
    grants: HashMap<String, Grant>,
    /// Access token to the number of profiles its user has.
    access_profiles: HashMap<String, usize>,
    codes: HashMap<String, PendingCode>,
    queued_cases: std::collections::VecDeque<LoginCase>,
    /// Device-code polls answered (OIDC and social).
    pub(crate) device_polls: u64,
}

impl LoginState {
    pub(crate) fn push_case(&mut self, case: LoginCase) {
        self.queued_cases.push_back(case);
    }

    pub(crate) fn decide(&mut self, user_code: &str, approve: bool) -> bool {
        let Some(device) = self
            .devices
            .values_mut()
            .find(|d| d.user_code.eq_ignore_ascii_case(user_code.trim()) && !d.redeemed)
        else {
            return false;
        };
        device.decision = if approve {
            Decision::Approved
        } else {
            Decision::Denied
        };
        true
    }

    pub(crate) fn expire_registrations(&mut self) {
        let now = Instant::now();
        for registration in self.registrations.values_mut() {
            registration.expires_at = now;
        }
    }
}

fn random(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

fn user_code() -> String {
    const LETTERS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut rng = rand::thread_rng();
    let mut pick = || LETTERS[rand::Rng::gen_range(&mut rng, 0..LETTERS.len())] as char;
    let first: String = (0..4).map(|_| pick()).collect();
    let second: String = (0..4).map(|_| pick()).collect();
    format!("{first}-{second}")
}

pub(crate) fn json_response(status: u16, body: Value) -> Response<FakeBody> {
    let mut response = Response::new(body::full(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn html_response(html: String) -> Response<FakeBody> {
    let mut response = Response::new(body::full(Bytes::from(html)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn oidc_error(error: &str, description: &str) -> Response<FakeBody> {
    refused(oidc_refusal(error, description))
}

/// A refusal before it becomes a response (small, so `Result`s stay small).
pub(crate) struct Refusal(u16, pub(crate) Value);

fn refused(refusal: Refusal) -> Response<FakeBody> {
    json_response(refusal.0, refusal.1)
}

fn oidc_refusal(error: &str, description: &str) -> Refusal {
    Refusal(
        400,
        json!({ "error": error, "error_description": description }),
    )
}

async fn read_body(request: Request<hyper::body::Incoming>) -> Bytes {
    match Limited::new(request.into_body(), 1024 * 1024)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

fn query_pairs(query: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://fake/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// Whether this module answers `method path` (the device-grant and refresh halves of `/token`
/// are routed here by the server).
pub(crate) fn serves(method: &http::Method, path: &str) -> bool {
    matches!(
        (method.as_str(), path),
        ("POST", "/client/register")
            | ("POST", "/device_authorization")
            | ("POST", "/oauth/device/authorization")
            | ("POST", "/oauth/device/poll")
            | ("POST", "/oauth/token")
            | ("GET" | "POST", "/device")
            | ("GET", "/signin")
            | ("GET", "/signin/continue")
            | ("POST", "/")
    )
}

/// Answers one sign-in request.
pub(crate) async fn handle(
    state: &State,
    request: Request<hyper::body::Incoming>,
) -> Response<FakeBody> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    let base = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    let raw = read_body(request).await;
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    match (method.as_str(), path.as_str()) {
        ("POST", "/client/register") => register(state, &body),
        ("POST", "/device_authorization") => start_oidc_device(state, &body, &base),
        ("POST", "/oauth/device/authorization") => start_social_device(state, &body, &base),
        ("POST", "/oauth/device/poll") => social_poll(state, &body),
        ("POST", "/oauth/token") => exchange_code(state, &body),
        ("GET", "/device") => device_page(&query_pairs(&query), None),
        ("POST", "/device") => {
            decide_from_page(state, &query_pairs(&String::from_utf8_lossy(&raw)))
        }
        ("GET", "/signin") => portal_page(&query),
        ("GET", "/signin/continue") => portal_continue(state, &query_pairs(&query)),
        _ => list_profiles(state, &headers, &body),
    }
}

fn register(state: &State, body: &Value) -> Response<FakeBody> {
    if body["clientType"].as_str() != Some("public") {
        return oidc_error(
            "invalid_request",
            "The service supports only public as a client type",
        );
    }
    if body["clientName"].as_str().is_none_or(str::is_empty) {
        return oidc_error("invalid_request", "clientName is required");
    }
    let scopes_ok = body["scopes"].as_array().is_some_and(|s| {
        !s.is_empty()
            && s.iter()
                .all(|v| v.as_str().is_some_and(|s| s.starts_with("codewhisperer:")))
    });
    if !scopes_ok {
        return oidc_error("invalid_scope", "Invalid scope");
    }
    let client_id = format!("fakeclient{}", random(12));
    let secret = random(32);
    let issued = chrono::Utc::now().timestamp();
    let ttl = state.config.client_secret_ttl;
    state.login().registrations.insert(
        client_id.clone(),
        Registration {
            secret: secret.clone(),
            expires_at: Instant::now() + ttl,
        },
    );
    json_response(
        200,
        json!({
            "clientId": client_id,
            "clientSecret": secret,
            "clientIdIssuedAt": issued,
            "clientSecretExpiresAt": issued + ttl.as_secs() as i64,
        }),
    )
}

/// Checks an OIDC client id and secret (constant-time on the secret).
fn client_ok(state: &State, body: &Value) -> Result<String, Refusal> {
    let id = body["clientId"].as_str().unwrap_or_default();
    let secret = body["clientSecret"].as_str().unwrap_or_default();
    let login = state.login();
    let Some(registration) = login.registrations.get(id) else {
        return Err(oidc_refusal("invalid_client", "Invalid client"));
    };
    let same: bool =
        subtle::ConstantTimeEq::ct_eq(registration.secret.as_bytes(), secret.as_bytes()).into();
    if !same {
        return Err(oidc_refusal("invalid_client", "Invalid client secret"));
    }
    if Instant::now() >= registration.expires_at {
        return Err(oidc_refusal(
            "invalid_client",
            "Client registration has expired",
        ));
    }
    Ok(id.to_owned())
}

fn new_device(
    state: &State,
    client_id: Option<String>,
    hinted: Option<LoginCase>,
    social: bool,
) -> (String, String) {
    let mut login = state.login();
    let case = login
        .queued_cases
        .pop_front()
        .or(hinted)
        .unwrap_or_default();
    let device_code = random(32);
    let code = user_code();
    login.devices.insert(
        device_code.clone(),
        DeviceCode {
            client_id,
            user_code: code.clone(),
            case,
            started: Instant::now(),
            decision: Decision::Waiting,
            interval: Duration::from_secs(INTERVAL_SECS),
            last_poll: None,
            polls: 0,
            redeemed: false,
            social,
        },
    );
    (device_code, code)
}

fn start_oidc_device(state: &State, body: &Value, base: &str) -> Response<FakeBody> {
    let client_id = match client_ok(state, body) {
        Ok(id) => id,
        Err(refusal) => return refused(refusal),
    };
    let Some(start_url) = body["startUrl"]
        .as_str()
        .and_then(|u| reqwest::Url::parse(u).ok())
    else {
        return oidc_error("invalid_request", "startUrl is required");
    };
    let hinted = start_url
        .query_pairs()
        .find(|(k, _)| k == "fake")
        .and_then(|(_, v)| LoginCase::parse(&v));
    let (device_code, code) = new_device(state, Some(client_id), hinted, false);
    json_response(
        200,
        json!({
            "deviceCode": device_code,
            "userCode": code,
            "verificationUri": format!("{base}/device"),
            "verificationUriComplete": format!("{base}/device?user_code={code}"),
            "expiresIn": DEVICE_CODE_TTL.as_secs(),
            "interval": INTERVAL_SECS,
        }),
    )
}

fn start_social_device(state: &State, body: &Value, base: &str) -> Response<FakeBody> {
    if body["clientId"].as_str().is_none_or(str::is_empty) {
        return json_response(400, json!({ "message": "clientId is required" }));
    }
    if !matches!(body["loginProvider"].as_str(), Some("Google" | "Github")) {
        return json_response(
            400,
            json!({ "message": "loginProvider must be Google or Github" }),
        );
    }
    let (device_code, code) = new_device(state, None, None, true);
    json_response(
        200,
        json!({
            "deviceCode": device_code,
            "userCode": code,
            "verificationUri": format!("{base}/device"),
            "verificationUriComplete": format!("{base}/device?user_code={code}"),
            "expiresInMilliseconds": DEVICE_CODE_TTL.as_millis() as u64,
            "intervalInMilliseconds": INTERVAL_SECS * 1000,
        }),
    )
}

/// The outcome of one device poll, before it is worded for the OIDC or the social service.
enum Polled {
    Pending,
    SlowDown,
    Expired,
    Denied,
    Granted {
        profiles: usize,
        client_id: Option<String>,
    },
    Unknown,
}

fn poll_device(state: &State, device_code: &str, client_id: Option<&str>, social: bool) -> Polled {
    let mut login = state.login();
    login.device_polls += 1;
    let Some(device) = login.devices.get_mut(device_code) else {
        return Polled::Unknown;
    };
    if device.social != social || device.client_id.as_deref() != client_id || device.redeemed {
        return Polled::Unknown;
    }
    let now = Instant::now();
    device.polls += 1;
    let lifetime = if device.case == LoginCase::Expired {
        EXPIRED_CASE_TTL
    } else {
        DEVICE_CODE_TTL
    };
    if now.duration_since(device.started) >= lifetime {
        return Polled::Expired;
    }
    let too_fast = device
        .last_poll
        .is_some_and(|last| now.duration_since(last) + POLL_TOLERANCE < device.interval);
    device.last_poll = Some(now);
    if too_fast || (device.case == LoginCase::SlowDown && device.polls == 1) {
        device.interval += Duration::from_secs(5);
        return Polled::SlowDown;
    }
    if device.case == LoginCase::Denied || device.decision == Decision::Denied {
        return Polled::Denied;
    }
    if device.decision != Decision::Approved {
        return Polled::Pending;
    }
    device.redeemed = true;
    let profiles = if device.case == LoginCase::SeveralProfiles {
        2
    } else {
        1
    };
    Polled::Granted {
        profiles,
        client_id: device.client_id.clone(),
    }
}

fn issue_grant(state: &State, client_id: Option<String>, profiles: usize) -> (String, String) {
    let access = state.issue_access_token();
    let refresh = format!("aorFAKELOGIN{}", random(24));
    let mut login = state.login();
    login.access_profiles.insert(access.clone(), profiles);
    login.grants.insert(
        refresh.clone(),
        Grant {
            client_id,
            profiles,
        },
    );
    (access, refresh)
}

/// `/token` with the device-code grant.
pub(crate) fn device_token(state: &State, body: &Value) -> Response<FakeBody> {
    let client_id = match client_ok(state, body) {
        Ok(id) => id,
        Err(refusal) => return refused(refusal),
    };
    let device_code = body["deviceCode"].as_str().unwrap_or_default();
    match poll_device(state, device_code, Some(&client_id), false) {
        Polled::Pending => oidc_error("authorization_pending", "Authorization is still pending"),
        Polled::SlowDown => oidc_error("slow_down", "Client is polling too fast"),
        Polled::Expired => oidc_error("expired_token", "Device code has expired"),
        Polled::Denied => oidc_error("access_denied", "Authorization was denied"),
        Polled::Unknown => oidc_error("invalid_grant", "Invalid device code provided"),
        Polled::Granted {
            profiles,
            client_id,
        } => {
            let (access, refresh) = issue_grant(state, client_id, profiles);
            json_response(
                200,
                json!({
                    "accessToken": access,
                    "refreshToken": refresh,
                    "expiresIn": state.config.access_token_ttl.as_secs(),
                    "tokenType": "Bearer",
                }),
            )
        }
    }
}

fn social_poll(state: &State, body: &Value) -> Response<FakeBody> {
    if body["clientId"].as_str().is_none_or(str::is_empty) {
        return json_response(400, json!({ "message": "clientId is required" }));
    }
    let device_code = body["deviceCode"].as_str().unwrap_or_default();
    let status = match poll_device(state, device_code, None, true) {
        Polled::Pending => "authorization_pending",
        // Not documented for the social service; the fake uses the RFC 8628 names.
        Polled::SlowDown => "slow_down",
        Polled::Denied => "access_denied",
        Polled::Expired => "expired_token",
        Polled::Unknown => "invalid_token",
        Polled::Granted { .. } => {
            let (access, refresh) = issue_grant(state, None, 1);
            return json_response(
                200,
                json!({
                    "status": "authorized",
                    "accessToken": access,
                    "refreshToken": refresh,
                    "expiresIn": state.config.access_token_ttl.as_secs(),
                    "profileArn": state.config.profile_arn,
                    "identityProvider": "Google",
                }),
            );
        }
    };
    json_response(200, json!({ "status": status }))
}

/// `/token` with `grantType: refresh_token` for a token a sign-in issued; `None` when the token
/// is not one (the server's own refresh check answers then).
pub(crate) fn oidc_refresh(state: &State, body: &Value) -> Option<Response<FakeBody>> {
    let presented = body["refreshToken"].as_str()?;
    let grant_client = state.login().grants.get(presented)?.client_id.clone();
    let client_id = match client_ok(state, body) {
        Ok(id) => id,
        Err(refusal) => return Some(refused(refusal)),
    };
    if grant_client.as_deref() != Some(client_id.as_str()) {
        return Some(oidc_error(
            "invalid_grant",
            "Invalid refresh token provided",
        ));
    }
    let (access, refresh) = rotate(state, presented)?;
    Some(json_response(
        200,
        json!({
            "accessToken": access,
            "refreshToken": refresh,
            "expiresIn": state.config.access_token_ttl.as_secs(),
            "tokenType": "Bearer",
        }),
    ))
}

/// `/refreshToken` for a token a social sign-in issued; `None` when it is not one.
pub(crate) fn desktop_refresh(
    state: &State,
    presented: Option<&str>,
) -> Option<Response<FakeBody>> {
    let presented = presented?;
    if state.login().grants.get(presented)?.client_id.is_some() {
        // An OIDC token sent to the social endpoint: the real service says this.
        return Some(json_response(401, json!({ "message": "Bad credentials" })));
    }
    let (access, refresh) = rotate(state, presented)?;
    Some(json_response(
        200,
        json!({
            "accessToken": access,
            "refreshToken": refresh,
            "expiresIn": state.config.access_token_ttl.as_secs(),
            "profileArn": state.config.profile_arn,
        }),
    ))
}

/// A new access token for a grant, rotating the refresh token when the fake rotates.
fn rotate(state: &State, presented: &str) -> Option<(String, String)> {
    let access = state.issue_access_token();
    let rotate = state.config.rotate_refresh_tokens;
    let mut login = state.login();
    let grant = login.grants.remove(presented)?;
    login.access_profiles.insert(access.clone(), grant.profiles);
    let refresh = if rotate {
        format!("aorFAKELOGIN{}", random(24))
    } else {
        presented.to_owned()
    };
    login.grants.insert(refresh.clone(), grant);
    drop(login);
    state.lock().stats.refreshes += 1;
    Some((access, refresh))
}

fn list_profiles(state: &State, headers: &http::HeaderMap, body: &Value) -> Response<FakeBody> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    if target != Some("AmazonCodeWhispererService.ListAvailableProfiles") {
        return json_response(
            400,
            json!({ "__type": "UnknownOperationException", "message": "Unknown operation" }),
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some("application/x-amz-json-1.0") {
        return json_response(
            400,
            json!({ "__type": "SerializationException", "message": "Unsupported content type" }),
        );
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let profiles = token.and_then(|t| state.login().access_profiles.get(t).copied());
    let Some(profiles) = profiles else {
        return json_response(
            403,
            json!({ "__type": "AccessDeniedException", "message": "The bearer token included in the request is invalid." }),
        );
    };
    // One profile per page, so a client that ignores nextToken misses the second.
    let page: usize = match body["nextToken"].as_str() {
        None => 0,
        Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse().ok()) {
            Some(n) if n < profiles => n,
            _ => {
                return json_response(
                    400,
                    json!({ "__type": "ValidationException", "message": "Invalid nextToken" }),
                )
            }
        },
    };
    let (arn, name) = FAKE_IDC_PROFILES[page];
    let mut answer = json!({ "profiles": [ { "arn": arn, "profileName": name } ] });
    if page + 1 < profiles {
        answer["nextToken"] = json!(format!("page-{}", page + 1));
    }
    json_response(200, answer)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn device_page(query: &HashMap<String, String>, message: Option<&str>) -> Response<FakeBody> {
    let code = escape(
        query
            .get("user_code")
            .map(String::as_str)
            .unwrap_or_default(),
    );
    let message = message
        .map(|m| format!("<p><strong>{}</strong></p>", escape(m)))
        .unwrap_or_default();
    html_response(format!(
        "<!doctype html><html><head><title>Fake Kiro sign-in</title></head><body>\
         <h1>Fake Kiro: authorize a device</h1>{message}\
         <form method=\"post\" action=\"/device\">\
         <label>Code <input name=\"user_code\" value=\"{code}\"></label> \
         <button name=\"decision\" value=\"allow\">Allow</button> \
         <button name=\"decision\" value=\"deny\">Deny</button></form></body></html>"
    ))
}

fn decide_from_page(state: &State, form: &HashMap<String, String>) -> Response<FakeBody> {
    let code = form.get("user_code").cloned().unwrap_or_default();
    let approve = form.get("decision").map(String::as_str) == Some("allow");
    let message = if state.login().decide(&code, approve) {
        if approve {
            "Allowed: you can close this page."
        } else {
            "Denied."
        }
    } else {
        "Unknown or used code."
    };
    device_page(&HashMap::new(), Some(message))
}

fn portal_page(query: &str) -> Response<FakeBody> {
    let pairs = query_pairs(query);
    if let Err(refusal) = check_portal_query(&pairs) {
        return refused(refusal);
    }
    let query = escape(query);
    html_response(format!(
        "<!doctype html><html><head><title>Fake Kiro portal</title></head><body>\
         <h1>Fake Kiro: sign in</h1>\
         <p><a href=\"/signin/continue?provider=google&amp;{query}\">Continue with Google</a></p>\
         <p><a href=\"/signin/continue?provider=github&amp;{query}\">Continue with GitHub</a></p>\
         </body></html>"
    ))
}

fn check_portal_query(pairs: &HashMap<String, String>) -> Result<(), Refusal> {
    if pairs.get("code_challenge_method").map(String::as_str) != Some("S256")
        || pairs.get("code_challenge").is_none_or(|c| c.len() < 43)
        || pairs.get("state").is_none_or(String::is_empty)
    {
        return Err(Refusal(
            400,
            json!({ "message": "code_challenge (S256) and state are required" }),
        ));
    }
    let redirect = pairs
        .get("redirect_uri")
        .and_then(|r| reqwest::Url::parse(r).ok());
    let allowed = redirect.is_some_and(|r| {
        r.scheme() == "http"
            && r.host_str() == Some("localhost")
            && r.port()
                .is_some_and(|p| ALLOWED_REDIRECT_PORTS.contains(&p))
    });
    if !allowed {
        return Err(Refusal(
            400,
            json!({ "message": "Invalid redirect URI. Must be localhost or a subdomain of app.kiro.dev" }),
        ));
    }
    Ok(())
}

/// What the portal does after the user picked a provider: a code, and the redirect.
pub(crate) fn issue_code(
    state: &State,
    pairs: &HashMap<String, String>,
) -> Result<String, Refusal> {
    check_portal_query(pairs)?;
    let provider = match pairs.get("provider").map(String::as_str) {
        Some(p @ ("google" | "github")) => p.to_owned(),
        _ => {
            return Err(Refusal(
                400,
                json!({ "message": "provider must be google or github" }),
            ))
        }
    };
    let code = random(24);
    let redirect = pairs["redirect_uri"].clone();
    state.login().codes.insert(
        code.clone(),
        PendingCode {
            challenge: pairs["code_challenge"].clone(),
            redirect_uri: redirect.clone(),
            login_option: provider.clone(),
            used: false,
        },
    );
    let mut url = reqwest::Url::parse(&redirect).map_err(|_| Refusal(400, json!({})))?;
    url.query_pairs_mut()
        .append_pair("login_option", &provider)
        .append_pair("code", &code)
        .append_pair("state", &pairs["state"]);
    Ok(url.to_string())
}

fn portal_continue(state: &State, pairs: &HashMap<String, String>) -> Response<FakeBody> {
    match issue_code(state, pairs) {
        Ok(location) => {
            let mut response = Response::new(body::full(Bytes::new()));
            *response.status_mut() = StatusCode::FOUND;
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(refusal) => refused(refusal),
    }
}

fn exchange_code(state: &State, body: &Value) -> Response<FakeBody> {
    let (Some(code), Some(verifier), Some(redirect_uri)) = (
        body["code"].as_str(),
        body["code_verifier"].as_str(),
        body["redirect_uri"].as_str(),
    ) else {
        return json_response(
            400,
            json!({ "message": "code, code_verifier and redirect_uri are required" }),
        );
    };
    let mut login = state.login();
    let Some(pending) = login.codes.get_mut(code) else {
        return json_response(400, json!({ "message": "Invalid code" }));
    };
    if pending.used {
        return json_response(400, json!({ "message": "Code already used" }));
    }
    pending.used = true;
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if challenge != pending.challenge {
        return json_response(400, json!({ "message": "Invalid code_verifier" }));
    }
    let expected = format!(
        "{}?login_option={}",
        pending.redirect_uri, pending.login_option
    );
    if redirect_uri != expected {
        return json_response(400, json!({ "message": "redirect_uri mismatch" }));
    }
    drop(login);
    let (access, refresh) = issue_grant(state, None, 1);
    json_response(
        200,
        json!({
            "accessToken": access,
            "refreshToken": refresh,
            "expiresIn": state.config.access_token_ttl.as_secs(),
            "profileArn": state.config.profile_arn,
        }),
    )
}
