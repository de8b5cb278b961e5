//! Kiro usage limits per account, end to end: the real server on loopback asks the strict fake
//! Kiro's `getUsageLimits` (bearer token and parameters checked) for each account, stores the
//! snapshot, and shows it through the admin JSON API, the accounts page and the overview's
//! "accounts near their limits"; a failed fetch keeps the last snapshot and says why.

mod common;
mod console_support;
mod tenancy_support;

use common::{serve_args, start_gateway, Harness};
use console_support::Browser;
use kiro_gateway::fake_kiro::{FakeKiroConfig, UsageLimitsAnswer};
use serde_json::json;
use tenancy_support::*;

const ARN_A: &str = "arn:aws:codewhisperer:us-east-1:123456789012:profile/ACCOUNTA";
const ARN_B: &str = "arn:aws:codewhisperer:us-east-1:123456789012:profile/ACCOUNTB";

/// A gateway with a database whose Kiro calls, usage limits included, go to the fake.
async fn gateway(dir: &TempDir) -> Harness {
    let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
        .await
        .unwrap();
    let base = fake.base_url();
    let db = database_url(dir);
    let key_file = dir.0.join("secret.key");
    let limits_url = format!("{base}/getUsageLimits");
    let args = serve_args(&[
        "--kiro-api-url",
        &base,
        "--kiro-desktop-auth-url",
        &base,
        "--kiro-oidc-url",
        &base,
        "--kiro-usage-limits-url",
        &limits_url,
        "--database-url",
        &db,
        "--admin-api-key",
        ROOT,
        "--secret-key-file",
        key_file.to_str().unwrap(),
    ]);
    let mut h = start_gateway(args).await;
    h.fake = Some(fake);
    h
}

/// The text (tags removed) from the element with `data-testid="id"` to the next `until`.
fn text_of(page: &console_support::Page, id: &str, until: &str) -> String {
    let at = page
        .body
        .find(&format!(r#"data-testid="{id}""#))
        .unwrap_or_else(|| panic!("no {id} in {}", page.body));
    let rest = &page.body[at..];
    let rest = &rest[..rest.find(until).unwrap_or(rest.len())];
    let mut out = String::new();
    let mut in_tag = true;
    for c in rest.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

async fn add_account(h: &Harness, name: &str, arn: &str) -> i64 {
    let token = h.fake().config().refresh_token.clone();
    let body = json!({ "name": name, "refresh_token": token, "profile_arn": arn });
    let made = ok(h, "POST", "/admin/accounts", ROOT, Some(body)).await;
    made["account"]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn limits_are_fetched_per_account_stored_and_shown() {
    let dir = temp_dir();
    let h = gateway(&dir).await;
    let a = add_account(&h, "first", ARN_A).await;
    let b = add_account(&h, "second", ARN_B).await;
    // Account B has used 90 of its 100 credits.
    h.fake().set_usage_limits(
        Some(ARN_B),
        UsageLimitsAnswer::Json(json!({
            "usageBreakdownList": [ { "resourceType": "CREDIT", "currentUsageWithPrecision": 90.0,
                "usageLimitWithPrecision": 100.0, "nextDateReset": "2027-01-01T00:00:00Z" } ],
            "subscriptionInfo": { "subscriptionTitle": "KIRO PRO" },
            "userInfo": { "email": "b@example.com" }
        })),
    );

    // Nothing fetched yet.
    let listed = ok(&h, "GET", "/admin/accounts/usage-limits", ROOT, None).await;
    assert_eq!(listed["data"], json!([]));

    // A: the default answer (12.5 + a 3-credit trial, of 50 + 500).
    let got = ok(
        &h,
        "POST",
        &format!("/admin/accounts/{a}/usage-limits"),
        ROOT,
        None,
    )
    .await;
    let snapshot = &got["usage_limits"]["snapshot"];
    assert_eq!(snapshot["used"], 15.5);
    assert_eq!(snapshot["limit"], 550.0);
    assert_eq!(snapshot["subscription"], "KIRO FREE");
    assert_eq!(snapshot["email"], "fake-user@example.com");
    assert!(got["usage_limits"]["fetched_at"].is_string());
    // The call carried the bearer token the fake issued and the account's profile ARN.
    let (calls, query) = h.fake().usage_limits_calls();
    assert_eq!(calls, 1);
    let query = query.unwrap();
    assert!(query.contains("origin=AI_EDITOR") && query.contains("resourceType=AGENTIC_REQUEST"));
    assert!(
        query.contains("profileArn=arn%3Aaws%3Acodewhisperer"),
        "{query}"
    );

    ok(
        &h,
        "POST",
        &format!("/admin/accounts/{b}/usage-limits"),
        ROOT,
        None,
    )
    .await;
    let listed = ok(&h, "GET", "/admin/accounts/usage-limits", ROOT, None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert_eq!(listed["near_limit"], json!([b]));

    // The accounts page shows used / limit and the reset; the overview lists B as near.
    let mut browser = Browser::new(format!("http://{}", h.addr));
    browser.login("/console", ROOT).await;
    let page = browser.get("/console/admin/accounts").await;
    let cell_b = text_of(&page, &format!("usage-limits-{b}"), "</td>");
    assert!(
        cell_b.contains("90 / 100 (90 %)") && cell_b.contains("2027-01-01"),
        "{cell_b}"
    );
    assert!(cell_b.contains("KIRO PRO"));
    let cell_a = text_of(&page, &format!("usage-limits-{a}"), "</td>");
    assert!(cell_a.contains("15.50 / 550 (3 %)"), "{cell_a}");
    let overview = browser.get("/console/admin").await;
    let near = text_of(&overview, "near-limits", "</table>");
    assert!(near.contains("second") && !near.contains("first"), "{near}");

    // Kiro refuses: a 502 naming Kiro's answer; the last snapshot stays, the error is shown.
    h.fake()
        .set_usage_limits(Some(ARN_B), UsageLimitsAnswer::Status(403));
    let (status, body) = call(
        &h,
        "POST",
        &format!("/admin/accounts/{b}/usage-limits"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.to_string().contains("getUsageLimits answered 403"),
        "{body}"
    );
    let listed = ok(&h, "GET", "/admin/accounts/usage-limits", ROOT, None).await;
    let row_b = &listed["data"][1];
    assert_eq!(row_b["snapshot"]["used"], 90.0);
    assert!(row_b["error"].as_str().unwrap().contains("403"));
    let page = browser.get("/console/admin/accounts").await;
    assert!(text_of(&page, &format!("usage-limits-{b}"), "</td>").contains("last fetch failed"));

    // The console's button fetches again (Kiro answers again; the error clears).
    h.fake().set_usage_limits(
        Some(ARN_B),
        UsageLimitsAnswer::Json(kiro_gateway::fake_kiro::default_usage_limits()),
    );
    let csrf = page.csrf();
    let act = format!("usage:{b}");
    let posted = browser
        .post(
            "/console/admin/accounts",
            &[("act", &act), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(posted.status, 303);
    let page = browser.get("/console/admin/accounts").await;
    let cell_b = text_of(&page, &format!("usage-limits-{b}"), "</td>");
    assert!(
        cell_b.contains("15.50 / 550") && !cell_b.contains("failed"),
        "{cell_b}"
    );
    assert_eq!(h.fake().usage_limits_calls().0, 4);
}

#[tokio::test]
async fn only_admins_fetch_and_bad_ids_are_clear_errors() {
    let dir = temp_dir();
    let h = gateway(&dir).await;
    let a = add_account(&h, "only", ARN_A).await;
    let (_, agent_key, _, user_key) = agent_with_user(&h, "reseller", 0).await;
    for key in [&agent_key, &user_key, &"sk-nonsense".to_owned()] {
        let (status, _) = call(
            &h,
            "POST",
            &format!("/admin/accounts/{a}/usage-limits"),
            key,
            None,
        )
        .await;
        assert!(status == 401 || status == 403, "{status}");
        let (status, _) = call(&h, "GET", "/admin/accounts/usage-limits", key, None).await;
        assert!(status == 401 || status == 403, "{status}");
    }
    assert_eq!(h.fake().usage_limits_calls().0, 0, "Kiro was never asked");
    let (status, _) = call(&h, "POST", "/admin/accounts/999/usage-limits", ROOT, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&h, "POST", "/admin/accounts/x/usage-limits", ROOT, None).await;
    assert_eq!(status, 400);
    // A disabled account has no credential to ask with: a clear conflict, nothing stored.
    ok(
        &h,
        "POST",
        &format!("/admin/accounts/{a}/disable"),
        ROOT,
        None,
    )
    .await;
    let (status, body) = call(
        &h,
        "POST",
        &format!("/admin/accounts/{a}/usage-limits"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
}
