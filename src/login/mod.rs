//! Adding a Kiro account by signing in, without Kiro IDE or kiro-cli: AWS Builder ID and IAM
//! Identity Center device authorization, Kiro's Google / GitHub device flow, the
//! paste-the-redirect-URL fallback, and batch import of refresh tokens and credential files.
//!
//! One API serves the `/admin/accounts/login/...` JSON endpoints ([`routes`]), the CLI
//! (`kiro-gateway account login`, [`cli`]) and the web console:
//!
//! | call | what it does |
//! |---|---|
//! | [`Logins::start`] | registers / starts the flow upstream; returns a [`FlowView`] with the flow id, the user code, the verification links (or, for the paste fallback, the sign-in link) and the expiry. A background task polls from then on. |
//! | [`Logins::status`] | the current [`FlowView`]; `status` is one of [`FlowStatus`]: `pending`, `slow_down`, `needs_profile_choice` (with `profiles`), `waiting_for_redirect`, `finishing`, `succeeded` (with `account`), `expired`, `denied`, `failed` (with `error`), `cancelled`. |
//! | [`Logins::wait`] | like `status`, but first waits (up to a timeout) until the flow changes from the version the caller last saw: long polling for pages and the CLI. |
//! | [`Logins::choose_profile`] | answers `needs_profile_choice` with one of the listed ARNs. |
//! | [`Logins::complete_redirect`] | the paste fallback: exchanges the pasted `http://localhost:3128/oauth/callback?...` address. |
//! | [`Logins::cancel`] | stops a flow that has not finished. |
//! | [`batch::import`] | many refresh tokens / credential files at once, one result per line. |
//!
//! On success the account is verified with one refresh (the rotated refresh token is the one
//! stored), stored with everything its refreshes need (refresh token and client secret
//! encrypted at rest; client id, region; the method, start URL and client-secret expiry in
//! `account_logins`), the pool reloads, and the audit log says who added it and how. Flows are
//! kept in the store (`stored.rs`), so every gateway process on the database answers every call
//! above for every flow; one process, the owner, polls and stores the account (`owner.rs`), and
//! another takes the flow over when the owner stops.
//!
//! ```no_run
//! # async fn demo(logins: std::sync::Arc<kiro_gateway::login::Logins>) -> Result<(), kiro_layers::GatewayError> {
//! use kiro_gateway::login::{FlowStatus, LoginRequest};
//! use kiro_gateway::tenancy::keys::Caller;
//! let caller = Caller::Cli;
//! let started = logins.start(&caller, LoginRequest::builder_id()).await?;
//! println!("open {} and enter {}", started.verification_uri.as_deref().unwrap_or(""),
//!          started.user_code.as_deref().unwrap_or(""));
//! let mut seen = started.version;
//! loop {
//!     let now = logins.wait(&started.id, seen, std::time::Duration::from_secs(30)).await?;
//!     seen = now.version;
//!     if now.status == FlowStatus::NeedsProfileChoice {
//!         let arn = now.profiles[0].arn.clone();
//!         logins.choose_profile(&started.id, &arn).await?;
//!     } else if now.status.is_final() {
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod account;
pub mod batch;
pub mod cli;
mod flow;
pub mod oidc;
mod owner;
pub mod poll;
pub mod profiles;
mod request;
pub mod routes;
pub mod social;
mod stored;
mod urls;

use std::time::Duration;

use kiro_layers::GatewayError;
use serde_json::Value;

pub use flow::{Logins, DEFAULT_LEASE};
pub use request::{FlowStatus, FlowView, LoginMethod, LoginRequest};
pub use urls::{LoginUrlArgs, LoginUrls};

/// What a device authorization start returned (both device flows).
#[derive(Clone)]
pub struct DeviceStart {
    /// Secret: proves the poller is the one that started.
    pub device_code: String,
    /// What the user types on the verification page.
    pub user_code: String,
    /// The verification page.
    pub verification_uri: String,
    /// The verification page with the code filled in.
    pub verification_uri_complete: String,
    /// How long the code lives.
    pub expires_in: Duration,
    /// How often to poll.
    pub interval: Duration,
}

impl std::fmt::Debug for DeviceStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStart")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Tokens a sign-in produced. Secrets; `Debug` redacts them.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoginTokens {
    /// Bearer token (for `ListAvailableProfiles`).
    pub access_token: String,
    /// The long-lived token the account keeps.
    pub refresh_token: String,
    /// `profileArn`, when the service returned one (social flows).
    pub profile_arn: Option<String>,
}

impl std::fmt::Debug for LoginTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginTokens")
            .field("profile_arn", &self.profile_arn)
            .finish_non_exhaustive()
    }
}

impl LoginTokens {
    /// Reads `accessToken`, `refreshToken` and `profileArn` from a token answer.
    pub fn from_answer(answer: &Value) -> Option<Self> {
        let text = |key: &str| {
            answer[key]
                .as_str()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Some(LoginTokens {
            access_token: text("accessToken")?,
            refresh_token: text("refreshToken")?,
            profile_arn: text("profileArn"),
        })
    }
}

/// `POST`s JSON and returns the status and the JSON answer (`Null` when the body is not JSON).
/// Only transport failures are errors; the message never contains the body sent.
pub(crate) async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Result<(u16, Value), GatewayError> {
    let mut request = http
        .post(url)
        .timeout(Duration::from_secs(30))
        .body(body.to_string());
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.map_err(|e| {
        GatewayError::upstream_stream(format!(
            "could not reach the login service at {}: {}",
            host_of(url),
            e.without_url()
        ))
    })?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| {
        GatewayError::upstream_stream(format!(
            "the login service at {} broke off its answer: {}",
            host_of(url),
            e.without_url()
        ))
    })?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Scheme and host of `url`, for messages.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("{}://{h}", u.scheme())))
        .unwrap_or_else(|| "the configured URL".to_owned())
}

/// At most 200 characters of what a service said, for messages.
pub(crate) fn short(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
