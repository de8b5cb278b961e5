//! AWS SSO OIDC refresh (IAM Identity Center, Builder ID, kiro-cli): `POST {oidc}/token` with the
//! camelCase JSON of the `CreateToken` API. No scope is sent.

use http::StatusCode;
use serde_json::json;

use super::exchange::{exchange, Context, Flow, RefreshFailure, Refreshed};

pub(crate) async fn refresh(
    http: &reqwest::Client,
    url: &str,
    refresh_token: &str,
    client_id: &str,
    client_secret: &str,
    ctx: &Context<'_>,
) -> Result<Refreshed, RefreshFailure> {
    let body = json!({
        "grantType": "refresh_token",
        "clientId": client_id,
        "clientSecret": client_secret,
        "refreshToken": refresh_token,
    });
    exchange(http, Flow::Oidc, url, None, &body, ctx, is_dead_token).await
}

/// `{"error":"invalid_grant",…}` means the refresh token is dead (expired session, revoked).
fn is_dead_token(status: StatusCode, body: &str) -> bool {
    if !status.is_client_error() {
        return false;
    }
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            value
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_owned)
        })
        .is_some_and(|error| error == "invalid_grant")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_grant_is_a_dead_token() {
        let body =
            r#"{"error":"invalid_grant","error_description":"Invalid refresh token provided"}"#;
        assert!(is_dead_token(StatusCode::BAD_REQUEST, body));
        let other =
            r#"{"error":"invalid_request","error_description":"Invalid request","reason":null}"#;
        assert!(!is_dead_token(StatusCode::BAD_REQUEST, other));
        assert!(!is_dead_token(StatusCode::BAD_REQUEST, "not json"));
    }
}
