//! Kiro credentials: where they live ([`CredentialStore`]), how they are refreshed (Kiro Desktop
//! social login or AWS SSO OIDC) and the [`RefreshingCredential`] that hands out a valid
//! [`Credential`](crate::traits::Credential) with one refresh at a time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiro_layers::GatewayError> {
//! use std::sync::Arc;
//! use kiro_layers::kiro::auth::{Endpoints, JsonFileStore, RefreshingCredential};
//!
//! let store = Arc::new(JsonFileStore::new("/home/me/.aws/sso/cache/kiro-auth-token.json"));
//! let credential = RefreshingCredential::new(
//!     "main".into(), store, Endpoints::default(), "us-east-1".into(),
//!     None, None, reqwest::Client::new(), "0".repeat(64),
//! );
//! let ready = credential.current().await?; // refreshes first when about to expire
//! assert!(ready.api_base.starts_with("https://runtime."));
//! # Ok(()) }
//! ```

mod desktop;
mod exchange;
mod job;
mod json_file;
mod oidc;
mod refresher;

use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::error::GatewayError;

pub use json_file::JsonFileStore;
pub use refresher::RefreshingCredential;

/// Which refresh flow a credential uses (§1.2 of the protocol notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// Kiro IDE social login: `POST {desktop}/refreshToken`.
    KiroDesktop,
    /// IAM Identity Center / Builder ID / kiro-cli: `POST {oidc}/token` with a client id/secret.
    AwsSsoOidc,
}

/// Everything a store knows about one Kiro login. Holds secrets; its `Debug` redacts them.
#[derive(Clone, Default, PartialEq)]
pub struct TokenSet {
    /// Bearer token for the Kiro API, when one was stored or obtained.
    pub access_token: Option<String>,
    /// Long-lived token used to obtain access tokens.
    pub refresh_token: String,
    /// When `access_token` stops working; `None` means unknown (refresh on first use).
    pub expires_at: Option<DateTime<Utc>>,
    /// `profileArn` as stored with the login.
    pub profile_arn: Option<String>,
    /// OIDC client id (device registration); with `client_secret` it selects the OIDC flow.
    pub client_id: Option<String>,
    /// OIDC client secret.
    pub client_secret: Option<String>,
    /// Region of the login service (the refresh URL), e.g. the IAM Identity Center region.
    pub sso_region: Option<String>,
    /// API region the store itself knows, if any (beaten only by an explicit override).
    pub api_region: Option<String>,
}

impl TokenSet {
    /// The refresh flow this login needs: a client id and secret mean AWS SSO OIDC.
    pub fn auth_kind(&self) -> AuthKind {
        match (&self.client_id, &self.client_secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                AuthKind::AwsSsoOidc
            }
            _ => AuthKind::KiroDesktop,
        }
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn redacted(secret: &Option<String>) -> &'static str {
            if secret.is_some() {
                "<redacted>"
            } else {
                "<none>"
            }
        }
        f.debug_struct("TokenSet")
            .field("access_token", &redacted(&self.access_token))
            .field("refresh_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("profile_arn", &self.profile_arn)
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("sso_region", &self.sso_region)
            .field("api_region", &self.api_region)
            .finish()
    }
}

/// Where a credential lives, and where refreshed tokens are written back.
pub trait CredentialStore: Send + Sync + 'static {
    /// Names the store for logs and error messages, e.g. `JSON file /path` (never a secret).
    fn describe(&self) -> String;
    /// Reads the current tokens (called at start and again before each refresh, because another
    /// program such as kiro-cli may have rotated them).
    fn load(&self) -> BoxFuture<'_, Result<TokenSet, GatewayError>>;
    /// Persists refreshed tokens, keeping whatever else the store holds.
    fn save(&self, tokens: &TokenSet) -> BoxFuture<'_, Result<(), GatewayError>>;
}

/// A credential that lives only in memory (`REFRESH_TOKEN` from the environment): rotated tokens
/// are kept for this process and lost on restart.
pub struct MemoryStore {
    tokens: Mutex<TokenSet>,
}

impl MemoryStore {
    /// Holds `tokens` in memory.
    pub fn new(tokens: TokenSet) -> Self {
        MemoryStore {
            tokens: Mutex::new(tokens),
        }
    }
}

impl CredentialStore for MemoryStore {
    fn describe(&self) -> String {
        "REFRESH_TOKEN from the environment".to_string()
    }

    fn load(&self) -> BoxFuture<'_, Result<TokenSet, GatewayError>> {
        let tokens = match self.tokens.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        Box::pin(async move { Ok(tokens) })
    }

    fn save(&self, tokens: &TokenSet) -> BoxFuture<'_, Result<(), GatewayError>> {
        match self.tokens.lock() {
            Ok(mut guard) => *guard = tokens.clone(),
            Err(poisoned) => *poisoned.into_inner() = tokens.clone(),
        }
        Box::pin(async { Ok(()) })
    }
}

/// URL templates of the Kiro services; `{region}` is replaced by a region name. The defaults are
/// the real hosts; tests and the fake upstream point them elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Kiro Desktop auth service, e.g. `https://prod.{region}.auth.desktop.kiro.dev`.
    pub desktop_auth_url: String,
    /// AWS SSO OIDC service, e.g. `https://oidc.{region}.amazonaws.com`.
    pub oidc_url: String,
    /// Kiro API, e.g. `https://runtime.{region}.kiro.dev`.
    pub api_url: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            desktop_auth_url: "https://prod.{region}.auth.desktop.kiro.dev".to_string(),
            oidc_url: "https://oidc.{region}.amazonaws.com".to_string(),
            api_url: "https://runtime.{region}.kiro.dev".to_string(),
        }
    }
}

impl Endpoints {
    /// Every template pointed at one base URL (no `{region}`): handy for a fake upstream.
    pub fn all_at(base: &str) -> Self {
        let base = base.trim_end_matches('/').to_string();
        Endpoints {
            desktop_auth_url: base.clone(),
            oidc_url: base.clone(),
            api_url: base,
        }
    }

    /// `POST` target of the Kiro Desktop refresh.
    pub fn desktop_refresh_url(&self, region: &str) -> String {
        format!("{}/refreshToken", render(&self.desktop_auth_url, region))
    }

    /// `POST` target of the AWS SSO OIDC `CreateToken` refresh.
    pub fn oidc_token_url(&self, region: &str) -> String {
        format!("{}/token", render(&self.oidc_url, region))
    }

    /// Base URL of the Kiro API in `region` (no trailing slash).
    pub fn api_base(&self, region: &str) -> String {
        render(&self.api_url, region)
    }
}

fn render(template: &str, region: &str) -> String {
    template
        .replace("{region}", region)
        .trim_end_matches('/')
        .to_string()
}

/// True for names shaped like an AWS region (`us-east-1`, `eu-central-1`, `us-gov-west-1`).
/// Regions end up in host names, so anything else is refused.
pub fn is_region_name(candidate: &str) -> bool {
    let mut parts = candidate.split('-').peekable();
    let mut count = 0;
    while let Some(part) = parts.next() {
        count += 1;
        let is_last = parts.peek().is_none();
        let valid = if is_last {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())
        } else {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase())
        };
        if !valid {
            return false;
        }
    }
    count >= 3
}

/// The region inside a profile ARN (`arn:aws:codewhisperer:<region>:<account>:profile/<id>`),
/// when it looks like a region (`^[a-z]+-[a-z]+-\d+$`).
pub fn region_from_profile_arn(arn: &str) -> Option<&str> {
    let region = arn.split(':').nth(3)?;
    let parts: Vec<&str> = region.split('-').collect();
    let shaped = parts.len() == 3
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1].bytes().all(|b| b.is_ascii_lowercase())
        && parts[2].bytes().all(|b| b.is_ascii_digit())
        && parts.iter().all(|p| !p.is_empty());
    shaped.then_some(region)
}

/// Parses the timestamps found in credential stores: RFC 3339 with any number of fraction digits
/// (kiro-cli writes nanoseconds) or a naive `YYYY-MM-DDTHH:MM:SS[.f]` taken as UTC.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[test]
    fn client_id_and_secret_select_oidc() {
        let mut tokens = TokenSet {
            refresh_token: "r".into(),
            ..TokenSet::default()
        };
        assert_eq!(tokens.auth_kind(), AuthKind::KiroDesktop);
        tokens.client_id = Some("id".into());
        assert_eq!(tokens.auth_kind(), AuthKind::KiroDesktop);
        tokens.client_secret = Some("secret".into());
        assert_eq!(tokens.auth_kind(), AuthKind::AwsSsoOidc);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let tokens = TokenSet {
            access_token: Some("ACCESS-SECRET".into()),
            refresh_token: "REFRESH-SECRET".into(),
            client_secret: Some("CLIENT-SECRET".into()),
            client_id: Some("client-id".into()),
            ..TokenSet::default()
        };
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("client-id"));
    }

    #[test]
    fn endpoints_render_regions() {
        let endpoints = Endpoints::default();
        assert_eq!(
            endpoints.desktop_refresh_url("us-east-1"),
            "https://prod.us-east-1.auth.desktop.kiro.dev/refreshToken"
        );
        assert_eq!(
            endpoints.oidc_token_url("eu-west-1"),
            "https://oidc.eu-west-1.amazonaws.com/token"
        );
        assert_eq!(
            endpoints.api_base("eu-central-1"),
            "https://runtime.eu-central-1.kiro.dev"
        );
        let local = Endpoints::all_at("http://127.0.0.1:9/");
        assert_eq!(
            local.oidc_token_url("us-east-1"),
            "http://127.0.0.1:9/token"
        );
    }

    #[test]
    fn region_names_are_checked() {
        assert!(is_region_name("us-east-1"));
        assert!(is_region_name("us-gov-west-1"));
        assert!(!is_region_name("us-east"));
        assert!(!is_region_name("evil.com/x-y-1"));
        assert!(!is_region_name(""));
    }

    #[test]
    fn profile_arn_region() {
        assert_eq!(
            region_from_profile_arn("arn:aws:codewhisperer:eu-central-1:123456789012:profile/AB"),
            Some("eu-central-1")
        );
        assert_eq!(region_from_profile_arn("arn:aws:codewhisperer:..."), None);
        assert_eq!(region_from_profile_arn("not an arn"), None);
    }

    #[test]
    fn timestamps_with_nanoseconds_parse() {
        let parsed = parse_timestamp("2026-05-24T09:04:22.123456789Z").unwrap();
        assert_eq!(parsed.nanosecond(), 123_456_789);
        assert!(parse_timestamp("2026-05-24T09:04:22Z").is_some());
        assert!(parse_timestamp("2026-05-24T09:04:22.5+02:00").is_some());
        assert!(parse_timestamp("2026-05-24T09:04:22.123").is_some());
        assert!(parse_timestamp("yesterday").is_none());
    }
}
