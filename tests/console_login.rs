//! The console's add-account wizard against the real server and the fake Kiro on loopback:
//! Builder ID from the console form to an account in the pool, Identity Center with several
//! profiles (the choice through the form), a denied sign-in, the CSRF refusal of the start
//! form, and a non-admin session refused.

mod common;
mod console_support;
mod login_support;
mod tenancy_support;

use std::time::Duration;

use console_support::{Browser, Page};
use kiro_gateway::fake_kiro::FAKE_IDC_PROFILES;
use login_support::*;
use tenancy_support::{agent_with_user, ROOT};

async fn admin(env: &LoginEnv) -> Browser {
    let mut b = Browser::new(format!("http://{}", env.h.addr));
    assert_eq!(b.login("/console", ROOT).await, "/console/admin");
    b
}

fn status_of(page: &Page) -> String {
    let marker = r#"data-status=""#;
    let at = page.body.find(marker).expect("flow page has a status") + marker.len();
    let end = page.body[at..].find('"').unwrap();
    page.body[at..at + end].to_owned()
}

/// Starts a flow from the accounts page's form; answers the flow page's path.
async fn start_from_form(b: &mut Browser, fields: &[(&str, &str)]) -> String {
    let accounts = b.get("/console/admin/accounts").await;
    assert_eq!(accounts.status, 200);
    assert!(accounts.has(r#"data-testid="signin-form""#));
    let csrf = accounts.csrf();
    let mut all = vec![("_csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let started = b.post("/console/admin/accounts/login", &all).await;
    assert_eq!(started.status, 303, "{}", started.body);
    let location = started.location.unwrap();
    assert!(
        location.starts_with("/console/admin/accounts/login/"),
        "{location}"
    );
    location
}

/// Reloads the flow page (as its meta refresh does) until its status is one of `wanted`.
async fn reload_until(b: &mut Browser, path: &str, wanted: &[&str]) -> Page {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let status = status_of(&page);
        if wanted.contains(&status.as_str()) {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flow stuck at {status}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn builder_id_from_the_console_form_adds_an_account() {
    let env = start().await;
    let mut b = admin(&env).await;
    let path = start_from_form(&mut b, &[("method", "builder-id"), ("name", "wizard-one")]).await;

    let page = b.get(&path).await;
    assert_eq!(status_of(&page), "pending");
    // Works without JavaScript: the page refreshes itself while it waits.
    assert!(page.has(r#"<meta http-equiv="refresh""#));
    assert!(page.has(r#"data-testid="signin-verify""#));
    assert!(page.has(r#"data-testid="signin-cancel""#));
    let code = page.testid_text("signin-user-code").unwrap();
    assert!(!code.is_empty());
    assert!(env.h.fake().approve_device(&code));

    let done = reload_until(&mut b, &path, &["succeeded", "failed", "denied", "expired"]).await;
    assert_eq!(status_of(&done), "succeeded", "{}", done.body);
    assert!(!done.has("http-equiv=\"refresh\""));
    let link = done.testid_text("signin-account").unwrap();
    assert!(link.contains("wizard-one"), "{link}");
    assert!(done.has(r#"href="/console/admin/accounts""#));

    let stored = accounts(&env.h).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["account"]["name"], "wizard-one");
    let list = b.get("/console/admin/accounts").await;
    assert!(list.has("wizard-one"));
    // The start was audited like the JSON endpoint's.
    let audit = b.get("/console/admin/audit").await;
    assert!(audit.has("login-start"));
    env.h.shutdown().await;
}

#[tokio::test]
async fn several_identity_center_profiles_are_chosen_through_the_form() {
    let env = start().await;
    let mut b = admin(&env).await;
    // A bad start URL comes back to the accounts page with the API's message.
    let accounts_page = b.get("/console/admin/accounts").await;
    let refused = b
        .post(
            "/console/admin/accounts/login",
            &[
                ("_csrf", &accounts_page.csrf()),
                ("method", "identity-center"),
                ("start_url", "not a url"),
                ("region", "eu-west-1"),
            ],
        )
        .await;
    assert_eq!(refused.location.as_deref(), Some("/console/admin/accounts"));
    let shown = b.get("/console/admin/accounts").await;
    assert!(shown.has("start_url"), "{}", shown.body);

    let path = start_from_form(
        &mut b,
        &[
            ("method", "identity-center"),
            (
                "start_url",
                "https://d-fake.awsapps.com/start?fake=several-profiles",
            ),
            ("region", "eu-west-1"),
        ],
    )
    .await;
    let page = b.get(&path).await;
    let code = page.testid_text("signin-user-code").unwrap();
    assert!(env.h.fake().approve_device(&code));
    let choice = reload_until(&mut b, &path, &["needs_profile_choice", "failed"]).await;
    assert_eq!(
        status_of(&choice),
        "needs_profile_choice",
        "{}",
        choice.body
    );
    assert!(choice.has(r#"data-testid="signin-profile-form""#));
    for (arn, _) in FAKE_IDC_PROFILES {
        assert!(choice.has(arn), "{arn}");
    }
    let chosen = FAKE_IDC_PROFILES[1].0;
    let posted = b
        .post(
            &path,
            &[
                ("_csrf", &choice.csrf()),
                ("act", "profile"),
                ("profile_arn", chosen),
            ],
        )
        .await;
    assert_eq!(posted.location.as_deref(), Some(path.as_str()));
    let done = reload_until(&mut b, &path, &["succeeded", "failed"]).await;
    assert_eq!(status_of(&done), "succeeded", "{}", done.body);
    let stored = accounts(&env.h).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["account"]["profile_arn"], chosen);
    env.h.shutdown().await;
}

#[tokio::test]
async fn a_denied_sign_in_says_so_and_offers_to_start_again() {
    let env = start().await;
    let mut b = admin(&env).await;
    let path = start_from_form(&mut b, &[("method", "builder-id")]).await;
    let page = b.get(&path).await;
    let code = page.testid_text("signin-user-code").unwrap();
    // The user presses "Deny" on the fake's verification page.
    let answer = reqwest::Client::new()
        .post(format!("{}/device", env.h.fake().base_url()))
        .form(&[("user_code", code.as_str()), ("decision", "deny")])
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let done = reload_until(&mut b, &path, &["denied", "succeeded", "failed"]).await;
    assert_eq!(status_of(&done), "denied");
    assert!(done.has("The sign-in was refused"));
    assert!(done.has(r#"data-testid="signin-again""#));
    assert!(!done.has("http-equiv=\"refresh\""));
    // The same page in Chinese.
    b.get("/console/lang/zh").await;
    let zh = b.get(&path).await;
    assert!(zh.has("登录在登录页面被拒绝"));
    assert!(zh.has("重新开始"));
    assert!(accounts(&env.h).await.is_empty());

    // Cancel through the form ends a pending flow.
    let path = start_from_form(&mut b, &[("method", "social:github")]).await;
    let page = b.get(&path).await;
    let posted = b
        .post(&path, &[("_csrf", &page.csrf()), ("act", "cancel")])
        .await;
    assert_eq!(posted.location.as_deref(), Some(path.as_str()));
    assert_eq!(status_of(&b.get(&path).await), "cancelled");
    env.h.shutdown().await;
}

#[tokio::test]
async fn the_start_form_needs_csrf_and_an_admin_session() {
    let env = start().await;
    let mut b = admin(&env).await;
    let page = b.get("/console/admin/accounts").await;
    let csrf = page.csrf();
    let missing = b
        .post("/console/admin/accounts/login", &[("method", "builder-id")])
        .await;
    assert_eq!(missing.status, 403);
    let foreign = b
        .post_with(
            "/console/admin/accounts/login",
            &[("_csrf", &csrf), ("method", "builder-id")],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(foreign.status, 403);
    // Nothing was started.
    let audit = b.get("/console/admin/audit").await;
    assert!(!audit.has("login-start"));

    let path = start_from_form(&mut b, &[("method", "builder-id")]).await;
    let (_, agent_key, _, user_key) = agent_with_user(&env.h, "north", 0).await;
    for key in [agent_key, user_key] {
        let mut other = Browser::new(format!("http://{}", env.h.addr));
        let home = other.login("/console", &key).await;
        let own = other.get(&home).await;
        let csrf = own.csrf();
        assert_eq!(other.get(&path).await.status, 403);
        assert_eq!(
            other
                .post(
                    "/console/admin/accounts/login",
                    &[("_csrf", &csrf), ("method", "builder-id")]
                )
                .await
                .status,
            403
        );
        assert_eq!(
            other
                .post(&path, &[("_csrf", &csrf), ("act", "cancel")])
                .await
                .status,
            403
        );
    }
    // The flow is still waiting.
    assert_eq!(status_of(&b.get(&path).await), "pending");
    env.h.shutdown().await;
}

/// The `href` of the link carrying `data-testid="id"`, unescaped.
fn href_of(page: &Page, id: &str) -> String {
    let marker = format!(r#"data-testid="{id}""#);
    let at = page.body.find(&marker).expect("link on the page");
    let start = page.body[..at].rfind(r#"href=""#).unwrap() + r#"href=""#.len();
    let end = page.body[start..].find('"').unwrap();
    page.body[start..start + end]
        .replace("&amp;", "&")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
}

#[tokio::test]
async fn the_paste_fallback_goes_through_the_redirect_form() {
    let env = start().await;
    let mut b = admin(&env).await;
    let path = start_from_form(&mut b, &[("method", "social-redirect")]).await;
    let page = b.get(&path).await;
    assert_eq!(status_of(&page), "waiting_for_redirect");
    assert!(page.has(r#"data-testid="signin-redirect-form""#));
    // No refresh while the operator types.
    assert!(!page.has("http-equiv=\"refresh\""));
    let sign_in = href_of(&page, "signin-link");
    assert!(sign_in.starts_with(&format!("{}/signin?", env.h.fake().base_url())));

    // A wrong address: back to the flow page with the API's message, still waiting.
    let refused = b
        .post(
            &path,
            &[
                ("_csrf", &page.csrf()),
                ("act", "redirect"),
                ("url", "not a url"),
            ],
        )
        .await;
    assert_eq!(refused.location.as_deref(), Some(path.as_str()));
    let again = b.get(&path).await;
    assert!(again.has(r#"data-testid="flash""#));
    assert_eq!(status_of(&again), "waiting_for_redirect");

    let callback = env
        .h
        .fake()
        .complete_portal_sign_in(&sign_in, "github")
        .unwrap();
    let posted = b
        .post(
            &path,
            &[
                ("_csrf", &again.csrf()),
                ("act", "redirect"),
                ("url", &callback),
            ],
        )
        .await;
    assert_eq!(posted.location.as_deref(), Some(path.as_str()));
    let done = reload_until(&mut b, &path, &["succeeded", "failed"]).await;
    assert_eq!(status_of(&done), "succeeded", "{}", done.body);
    assert_eq!(accounts(&env.h).await.len(), 1);
    env.h.shutdown().await;
}
