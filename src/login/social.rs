//! Kiro's own sign-in with Google or GitHub (console-and-login notes C.4): the social device
//! flow on the Kiro auth service (`/oauth/device/authorization`, `/oauth/device/poll`), and the
//! fallback where the operator signs in through the Kiro portal in a browser and pastes the
//! `http://localhost:3128/oauth/callback?...` address the browser ends on (PKCE, exchanged at
//! `/oauth/token`).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kiro_layers::GatewayError;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::poll::PollAnswer;
use super::{post_json, DeviceStart, LoginTokens};

/// kiro-cli's client id, also sent as its user agent (console-and-login notes C.4.3).
const CLIENT_ID: &str = "Kiro-CLI";

/// The redirect the Kiro portal accepts for Google and GitHub (C.4.1: Cognito allows only
/// pre-registered loopback URIs; a gateway's own callback is refused).
pub const REDIRECT_URI: &str = "http://localhost:3128/oauth/callback";

/// A social identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Google.
    Google,
    /// GitHub.
    Github,
}

impl Provider {
    /// The `loginProvider` value.
    fn wire_name(self) -> &'static str {
        match self {
            Provider::Google => "Google",
            Provider::Github => "Github",
        }
    }

    /// `google` or `github`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::Github => "github",
        }
    }

    /// Parses `google` or `github` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "google" => Some(Provider::Google),
            "github" => Some(Provider::Github),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in_milliseconds: u64,
    #[serde(default)]
    interval_in_milliseconds: Option<u64>,
}

fn headers() -> [(&'static str, &'static str); 1] {
    [("user-agent", CLIENT_ID)]
}

/// Starts the social device flow with `provider`.
pub async fn start_device(
    http: &reqwest::Client,
    auth_base: &str,
    provider: Provider,
) -> Result<DeviceStart, GatewayError> {
    let body = json!({ "clientId": CLIENT_ID, "loginProvider": provider.wire_name() });
    let url = format!("{auth_base}/oauth/device/authorization");
    let (status, answer) = post_json(http, &url, &body, &headers()).await?;
    if status != 200 {
        return Err(GatewayError::invalid_request(format!(
            "The Kiro sign-in service refused to start ({status}): {}",
            super::short(&answer.to_string())
        )));
    }
    let answer: StartAnswer = serde_json::from_value(answer).map_err(|e| {
        GatewayError::upstream_stream(format!(
            "The Kiro sign-in service answered an unexpected body: {e}"
        ))
    })?;
    Ok(DeviceStart {
        verification_uri_complete: answer
            .verification_uri_complete
            .unwrap_or_else(|| answer.verification_uri.clone()),
        device_code: answer.device_code,
        user_code: answer.user_code,
        verification_uri: answer.verification_uri,
        expires_in: Duration::from_millis(answer.expires_in_milliseconds),
        interval: Duration::from_millis(answer.interval_in_milliseconds.unwrap_or(5000)),
    })
}

/// One poll of the social device flow.
pub async fn poll_device(
    http: &reqwest::Client,
    auth_base: &str,
    device_code: &str,
) -> PollAnswer<LoginTokens> {
    let body = json!({ "deviceCode": device_code, "clientId": CLIENT_ID });
    let url = format!("{auth_base}/oauth/device/poll");
    let (status, answer) = match post_json(http, &url, &body, &headers()).await {
        Ok(answered) => answered,
        Err(error) => return PollAnswer::Retry(error.message().to_owned()),
    };
    if status >= 500 {
        return PollAnswer::Retry(format!("the device poll answered HTTP {status}"));
    }
    let status_field = answer["status"]
        .as_str()
        .or(answer["error"].as_str())
        .unwrap_or_default();
    match status_field {
        "authorized" => match LoginTokens::from_answer(&answer) {
            Some(tokens) => PollAnswer::Granted(tokens),
            None => PollAnswer::Failed("the device poll said authorized without tokens".into()),
        },
        "authorization_pending" => PollAnswer::Pending,
        "slow_down" => PollAnswer::SlowDown,
        "expired_token" => PollAnswer::Expired,
        // Not documented for this service (C.4.3 lists pending, expired, invalid, authorized);
        // read the RFC 8628 name in case it sends it.
        "access_denied" => PollAnswer::Denied,
        other => PollAnswer::Failed(format!(
            "the Kiro sign-in service answered HTTP {status} `{}`",
            super::short(other)
        )),
    }
}

/// The secret half of a browser sign-in: kept by the gateway until the pasted address comes back.
#[derive(Clone, serde::Serialize, Deserialize)]
pub struct Pkce {
    /// `code_verifier`.
    verifier: String,
    /// `state`, echoed by the portal.
    pub state: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pkce(<redacted>)")
    }
}

fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

impl Pkce {
    /// A fresh verifier (43 characters, RFC 7636 minimum) and state.
    pub fn new() -> Self {
        Pkce {
            verifier: random_token(32),
            state: random_token(16),
        }
    }

    /// The S256 challenge.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }

    /// The portal address the operator opens (C.4.1, the unified portal).
    pub fn sign_in_url(&self, portal: &str) -> Result<String, GatewayError> {
        reqwest::Url::parse_with_params(
            portal,
            &[
                ("state", self.state.as_str()),
                ("code_challenge", &self.challenge()),
                ("code_challenge_method", "S256"),
                ("redirect_uri", REDIRECT_URI),
                ("redirect_from", "kirocli"),
            ],
        )
        .map(String::from)
        .map_err(|e| GatewayError::internal(format!("the sign-in portal URL is invalid: {e}")))
    }

    /// Exchanges the pasted callback address for tokens.
    pub async fn exchange(
        &self,
        http: &reqwest::Client,
        auth_base: &str,
        pasted: &str,
    ) -> Result<LoginTokens, GatewayError> {
        let callback = Callback::parse(pasted)?;
        // Constant time: the state is the only thing tying the paste to this flow.
        let state_matches: bool =
            subtle::ConstantTimeEq::ct_eq(callback.state.as_bytes(), self.state.as_bytes()).into();
        if !state_matches {
            return Err(GatewayError::invalid_request(
                "The pasted address belongs to another sign-in (its `state` differs): start again and paste the address of this one.",
            ));
        }
        // The redirect_uri must equal the one the portal sent the browser to, login_option
        // included (kiro-cli re-adds it the same way).
        let redirect_uri = format!("{REDIRECT_URI}?login_option={}", callback.login_option);
        let body = json!({
            "code": callback.code,
            "code_verifier": self.verifier,
            "redirect_uri": redirect_uri,
        });
        let url = format!("{auth_base}/oauth/token");
        let (status, answer) = post_json(http, &url, &body, &headers()).await?;
        if status != 200 {
            return Err(GatewayError::invalid_request(format!(
                "The Kiro sign-in service refused the code ({status}): {}. Codes work once and expire quickly: start again.",
                super::short(&answer.to_string())
            )));
        }
        let tokens = LoginTokens::from_answer(&answer).ok_or_else(|| {
            GatewayError::upstream_stream("The code exchange answered without tokens.")
        })?;
        if tokens.profile_arn.is_none() {
            // kiro-cli treats a missing profileArn here as an error too.
            return Err(GatewayError::upstream_stream(
                "The code exchange answered without a profileArn.",
            ));
        }
        Ok(tokens)
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// The parts of the pasted callback address.
#[derive(Debug, PartialEq, Eq)]
struct Callback {
    code: String,
    state: String,
    login_option: String,
}

impl Callback {
    fn parse(pasted: &str) -> Result<Self, GatewayError> {
        let pasted = pasted.trim();
        let url = reqwest::Url::parse(pasted).map_err(|_| {
            GatewayError::invalid_request(
                "Paste the whole address from the browser's address bar (it starts with http://localhost:3128/oauth/callback?).",
            )
        })?;
        let mut code = None;
        let mut state = None;
        let mut login_option = None;
        let mut error = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "code" => code = Some(value.into_owned()),
                "state" => state = Some(value.into_owned()),
                "login_option" => login_option = Some(value.into_owned()),
                "error" => error = Some(value.into_owned()),
                _ => {}
            }
        }
        if let Some(error) = error {
            return Err(GatewayError::invalid_request(format!(
                "The sign-in did not succeed: `{}`.",
                super::short(&error)
            )));
        }
        match (code, state) {
            (Some(code), Some(state)) if !code.is_empty() => Ok(Callback {
                code,
                state,
                login_option: login_option.unwrap_or_else(|| "google".to_owned()),
            }),
            _ => Err(GatewayError::invalid_request(
                "The pasted address has no `code` and `state`: paste the address the browser shows after signing in.",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_the_s256_of_the_verifier() {
        // Expected value computed independently (Python hashlib + urlsafe base64, no padding).
        let pkce = Pkce {
            verifier: "dBjftJeZ4CVP-mJ92K9uC3W-N3kqlCk4nfNvA7yHZKtA".to_owned(),
            state: "s".to_owned(),
        };
        assert_eq!(
            pkce.challenge(),
            "6giOh0lmc_69XWZPKI67ybv13LYtG2nhOvGxwT1N5Ns"
        );
        let fresh = Pkce::new();
        assert!(fresh.verifier.len() >= 43 && fresh.state != Pkce::new().state);
    }

    #[test]
    fn the_sign_in_url_carries_challenge_state_and_redirect() {
        let pkce = Pkce::new();
        let url = pkce.sign_in_url("https://app.kiro.dev/signin").unwrap();
        let parsed = reqwest::Url::parse(&url).unwrap();
        let pairs: std::collections::HashMap<_, _> = parsed.query_pairs().collect();
        assert_eq!(pairs["code_challenge"], pkce.challenge());
        assert_eq!(pairs["state"], pkce.state);
        assert_eq!(pairs["redirect_uri"], REDIRECT_URI);
        assert_eq!(pairs["code_challenge_method"], "S256");
        assert!(!url.contains(&pkce.verifier));
    }

    #[test]
    fn callbacks_parse_or_say_what_is_wrong() {
        let ok = Callback::parse(
            " http://localhost:3128/oauth/callback?login_option=github&code=abc&state=xyz ",
        )
        .unwrap();
        assert_eq!(
            ok,
            Callback {
                code: "abc".into(),
                state: "xyz".into(),
                login_option: "github".into()
            }
        );
        for bad in [
            "not a url",
            "http://localhost:3128/oauth/callback?state=xyz",
            "http://localhost:3128/oauth/callback?error=access_denied&state=x",
        ] {
            assert!(Callback::parse(bad).unwrap_err().is_client_error(), "{bad}");
        }
    }
}
