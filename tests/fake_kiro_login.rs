//! The fake's sign-in endpoints are as strict as the real services: checked directly over HTTP,
//! without the gateway, so a lax client cannot pass the end-to-end tests.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kiro_gateway::fake_kiro::{start, FakeKiroConfig, FakeKiroHandle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

async fn post(fake: &FakeKiroHandle, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", fake.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn register(fake: &FakeKiroHandle) -> (String, String) {
    let (status, client) = post(
        fake,
        "/client/register",
        json!({ "clientName": "t", "clientType": "public", "scopes": ["codewhisperer:completions"] }),
    )
    .await;
    assert_eq!(status, 200, "{client}");
    (
        client["clientId"].as_str().unwrap().to_owned(),
        client["clientSecret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn registration_and_device_start_refuse_bad_clients() {
    let fake = start(FakeKiroConfig::default()).await.unwrap();
    let (status, answer) = post(&fake, "/client/register", json!({ "clientName": "t", "clientType": "confidential", "scopes": ["codewhisperer:completions"] })).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, answer) = post(
        &fake,
        "/client/register",
        json!({ "clientName": "t", "clientType": "public", "scopes": ["openid"] }),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (id, _) = register(&fake).await;
    let (status, answer) = post(&fake, "/device_authorization", json!({ "clientId": id, "clientSecret": "wrong", "startUrl": "https://view.awsapps.com/start" })).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_client"))
    );
}

#[tokio::test]
async fn polling_faster_than_the_interval_is_answered_slow_down() {
    let fake = start(FakeKiroConfig::default()).await.unwrap();
    let (id, secret) = register(&fake).await;
    let (_, device) = post(&fake, "/device_authorization", json!({ "clientId": id, "clientSecret": secret, "startUrl": "https://view.awsapps.com/start" })).await;
    let poll = json!({
        "clientId": id, "clientSecret": secret, "deviceCode": device["deviceCode"],
        "grantType": "urn:ietf:params:oauth:grant-type:device_code",
    });
    let (status, first) = post(&fake, "/token", poll.clone()).await;
    assert_eq!(
        (status, first["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    // At once again: too fast.
    let (_, second) = post(&fake, "/token", poll.clone()).await;
    assert_eq!(second["error"], "slow_down");
    // Another client's poll of this code is not accepted.
    let (other_id, other_secret) = register(&fake).await;
    let mut foreign = poll.clone();
    foreign["clientId"] = json!(other_id);
    foreign["clientSecret"] = json!(other_secret);
    let (_, answer) = post(&fake, "/token", foreign).await;
    assert_eq!(answer["error"], "invalid_grant");
}

#[tokio::test]
async fn the_portal_and_code_exchange_check_pkce_redirect_and_reuse() {
    let fake = start(FakeKiroConfig::default()).await.unwrap();
    let verifier = "v".repeat(43);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let sign_in = |redirect: &str| {
        reqwest::Url::parse_with_params(
            &format!("{}/signin", fake.base_url()),
            &[
                ("state", "st"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("redirect_uri", redirect),
            ],
        )
        .unwrap()
        .to_string()
    };
    // A gateway's own public callback is not on the allow-list.
    assert!(fake
        .complete_portal_sign_in(&sign_in("https://gateway.example.com/callback"), "google")
        .is_err());
    let page = reqwest::get(sign_in("https://gateway.example.com/callback"))
        .await
        .unwrap();
    assert_eq!(page.status(), 400);

    let redirect = "http://localhost:3128/oauth/callback";
    let callback = fake
        .complete_portal_sign_in(&sign_in(redirect), "google")
        .unwrap();
    let url = reqwest::Url::parse(&callback).unwrap();
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let exchange = |verifier: &str, redirect_uri: &str| json!({ "code": code, "code_verifier": verifier, "redirect_uri": redirect_uri });
    let with_option = format!("{redirect}?login_option=google");
    // A wrong verifier burns the code: the right one afterwards is refused too.
    let (status, _) = post(
        &fake,
        "/oauth/token",
        exchange(&"w".repeat(43), &with_option),
    )
    .await;
    assert_eq!(status, 400);
    let (status, answer) = post(&fake, "/oauth/token", exchange(&verifier, &with_option)).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (400, Some("Code already used"))
    );

    // A fresh code: the redirect_uri must carry login_option like the one the browser got.
    let callback = fake
        .complete_portal_sign_in(&sign_in(redirect), "google")
        .unwrap();
    let url = reqwest::Url::parse(&callback).unwrap();
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let (status, answer) = post(
        &fake,
        "/oauth/token",
        json!({ "code": code, "code_verifier": verifier, "redirect_uri": redirect }),
    )
    .await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (400, Some("redirect_uri mismatch"))
    );
}

#[tokio::test]
async fn an_oidc_refresh_token_is_refused_by_the_social_refresh() {
    let fake = start(FakeKiroConfig::default()).await.unwrap();
    let (id, secret) = register(&fake).await;
    let (_, device) = post(&fake, "/device_authorization", json!({ "clientId": id, "clientSecret": secret, "startUrl": "https://view.awsapps.com/start" })).await;
    assert!(fake.approve_device(device["userCode"].as_str().unwrap()));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, tokens) = post(
        &fake,
        "/token",
        json!({
            "clientId": id, "clientSecret": secret, "deviceCode": device["deviceCode"],
            "grantType": "urn:ietf:params:oauth:grant-type:device_code",
        }),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refreshToken"].as_str().unwrap();
    let (status, answer) = post(&fake, "/refreshToken", json!({ "refreshToken": refresh })).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (401, Some("Bad credentials"))
    );
    // With its own client it refreshes; without the secret it does not.
    let (status, _) = post(&fake, "/token", json!({ "grantType": "refresh_token", "clientId": id, "clientSecret": secret, "refreshToken": refresh })).await;
    assert_eq!(status, 200);
    let (status, _) = post(&fake, "/token", json!({ "grantType": "refresh_token", "clientId": id, "clientSecret": "x", "refreshToken": refresh })).await;
    assert_eq!(status, 400);
    // The device code was used up.
    let (_, again) = post(
        &fake,
        "/token",
        json!({
            "clientId": id, "clientSecret": secret, "deviceCode": device["deviceCode"],
            "grantType": "urn:ietf:params:oauth:grant-type:device_code",
        }),
    )
    .await;
    assert_eq!(again["error"], "invalid_grant");
}
