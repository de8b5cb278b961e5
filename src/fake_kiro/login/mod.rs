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

mod browser;
mod device;
mod profiles;

pub(crate) use browser::issue_code;
use browser::{decide_from_page, device_page, exchange_code, portal_continue, portal_page};
pub(crate) use device::{desktop_refresh, device_token, oidc_refresh};
use device::{register, social_poll, start_oidc_device, start_social_device};
use profiles::list_profiles;

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
