//! What a person sees in a browser: the verification page (`/device`, Allow / Deny) and the
//! Kiro portal with PKCE (`/signin`, `/signin/continue`), and the code exchange (`/oauth/token`).

use super::device::issue_grant;
use super::*;
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn device_page(
    query: &HashMap<String, String>,
    message: Option<&str>,
) -> Response<FakeBody> {
    let code = escape(
        query
            .get("user_code")
            .map(String::as_str)
            .unwrap_or_default(),
    );
    let message = message
        .map(|m| format!("<p><strong>{}</strong></p>", escape(m)))
        .unwrap_or_default();
    html_response(format!(
        "<!doctype html><html><head><title>Fake Kiro sign-in</title></head><body>\
         <h1>Fake Kiro: authorize a device</h1>{message}\
         <form method=\"post\" action=\"/device\">\
         <label>Code <input name=\"user_code\" value=\"{code}\"></label> \
         <button name=\"decision\" value=\"allow\">Allow</button> \
         <button name=\"decision\" value=\"deny\">Deny</button></form></body></html>"
    ))
}

pub(super) fn decide_from_page(
    state: &State,
    form: &HashMap<String, String>,
) -> Response<FakeBody> {
    let code = form.get("user_code").cloned().unwrap_or_default();
    let approve = form.get("decision").map(String::as_str) == Some("allow");
    let message = if state.login().decide(&code, approve) {
        if approve {
            "Allowed: you can close this page."
        } else {
            "Denied."
        }
    } else {
        "Unknown or used code."
    };
    device_page(&HashMap::new(), Some(message))
}

pub(super) fn portal_page(query: &str) -> Response<FakeBody> {
    let pairs = query_pairs(query);
    if let Err(refusal) = check_portal_query(&pairs) {
        return refused(refusal);
    }
    let query = escape(query);
    html_response(format!(
        "<!doctype html><html><head><title>Fake Kiro portal</title></head><body>\
         <h1>Fake Kiro: sign in</h1>\
         <p><a href=\"/signin/continue?provider=google&amp;{query}\">Continue with Google</a></p>\
         <p><a href=\"/signin/continue?provider=github&amp;{query}\">Continue with GitHub</a></p>\
         </body></html>"
    ))
}

fn check_portal_query(pairs: &HashMap<String, String>) -> Result<(), Refusal> {
    if pairs.get("code_challenge_method").map(String::as_str) != Some("S256")
        || pairs.get("code_challenge").is_none_or(|c| c.len() < 43)
        || pairs.get("state").is_none_or(String::is_empty)
    {
        return Err(Refusal(
            400,
            json!({ "message": "code_challenge (S256) and state are required" }),
        ));
    }
    let redirect = pairs
        .get("redirect_uri")
        .and_then(|r| reqwest::Url::parse(r).ok());
    let allowed = redirect.is_some_and(|r| {
        r.scheme() == "http"
            && r.host_str() == Some("localhost")
            && r.port()
                .is_some_and(|p| ALLOWED_REDIRECT_PORTS.contains(&p))
    });
    if !allowed {
        return Err(Refusal(
            400,
            json!({ "message": "Invalid redirect URI. Must be localhost or a subdomain of app.kiro.dev" }),
        ));
    }
    Ok(())
}

/// What the portal does after the user picked a provider: a code, and the redirect.
pub(crate) fn issue_code(
    state: &State,
    pairs: &HashMap<String, String>,
) -> Result<String, Refusal> {
    check_portal_query(pairs)?;
    let provider = match pairs.get("provider").map(String::as_str) {
        Some(p @ ("google" | "github")) => p.to_owned(),
        _ => {
            return Err(Refusal(
                400,
                json!({ "message": "provider must be google or github" }),
            ))
        }
    };
    let code = random(24);
    let redirect = pairs["redirect_uri"].clone();
    state.login().codes.insert(
        code.clone(),
        PendingCode {
            challenge: pairs["code_challenge"].clone(),
            redirect_uri: redirect.clone(),
            login_option: provider.clone(),
            used: false,
        },
    );
    let mut url = reqwest::Url::parse(&redirect).map_err(|_| Refusal(400, json!({})))?;
    url.query_pairs_mut()
        .append_pair("login_option", &provider)
        .append_pair("code", &code)
        .append_pair("state", &pairs["state"]);
    Ok(url.to_string())
}

pub(super) fn portal_continue(
    state: &State,
    pairs: &HashMap<String, String>,
) -> Response<FakeBody> {
    match issue_code(state, pairs) {
        Ok(location) => {
            let mut response = Response::new(body::full(Bytes::new()));
            *response.status_mut() = StatusCode::FOUND;
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(refusal) => refused(refusal),
    }
}

pub(super) fn exchange_code(state: &State, body: &Value) -> Response<FakeBody> {
    let (Some(code), Some(verifier), Some(redirect_uri)) = (
        body["code"].as_str(),
        body["code_verifier"].as_str(),
        body["redirect_uri"].as_str(),
    ) else {
        return json_response(
            400,
            json!({ "message": "code, code_verifier and redirect_uri are required" }),
        );
    };
    let mut login = state.login();
    let Some(pending) = login.codes.get_mut(code) else {
        return json_response(400, json!({ "message": "Invalid code" }));
    };
    if pending.used {
        return json_response(400, json!({ "message": "Code already used" }));
    }
    pending.used = true;
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if challenge != pending.challenge {
        return json_response(400, json!({ "message": "Invalid code_verifier" }));
    }
    let expected = format!(
        "{}?login_option={}",
        pending.redirect_uri, pending.login_option
    );
    if redirect_uri != expected {
        return json_response(400, json!({ "message": "redirect_uri mismatch" }));
    }
    drop(login);
    let (access, refresh) = issue_grant(state, None, 1);
    json_response(
        200,
        json!({
            "accessToken": access,
            "refreshToken": refresh,
            "expiresIn": state.config.access_token_ttl.as_secs(),
            "profileArn": state.config.profile_arn,
        }),
    )
}
