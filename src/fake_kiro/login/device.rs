//! The device flows of the fake: client registration, the OIDC and the social device
//! authorization, their polls, and refreshes of the tokens they issue.

use super::*;
pub(super) fn register(state: &State, body: &Value) -> Response<FakeBody> {
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

pub(super) fn start_oidc_device(state: &State, body: &Value, base: &str) -> Response<FakeBody> {
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

pub(super) fn start_social_device(state: &State, body: &Value, base: &str) -> Response<FakeBody> {
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

pub(super) fn issue_grant(
    state: &State,
    client_id: Option<String>,
    profiles: usize,
) -> (String, String) {
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

pub(super) fn social_poll(state: &State, body: &Value) -> Response<FakeBody> {
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
