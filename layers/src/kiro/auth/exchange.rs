//! The HTTP exchange both refresh flows share: POST a JSON body, read the token answer, and turn
//! failures into gateway errors that name the account but never a token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::error::GatewayError;

/// Client timeout of a refresh call (kiro-gateway uses 30 s).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
/// Access tokens are treated as expiring this much earlier than the server says.
const EXPIRY_SAFETY_MARGIN_SECS: i64 = 60;
/// Lifetime assumed when the answer has no `expiresIn`.
const DEFAULT_EXPIRES_IN_SECS: i64 = 3600;
/// How much of an error body is kept in a message.
const ERROR_BODY_EXCERPT: usize = 300;

/// What a successful refresh yields.
#[derive(Clone)]
pub(crate) struct Refreshed {
    pub access_token: String,
    /// A rotated refresh token, when the server sent one.
    pub refresh_token: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub profile_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
    profile_arn: Option<String>,
}

/// A failed refresh, classified so the caller can react (reload and retry on a dead token).
pub(crate) struct RefreshFailure {
    pub error: GatewayError,
    pub invalid_grant: bool,
}

/// Which flow is talking, for messages.
#[derive(Clone, Copy)]
pub(crate) enum Flow {
    Desktop,
    Oidc,
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Flow::Desktop => "Kiro Desktop token refresh",
            Flow::Oidc => "AWS SSO OIDC token refresh",
        }
    }
}

/// Who is refreshing: used only to build messages.
pub(crate) struct Context<'a> {
    pub account_id: &'a str,
    pub store: String,
    /// Secrets that must never appear in an error message (the refresh token, client secret).
    pub secrets: &'a [&'a str],
}

/// POSTs `body` to `url` and reads a token answer.
pub(crate) async fn exchange(
    http: &reqwest::Client,
    flow: Flow,
    url: &str,
    user_agent: Option<&str>,
    body: &Value,
    ctx: &Context<'_>,
    is_dead_token: impl Fn(StatusCode, &str) -> bool,
) -> Result<Refreshed, RefreshFailure> {
    let mut request = http
        .post(url)
        .timeout(REFRESH_TIMEOUT)
        .header(http::header::CONTENT_TYPE, "application/json")
        .json(body);
    if let Some(agent) = user_agent {
        request = request.header(http::header::USER_AGENT, agent);
    }
    let response = request
        .send()
        .await
        .map_err(|err| transport_failure(flow, url, ctx, &err))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|err| transport_failure(flow, url, ctx, &err))?;

    if !status.is_success() {
        let excerpt = scrub(&text, ctx.secrets);
        if is_dead_token(status, &text) {
            let message = format!(
                "Kiro account `{}`: the refresh token was rejected ({} answered HTTP {}: {}). \
                 Log in again (`kiro-cli login` or the Kiro IDE) or update the refresh token in {}.",
                ctx.account_id,
                flow.name(),
                status.as_u16(),
                excerpt,
                ctx.store
            );
            return Err(RefreshFailure {
                error: GatewayError::upstream(StatusCode::UNAUTHORIZED, message)
                    .with_upstream_reason("invalid_grant"),
                invalid_grant: true,
            });
        }
        let message = format!(
            "Kiro account `{}`: {} failed with HTTP {}: {}",
            ctx.account_id,
            flow.name(),
            status.as_u16(),
            excerpt
        );
        return Err(RefreshFailure {
            error: GatewayError::upstream(status, message),
            invalid_grant: false,
        });
    }

    let answer: TokenAnswer = serde_json::from_str(&text).map_err(|err| RefreshFailure {
        error: GatewayError::upstream(
            StatusCode::BAD_GATEWAY,
            format!(
                "Kiro account `{}`: {} answered 200 with a body that is not token JSON ({err}).",
                ctx.account_id,
                flow.name()
            ),
        ),
        invalid_grant: false,
    })?;
    let access_token = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| RefreshFailure {
            error: GatewayError::upstream(
                StatusCode::BAD_GATEWAY,
                format!(
                    "Kiro account `{}`: {} answered 200 without an accessToken.",
                    ctx.account_id,
                    flow.name()
                ),
            ),
            invalid_grant: false,
        })?;
    let expires_in = answer.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_SECS);
    let now = Utc::now();
    let expires_at = now
        .checked_add_signed(chrono::TimeDelta::seconds(
            expires_in.saturating_sub(EXPIRY_SAFETY_MARGIN_SECS),
        ))
        .unwrap_or(now);
    Ok(Refreshed {
        access_token,
        refresh_token: answer.refresh_token.filter(|token| !token.is_empty()),
        expires_at,
        profile_arn: answer.profile_arn.filter(|arn| !arn.is_empty()),
    })
}

fn transport_failure(
    flow: Flow,
    url: &str,
    ctx: &Context<'_>,
    err: &reqwest::Error,
) -> RefreshFailure {
    // reqwest's message names the URL (no secrets there) and the cause.
    let detail = scrub(&err.to_string(), ctx.secrets);
    let error = if err.is_timeout() {
        GatewayError::timeout(format!(
            "Kiro account `{}`: {} at {url} timed out: {detail}",
            ctx.account_id,
            flow.name()
        ))
    } else {
        GatewayError::upstream(
            StatusCode::BAD_GATEWAY,
            format!(
                "Kiro account `{}`: could not reach the {} endpoint {url}: {detail}",
                ctx.account_id,
                flow.name()
            ),
        )
    };
    RefreshFailure {
        error,
        invalid_grant: false,
    }
}

/// Shortens an upstream body for a message and blanks any secret that might be echoed in it.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut cleaned = text.trim().to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        cleaned = cleaned.replace(secret, "<redacted>");
    }
    if cleaned.len() > ERROR_BODY_EXCERPT {
        let mut end = ERROR_BODY_EXCERPT;
        while !cleaned.is_char_boundary(end) {
            end -= 1;
        }
        cleaned.truncate(end);
        cleaned.push('…');
    }
    if cleaned.is_empty() {
        cleaned.push_str("(empty body)");
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_secrets_and_truncates() {
        let body = format!("{{\"token\":\"SECRET-1234\"}}{}", "x".repeat(500));
        let cleaned = scrub(&body, &["SECRET-1234"]);
        assert!(!cleaned.contains("SECRET-1234"));
        assert!(cleaned.len() <= ERROR_BODY_EXCERPT + '…'.len_utf8());
        assert_eq!(scrub("  ", &[]), "(empty body)");
    }
}
