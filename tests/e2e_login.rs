//! End-to-end tests of adding a Kiro account by signing in: the real server on loopback, the
//! fake Kiro playing AWS SSO OIDC, Kiro's sign-in service, the portal and
//! ListAvailableProfiles, a SQLite database per test. Each flow and each case: pending then
//! approved, slow_down, expired, denied, several profiles (a choice), the paste fallback,
//! cancel, an expired client registration; then the stored account serves a chat request.

mod common;
mod login_support;
mod tenancy_support;

use kiro_gateway::fake_kiro::{LoginCase, FAKE_IDC_PROFILES, FAKE_PROFILE_ARN};
use login_support::*;
use serde_json::{json, Value};
use tenancy_support::{call, ok, ROOT};

const BUILDER_ID_PROFILE: &str =
    "arn:aws:codewhisperer:us-east-1:638616132270:profile/AAAACCCCXXXX";

fn code(view: &Value) -> String {
    view["user_code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn builder_id_pending_then_approved_stores_a_verified_account_that_serves_chat() {
    let LoginEnv { h, dir: _dir } = start().await;
    // No account yet: chat has nothing to use.
    assert_eq!(chat_once(&h).await.0, 503);

    let started = start_flow(
        &h,
        json!({ "method": "builder-id", "name": "team builder" }),
    )
    .await;
    assert_eq!(started["status"], "pending");
    assert_eq!(started["method"], "builder-id");
    let id = started["id"].as_str().unwrap().to_owned();
    let user_code = code(&started);
    assert!(started["verification_uri_complete"]
        .as_str()
        .unwrap()
        .contains(&user_code));
    assert!(started["expires_at"].is_string());
    // Nothing secret in the view.
    let text = started.to_string();
    assert!(!text.contains("device_code") && !text.contains("client_secret"));

    // The fake keeps answering authorization_pending until the user approves.
    let fake = h.fake();
    while fake.device_polls() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, view) = call(
        &h,
        "GET",
        &format!("/admin/accounts/login/{id}"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(
        (status, view["login"]["status"].as_str()),
        (200, Some("pending"))
    );
    assert!(fake.approve_device(&user_code));

    let refreshes_before = fake.stats().refreshes;
    let (seen, done) = follow(&h, &id, is_final).await;
    assert_eq!(done["status"], "succeeded", "{seen:?} {done}");
    assert!(seen.contains(&"pending".to_owned()));
    let account = &done["account"];
    assert_eq!(account["name"], "team builder");
    assert_eq!(account["auth_kind"], "oidc");
    assert_eq!(account["sso_region"], "us-east-1");
    assert_eq!(account["profile_arn"], BUILDER_ID_PROFILE);
    assert!(account["client_id"]
        .as_str()
        .unwrap()
        .starts_with("fakeclient"));
    assert!(account.get("refresh_token").is_none() && account.get("client_secret").is_none());
    // Verified with one refresh.
    assert_eq!(fake.stats().refreshes, refreshes_before + 1);

    let account_id = account["id"].as_i64().unwrap();
    let login = ok(
        &h,
        "GET",
        &format!("/admin/accounts/{account_id}/login"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(login["login"]["method"], "builder-id");
    assert_eq!(
        login["login"]["start_url"],
        "https://view.awsapps.com/start"
    );
    assert!(login["login"]["client_secret_expires_at"].is_string());
    // The fake registers clients for 90 days.
    assert!(
        matches!(
            login["registration_expires_in_days"].as_i64(),
            Some(88..=90)
        ),
        "{login}"
    );
    assert_eq!(login["sign_in_again_soon"], false);

    let audit = ok(&h, "GET", "/admin/audit", ROOT, None).await.to_string();
    assert!(audit.contains("\"login-start\"") && audit.contains("\"login\""));
    assert!(
        !audit.contains("aorFAKELOGIN"),
        "no refresh token in the audit log"
    );

    // The new account is the pool's only one and serves a chat request.
    let (status, body) = chat_once(&h).await;
    assert_eq!(status, 200, "{body}");
    // Encrypted at rest: the issued refresh token appears in no database file.
    assert!(!database_contains(&_dir, b"aorFAKELOGIN"));
}

/// Whether any file of the test's SQLite database (main file, WAL) holds `needle`.
fn database_contains(dir: &tenancy_support::TempDir, needle: &[u8]) -> bool {
    std::fs::read_dir(&dir.0).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        name.starts_with("gw.db")
            && std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
    })
}

#[tokio::test]
async fn slow_down_raises_the_interval_and_the_flow_still_succeeds() {
    let LoginEnv { h, dir: _dir } = start().await;
    h.fake().push_login_case(LoginCase::SlowDown);
    let started = start_flow(&h, json!({ "method": "builder-id" })).await;
    assert_eq!(started["interval_seconds"], 1);
    let id = started["id"].as_str().unwrap().to_owned();
    let (seen, slowed) = follow(&h, &id, |v| v["status"] == "slow_down" || is_final(v)).await;
    assert_eq!(slowed["status"], "slow_down", "{seen:?}");
    assert_eq!(slowed["interval_seconds"], 6);
    assert!(h.fake().approve_device(&code(&started)));
    let (_, done) = follow(&h, &id, is_final).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[tokio::test]
async fn an_expired_code_ends_the_flow_as_expired() {
    let LoginEnv { h, dir: _dir } = start().await;
    h.fake().push_login_case(LoginCase::Expired);
    let started = start_flow(&h, json!({ "method": "builder-id" })).await;
    let (_, done) = follow(&h, started["id"].as_str().unwrap(), is_final).await;
    assert_eq!(done["status"], "expired");
    assert!(done["error"].as_str().unwrap().contains("start again"));
    assert!(accounts(&h).await.is_empty());
}

#[tokio::test]
async fn a_denied_sign_in_ends_as_denied_both_ways() {
    let LoginEnv { h, dir: _dir } = start().await;
    // The user presses "Deny" on the verification page.
    let started = start_flow(&h, json!({ "method": "builder-id" })).await;
    let page = reqwest::Client::new()
        .post(format!("{}/device", h.fake().base_url()))
        .form(&[("user_code", code(&started).as_str()), ("decision", "deny")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Denied"));
    let (_, done) = follow(&h, started["id"].as_str().unwrap(), is_final).await;
    assert_eq!(done["status"], "denied");
    // The denied case of the fake: access_denied on the next poll.
    h.fake().push_login_case(LoginCase::Denied);
    let started = start_flow(&h, json!({ "method": "social", "provider": "github" })).await;
    let (_, done) = follow(&h, started["id"].as_str().unwrap(), is_final).await;
    assert_eq!(done["status"], "denied");
    assert!(accounts(&h).await.is_empty());
}

#[tokio::test]
async fn identity_center_with_several_profiles_waits_for_a_choice() {
    let LoginEnv { h, dir: _dir } = start().await;
    let started = start_flow(
        &h,
        json!({
            "method": "identity-center",
            "start_url": "https://d-fake.awsapps.com/start?fake=several-profiles",
            "region": "eu-west-1",
        }),
    )
    .await;
    let id = started["id"].as_str().unwrap().to_owned();
    assert!(h.fake().approve_device(&code(&started)));
    let (_, choice) = follow(&h, &id, |v| {
        v["status"] == "needs_profile_choice" || is_final(v)
    })
    .await;
    assert_eq!(choice["status"], "needs_profile_choice", "{choice}");
    // Both pages of ListAvailableProfiles were read.
    let arns: Vec<&str> = choice["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["arn"].as_str().unwrap())
        .collect();
    assert_eq!(arns, FAKE_IDC_PROFILES.map(|(arn, _)| arn));

    // Not a listed profile: refused, the flow keeps waiting.
    let (status, _) = call(
        &h,
        "POST",
        &format!("/admin/accounts/login/{id}/profile"),
        ROOT,
        Some(
            json!({ "profile_arn": "arn:aws:codewhisperer:us-east-1:999999999999:profile/OTHER" }),
        ),
    )
    .await;
    assert_eq!(status, 400);
    let chosen = FAKE_IDC_PROFILES[1].0;
    ok(
        &h,
        "POST",
        &format!("/admin/accounts/login/{id}/profile"),
        ROOT,
        Some(json!({ "profile_arn": chosen })),
    )
    .await;
    let (_, done) = follow(&h, &id, is_final).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let account = &done["account"];
    assert_eq!(account["profile_arn"], chosen);
    assert_eq!(account["sso_region"], "eu-west-1");
    assert_eq!(account["api_region"], "eu-central-1");
    let account_id = account["id"].as_i64().unwrap();
    let login = ok(
        &h,
        "GET",
        &format!("/admin/accounts/{account_id}/login"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(login["login"]["method"], "identity-center");
    assert_eq!(
        login["login"]["start_url"],
        "https://d-fake.awsapps.com/start?fake=several-profiles"
    );
}

#[tokio::test]
async fn identity_center_with_one_profile_takes_it() {
    let LoginEnv { h, dir: _dir } = start().await;
    let started = start_flow(
        &h,
        json!({ "method": "identity-center", "start_url": "https://d-fake.awsapps.com/start", "region": "us-east-2" }),
    )
    .await;
    assert!(h.fake().approve_device(&code(&started)));
    let (seen, done) = follow(&h, started["id"].as_str().unwrap(), is_final).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(!seen.contains(&"needs_profile_choice".to_owned()));
    assert_eq!(done["account"]["profile_arn"], FAKE_IDC_PROFILES[0].0);
    assert_eq!(done["account"]["api_region"], "us-east-1");
    assert_eq!(chat_once(&h).await.0, 200);
}

#[tokio::test]
async fn google_device_flow_stores_a_social_account_that_serves_chat() {
    let LoginEnv { h, dir: _dir } = start().await;
    let started = start_flow(&h, json!({ "method": "social", "provider": "google" })).await;
    assert_eq!(started["provider"], "google");
    assert!(h.fake().approve_device(&code(&started)));
    let (_, done) = follow(&h, started["id"].as_str().unwrap(), is_final).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["account"]["auth_kind"], "desktop");
    assert_eq!(done["account"]["profile_arn"], FAKE_PROFILE_ARN);
    assert!(done["account"]["client_id"].is_null());
    let id = done["account"]["id"].as_i64().unwrap();
    let login = ok(
        &h,
        "GET",
        &format!("/admin/accounts/{id}/login"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(login["login"]["method"], "social-google");
    // No client registration, nothing to renew.
    assert!(login["registration_expires_in_days"].is_null());
    assert_eq!(login["sign_in_again_soon"], false);
    let (status, body) = chat_once(&h).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_paste_fallback_exchanges_the_callback_address_once() {
    let LoginEnv { h, dir: _dir } = start().await;
    let started = start_flow(&h, json!({ "method": "social-redirect" })).await;
    assert_eq!(started["status"], "waiting_for_redirect");
    let id = started["id"].as_str().unwrap().to_owned();
    let sign_in = started["sign_in_url"].as_str().unwrap();
    assert!(sign_in.starts_with(&format!("{}/signin?", h.fake().base_url())));
    // The portal page of the fake accepts the address (challenge, state, allowed redirect).
    let page = reqwest::get(sign_in).await.unwrap();
    assert_eq!(page.status(), 200);

    // An address from another sign-in (its state differs) is refused.
    let other = start_flow(&h, json!({ "method": "social-redirect" })).await;
    let foreign = h
        .fake()
        .complete_portal_sign_in(other["sign_in_url"].as_str().unwrap(), "github")
        .unwrap();
    let path = format!("/admin/accounts/login/{id}/redirect");
    let (status, body) = call(&h, "POST", &path, ROOT, Some(json!({ "url": foreign }))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("state"));
    let (status, _) = call(&h, "POST", &path, ROOT, Some(json!({ "url": "not a url" }))).await;
    assert_eq!(status, 400);

    let callback = h.fake().complete_portal_sign_in(sign_in, "github").unwrap();
    assert!(callback.starts_with("http://localhost:3128/oauth/callback?login_option=github&code="));
    let done = ok(&h, "POST", &path, ROOT, Some(json!({ "url": callback }))).await["login"].clone();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["account"]["profile_arn"], FAKE_PROFILE_ARN);
    // Pasting again: the flow is over.
    let (status, _) = call(&h, "POST", &path, ROOT, Some(json!({ "url": callback }))).await;
    assert_eq!(status, 409);
    let account_id = done["account"]["id"].as_i64().unwrap();
    let login = ok(
        &h,
        "GET",
        &format!("/admin/accounts/{account_id}/login"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(login["login"]["method"], "social-github");
}

#[tokio::test]
async fn cancel_and_an_expired_registration_end_flows_without_an_account() {
    let LoginEnv { h, dir: _dir } = start().await;
    let started = start_flow(&h, json!({ "method": "builder-id" })).await;
    let id = started["id"].as_str().unwrap();
    let cancelled = ok(
        &h,
        "POST",
        &format!("/admin/accounts/login/{id}/cancel"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(cancelled["login"]["status"], "cancelled");
    // A cancelled code cannot be approved into an account.
    h.fake().approve_device(&code(&started));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        ok(
            &h,
            "GET",
            &format!("/admin/accounts/login/{id}"),
            ROOT,
            None
        )
        .await["login"]["status"],
        "cancelled"
    );

    // The client registration expires mid-flow: the token endpoint says invalid_client.
    let started = start_flow(&h, json!({ "method": "builder-id" })).await;
    h.fake().expire_registrations();
    h.fake().approve_device(&code(&started));
    let (_, done) = follow(&h, started["id"].as_str().unwrap(), is_final).await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["error"].as_str().unwrap().contains("invalid_client"),
        "{done}"
    );
    assert!(accounts(&h).await.is_empty());
}

#[tokio::test]
async fn bad_requests_and_non_admin_keys_are_refused() {
    let LoginEnv { h, dir: _dir } = start().await;
    for (body, needle) in [
        (json!({ "method": "password" }), "method"),
        (
            json!({ "method": "identity-center", "region": "us-east-1" }),
            "start_url",
        ),
        (
            json!({ "method": "identity-center", "start_url": "https://x.awsapps.com/start", "region": "mars" }),
            "region",
        ),
        (
            json!({ "method": "social", "provider": "myspace" }),
            "provider",
        ),
        (json!({ "method": "builder-id", "secret": 1 }), "secret"),
        (
            json!({ "method": "builder-id", "name": "bad\u{0}name" }),
            "name",
        ),
    ] {
        let (status, answer) = call(
            &h,
            "POST",
            "/admin/accounts/login/start",
            ROOT,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{answer}"
        );
    }
    let (status, _) = call(&h, "GET", "/admin/accounts/login/nope", ROOT, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &h,
        "GET",
        "/admin/accounts/login/x?wait=soon&version=1",
        ROOT,
        None,
    )
    .await;
    assert_eq!(status, 400);
    // An inference key is no admin.
    let user = ok(
        &h,
        "POST",
        "/admin/users",
        ROOT,
        Some(json!({ "name": "eve" })),
    )
    .await;
    let key = ok(
        &h,
        "POST",
        "/admin/keys",
        ROOT,
        Some(json!({ "kind": "inference", "user_id": user["user"]["id"] })),
    )
    .await;
    let key = key["key"].as_str().unwrap();
    for (method, path) in [
        ("POST", "/admin/accounts/login/start"),
        ("GET", "/admin/accounts/login/abc"),
        ("POST", "/admin/accounts/import"),
        ("GET", "/admin/accounts/1/login"),
    ] {
        let (status, _) = call(
            &h,
            method,
            path,
            key,
            Some(json!({ "method": "builder-id" })),
        )
        .await;
        assert!(status == 401 || status == 403, "{method} {path}: {status}");
        let (status, _) = call(&h, method, path, "", None).await;
        assert_eq!(status, 401, "{method} {path}");
    }
}

#[tokio::test]
async fn batch_import_dedupes_verifies_each_and_reports_per_line() {
    let LoginEnv { h, dir: _dir } = start().await;
    let good = h.fake().config().refresh_token.clone();
    let oidc_file = json!({
        "refreshToken": good,
        "clientId": h.fake().config().oidc_client_id,
        "clientSecret": h.fake().config().oidc_client_secret,
        "region": "us-east-1",
    });
    let text = format!("{good}\n\n# a comment\n{good}\naorNOT-A-REAL-TOKEN\nnot json {{\n");
    let answer = ok(
        &h,
        "POST",
        "/admin/accounts/import",
        ROOT,
        Some(json!({
            "text": text,
            "files": [[ oidc_file, { "email": "x@example.com", "refreshToken": "" } ]],
            "name_prefix": "batch",
        })),
    )
    .await;
    let results = answer["results"].as_array().unwrap();
    let outcomes: Vec<&str> = results
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "added",
            "duplicate",
            "failed",
            "failed",
            "duplicate",
            "failed"
        ],
        "{answer}"
    );
    assert_eq!(
        (
            answer["added"].as_u64(),
            answer["duplicates"].as_u64(),
            answer["failed"].as_u64()
        ),
        (Some(1), Some(2), Some(3))
    );
    let lines: Vec<u64> = results
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [1, 2, 3, 4, 5, 6]);
    assert_eq!(results[1]["account_id"], results[0]["account_id"]);
    assert!(
        results[2]["error"]
            .as_str()
            .unwrap()
            .contains("first refresh"),
        "{}",
        results[2]
    );
    assert!(
        !answer.to_string().contains("aorNOT-A-REAL-TOKEN"),
        "tokens are not echoed"
    );
    assert!(results[0]["name"].as_str().unwrap().starts_with("batch "));
    // A second import of the same token is a duplicate of the stored account.
    let again = ok(
        &h,
        "POST",
        "/admin/accounts/import",
        ROOT,
        Some(json!({ "text": good })),
    )
    .await;
    assert_eq!(again["results"][0]["outcome"], "duplicate");
    assert_eq!(accounts(&h).await.len(), 1);
    let (status, _) = call(
        &h,
        "POST",
        "/admin/accounts/import",
        ROOT,
        Some(json!({ "text": "\n\n" })),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = chat_once(&h).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !database_contains(&_dir, good.as_bytes()),
        "refresh tokens are encrypted at rest"
    );
    // The check itself can fail: the account's name is stored in clear.
    assert!(database_contains(&_dir, b"batch "));
}

#[tokio::test]
async fn demo_mode_plays_the_sign_in_with_its_own_fake() {
    let dir = tenancy_support::temp_dir();
    let url = tenancy_support::database_url(&dir);
    let key_file = dir.0.join("secret.key");
    let h = common::start_gateway(common::serve_args(&[
        "--demo",
        "--database-url",
        &url,
        "--admin-api-key",
        ROOT,
        "--secret-key-file",
        key_file.to_str().unwrap(),
    ]))
    .await;
    let started = start_flow(
        &h,
        json!({
            "method": "identity-center",
            "start_url": "https://d-demo.awsapps.com/start?fake=several-profiles",
            "region": "us-east-1",
        }),
    )
    .await;
    // The operator opens the link and presses Allow on the fake's page.
    let page_url = started["verification_uri_complete"].as_str().unwrap();
    let page = reqwest::get(page_url).await.unwrap().text().await.unwrap();
    assert!(
        page.contains(started["user_code"].as_str().unwrap()),
        "{page}"
    );
    let verification = started["verification_uri"].as_str().unwrap();
    reqwest::Client::new()
        .post(verification)
        .form(&[
            ("user_code", code(&started).as_str()),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    let (_, choice) = follow(&h, &id, |v| {
        v["status"] == "needs_profile_choice" || is_final(v)
    })
    .await;
    assert_eq!(
        choice["profiles"].as_array().map(Vec::len),
        Some(2),
        "{choice}"
    );
    let arn = choice["profiles"][0]["arn"].as_str().unwrap().to_owned();
    ok(
        &h,
        "POST",
        &format!("/admin/accounts/login/{id}/profile"),
        ROOT,
        Some(json!({ "profile_arn": arn })),
    )
    .await;
    let (_, done) = follow(&h, &id, is_final).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[tokio::test]
async fn a_registration_expiring_within_two_weeks_asks_for_a_new_sign_in() {
    let LoginEnv { h, dir: _dir } = start_with(kiro_gateway::fake_kiro::FakeKiroConfig {
        client_secret_ttl: std::time::Duration::from_secs(10 * 24 * 3600),
        ..Default::default()
    })
    .await;
    let started = start_flow(&h, json!({ "method": "builder-id" })).await;
    assert!(h.fake().approve_device(&code(&started)));
    let (_, done) = follow(&h, started["id"].as_str().unwrap(), is_final).await;
    let id = done["account"]["id"].as_i64().unwrap();
    let login = ok(
        &h,
        "GET",
        &format!("/admin/accounts/{id}/login"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(login["sign_in_again_soon"], true, "{login}");
    assert!(matches!(
        login["registration_expires_in_days"].as_i64(),
        Some(9..=10)
    ));
}
