//! Kiro Desktop (social login) refresh: `POST {desktop}/refreshToken` with
//! `{"refreshToken": …}` and the `KiroIDE-0.7.45-{fingerprint}` user agent.

use http::StatusCode;
use serde_json::json;

use super::exchange::{exchange, Context, Flow, RefreshFailure, Refreshed};

/// Kiro IDE version the user agent claims (the server parses it; keep a realistic one).
const KIRO_IDE_VERSION: &str = "0.7.45";

pub(crate) async fn refresh(
    http: &reqwest::Client,
    url: &str,
    refresh_token: &str,
    fingerprint: &str,
    ctx: &Context<'_>,
) -> Result<Refreshed, RefreshFailure> {
    let user_agent = format!("KiroIDE-{KIRO_IDE_VERSION}-{fingerprint}");
    let body = json!({ "refreshToken": refresh_token });
    exchange(
        http,
        Flow::Desktop,
        url,
        Some(&user_agent),
        &body,
        ctx,
        is_dead_token,
    )
    .await
}

/// The desktop service answers 401 (or 400 "Invalid refresh token provided" / "Bad credentials")
/// when the refresh token is no good; only a new login helps then.
fn is_dead_token(status: StatusCode, body: &str) -> bool {
    let lowered = body.to_ascii_lowercase();
    let says_invalid = lowered.contains("invalid refresh token")
        || lowered.contains("bad credentials")
        || lowered.contains("invalid_grant");
    status == StatusCode::UNAUTHORIZED || (status == StatusCode::BAD_REQUEST && says_invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_token_detection() {
        assert!(is_dead_token(
            StatusCode::BAD_REQUEST,
            r#"{"message":"Invalid refresh token provided"}"#
        ));
        assert!(is_dead_token(StatusCode::UNAUTHORIZED, ""));
        assert!(!is_dead_token(
            StatusCode::BAD_REQUEST,
            r#"{"message":"oops"}"#
        ));
        assert!(!is_dead_token(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Invalid refresh token"
        ));
    }
}
