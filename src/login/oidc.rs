//! AWS SSO OIDC device authorization (Builder ID and IAM Identity Center), console-and-login
//! notes C.2: `POST /client/register`, `POST /device_authorization`, then `POST /token` with
//! the device-code grant until the user has signed in. All bodies are camelCase JSON.

use std::time::Duration;

use kiro_layers::GatewayError;
use serde::Deserialize;
use serde_json::{json, Value};

use super::poll::PollAnswer;
use super::{post_json, DeviceStart, LoginTokens};

/// The start URL of AWS Builder ID.
pub const BUILDER_ID_START_URL: &str = "https://view.awsapps.com/start";

/// What kiro-cli registers with (console-and-login notes C.2, "What each client sends").
const CLIENT_NAME: &str = "Kiro CLI";
const SCOPES: [&str; 3] = [
    "codewhisperer:completions",
    "codewhisperer:analysis",
    "codewhisperer:conversations",
];
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A registered OIDC client: what the account's refreshes need later.
#[derive(Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Registration {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Unix seconds after which the secret (and so every refresh) stops working.
    pub client_secret_expires_at: Option<i64>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("client_secret_expires_at", &self.client_secret_expires_at)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterAnswer {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    client_secret_expires_at: Option<i64>,
}

/// `RegisterClient`: a fresh public client for one login (peers register per login).
pub async fn register(http: &reqwest::Client, base: &str) -> Result<Registration, GatewayError> {
    let body = json!({ "clientName": CLIENT_NAME, "clientType": "public", "scopes": SCOPES });
    let (status, answer) = post_json(http, &format!("{base}/client/register"), &body, &[]).await?;
    if status != 200 {
        return Err(refused("RegisterClient", status, &answer));
    }
    let answer: RegisterAnswer = serde_json::from_value(answer).map_err(|e| {
        GatewayError::upstream_stream(format!("RegisterClient answered an unexpected body: {e}"))
    })?;
    Ok(Registration {
        client_id: answer.client_id,
        client_secret: answer.client_secret,
        client_secret_expires_at: answer.client_secret_expires_at,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

/// `StartDeviceAuthorization` for `start_url`.
pub async fn start_device(
    http: &reqwest::Client,
    base: &str,
    client: &Registration,
    start_url: &str,
) -> Result<DeviceStart, GatewayError> {
    let body = json!({
        "clientId": client.client_id,
        "clientSecret": client.client_secret,
        "startUrl": start_url,
    });
    let (status, answer) =
        post_json(http, &format!("{base}/device_authorization"), &body, &[]).await?;
    if status != 200 {
        return Err(refused("StartDeviceAuthorization", status, &answer));
    }
    let answer: StartAnswer = serde_json::from_value(answer).map_err(|e| {
        GatewayError::upstream_stream(format!(
            "StartDeviceAuthorization answered an unexpected body: {e}"
        ))
    })?;
    Ok(DeviceStart {
        verification_uri_complete: answer
            .verification_uri_complete
            .unwrap_or_else(|| answer.verification_uri.clone()),
        device_code: answer.device_code,
        user_code: answer.user_code,
        verification_uri: answer.verification_uri,
        expires_in: Duration::from_secs(answer.expires_in),
        interval: Duration::from_secs(answer.interval.unwrap_or(5)),
    })
}

/// One `CreateToken` poll with the device code.
pub async fn poll_token(
    http: &reqwest::Client,
    base: &str,
    client: &Registration,
    device_code: &str,
) -> PollAnswer<LoginTokens> {
    let body = json!({
        "clientId": client.client_id,
        "clientSecret": client.client_secret,
        "deviceCode": device_code,
        "grantType": DEVICE_GRANT,
    });
    let (status, answer) = match post_json(http, &format!("{base}/token"), &body, &[]).await {
        Ok(answered) => answered,
        Err(error) => return PollAnswer::Retry(error.message().to_owned()),
    };
    if status == 200 {
        return match LoginTokens::from_answer(&answer) {
            Some(tokens) => PollAnswer::Granted(tokens),
            None => PollAnswer::Failed("CreateToken answered without tokens".to_owned()),
        };
    }
    if status >= 500 {
        return PollAnswer::Retry(format!("CreateToken answered HTTP {status}"));
    }
    // The service names the outcome in `error` (HTTP 400), the RFC 8628 way.
    match answer["error"].as_str().unwrap_or_default() {
        "authorization_pending" => PollAnswer::Pending,
        "slow_down" => PollAnswer::SlowDown,
        "expired_token" => PollAnswer::Expired,
        "access_denied" => PollAnswer::Denied,
        other => PollAnswer::Failed(describe_error("CreateToken", status, other, &answer)),
    }
}

fn refused(operation: &str, status: u16, answer: &Value) -> GatewayError {
    let code = answer["error"].as_str().unwrap_or_default();
    let message = describe_error(operation, status, code, answer);
    if status >= 500 {
        GatewayError::upstream_stream(message)
    } else {
        GatewayError::invalid_request(message)
    }
}

fn describe_error(operation: &str, status: u16, code: &str, answer: &Value) -> String {
    let description = answer["error_description"]
        .as_str()
        .or(answer["message"].as_str())
        .unwrap_or_default();
    let mut text = format!("{operation} answered HTTP {status}");
    if !code.is_empty() {
        text.push_str(&format!(" `{code}`"));
    }
    if !description.is_empty() {
        text.push_str(&format!(": {}", super::short(description)));
    }
    text
}
