//! What callers of the sign-in API send ([`LoginRequest`]) and see ([`FlowView`], [`FlowStatus`]).

use chrono::{DateTime, Utc};
use kiro_layers::kiro::auth::is_region_name;
use kiro_layers::store::AccountRow;
use kiro_layers::GatewayError;
use serde::{Deserialize, Serialize};

use super::profiles::Profile;
use super::social::Provider;

/// How to sign in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum LoginMethod {
    /// AWS Builder ID device code.
    BuilderId,
    /// IAM Identity Center device code.
    IdentityCenter {
        /// The organisation's start URL.
        start_url: String,
        /// The Identity Center region.
        region: String,
    },
    /// Kiro's Google / GitHub device flow.
    Social {
        /// Google or GitHub.
        provider: Provider,
    },
    /// Google / GitHub in a browser, then paste the address it ends on.
    SocialRedirect,
}

impl LoginMethod {
    /// The label stored with the account.
    pub(super) fn label(&self, login_option: Option<&str>) -> String {
        match self {
            LoginMethod::BuilderId => "builder-id".to_owned(),
            LoginMethod::IdentityCenter { .. } => "identity-center".to_owned(),
            LoginMethod::Social { provider } => format!("social-{}", provider.as_str()),
            LoginMethod::SocialRedirect => format!("social-{}", login_option.unwrap_or("browser")),
        }
    }
}

/// The body of `POST /admin/accounts/login/start` (and what the CLI builds).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// `builder-id`, `identity-center`, `social` or `social-redirect`.
    pub method: String,
    /// Identity Center start URL.
    #[serde(default)]
    pub start_url: Option<String>,
    /// Identity Center region.
    #[serde(default)]
    pub region: Option<String>,
    /// `google` or `github` (device flow).
    #[serde(default)]
    pub provider: Option<String>,
    /// Account label.
    #[serde(default)]
    pub name: Option<String>,
    /// Leases at once.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Identity Center: take this profile without asking when the list has it.
    #[serde(default)]
    pub profile_arn: Option<String>,
}

impl LoginRequest {
    /// Builder ID with the defaults.
    pub fn builder_id() -> Self {
        LoginRequest {
            method: "builder-id".to_owned(),
            ..Default::default()
        }
    }

    pub(super) fn method(&self) -> Result<LoginMethod, GatewayError> {
        let invalid = GatewayError::invalid_request;
        match self.method.as_str() {
            "builder-id" => Ok(LoginMethod::BuilderId),
            "identity-center" => {
                let start_url = self.start_url.as_deref().map(str::trim).unwrap_or_default();
                let parsed = reqwest::Url::parse(start_url).ok();
                if !parsed.is_some_and(|u| matches!(u.scheme(), "https" | "http")) {
                    return Err(invalid(
                        "`start_url` must be your IAM Identity Center start URL, such as https://d-1234567890.awsapps.com/start.",
                    ));
                }
                let region = self.region.as_deref().unwrap_or_default();
                if !is_region_name(region) {
                    return Err(invalid(
                        "`region` must be the IAM Identity Center region, such as us-east-1.",
                    ));
                }
                Ok(LoginMethod::IdentityCenter {
                    start_url: start_url.to_owned(),
                    region: region.to_owned(),
                })
            }
            "social" => {
                let provider = self
                    .provider
                    .as_deref()
                    .and_then(Provider::parse)
                    .ok_or_else(|| invalid("`provider` must be `google` or `github`."))?;
                Ok(LoginMethod::Social { provider })
            }
            "social-redirect" => Ok(LoginMethod::SocialRedirect),
            _ => Err(invalid(
                "`method` must be `builder-id`, `identity-center`, `social` or `social-redirect`.",
            )),
        }
    }
}

/// Where a flow is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    /// Waiting for the user to sign in.
    Pending,
    /// Waiting, and the service asked to poll less often.
    SlowDown,
    /// Several Identity Center profiles: call [`Logins::choose_profile`].
    NeedsProfileChoice,
    /// The paste fallback: waiting for the address.
    WaitingForRedirect,
    /// Signed in; verifying and storing.
    Finishing,
    /// Stored: `account` holds the row.
    Succeeded,
    /// The code expired before the user finished.
    Expired,
    /// The user refused.
    Denied,
    /// Something else went wrong: `error` says what.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl FlowStatus {
    /// The status as the API spells it.
    pub fn label(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Whether the flow has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            FlowStatus::Succeeded
                | FlowStatus::Expired
                | FlowStatus::Denied
                | FlowStatus::Failed
                | FlowStatus::Cancelled
        )
    }
}

/// What a caller sees of a flow. Holds no secret (no device code, no token). Stored as JSON
/// with the flow (the account as its id only: see `stored.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowView {
    /// Flow id (random; the handle of every later call).
    pub id: String,
    /// How it signs in.
    #[serde(flatten)]
    pub method: LoginMethod,
    /// Where it is.
    pub status: FlowStatus,
    /// Bumped on every change (for [`Logins::wait`]).
    pub version: u64,
    /// The code to enter on the verification page (device flows).
    pub user_code: Option<String>,
    /// The verification page.
    pub verification_uri: Option<String>,
    /// The verification page with the code filled in.
    pub verification_uri_complete: Option<String>,
    /// The paste fallback: the page to sign in on.
    pub sign_in_url: Option<String>,
    /// When the code (or the wait for the paste) expires.
    pub expires_at: DateTime<Utc>,
    /// Seconds between polls now.
    pub interval_seconds: Option<u64>,
    /// The profiles to choose from (`needs_profile_choice`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<Profile>,
    /// The stored account (`succeeded`).
    #[serde(skip_deserializing)]
    pub account: Option<AccountRow>,
    /// What went wrong (`failed`, `expired`, `denied`).
    pub error: Option<String>,
}
