//! A gateway takes over sign-in flows that a stopped process left in the database mid-way (no
//! owner holds them), and finishes each exactly once: a flow whose account the stopped process
//! had already stored ends `succeeded` with that account (no second account, no refresh); one
//! stopped after the user signed in but before the account was stored gets its account,
//! verified with one refresh and audited once; one stuck exchanging a pasted address (the
//! tokens never came back) fails once it is well past its expiry.
//!
//! The flows are planted as the stored form a stopped gateway leaves behind (`login_flows`:
//! view, plan and encrypted secrets as JSON).

mod common;
mod login_support;
mod tenancy_support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kiro_gateway::fake_kiro::FakeKiroConfig;
use kiro_layers::store::{AuthKind, LoginFlowRow, NewAccount, Store};
use login_support::*;
use serde_json::{json, Value};
use tenancy_support::{ok, ROOT};

const PROFILE: &str = "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK";

/// A Google device flow in `finishing`, owned by nobody, as a stopped process leaves it.
fn finishing_flow(
    id: &str,
    name: &str,
    refresh_token: Option<&str>,
    expired: bool,
) -> LoginFlowRow {
    let expires_at = if expired {
        Utc::now() - chrono::Duration::minutes(10)
    } else {
        Utc::now() + chrono::Duration::minutes(10)
    };
    let view = json!({
        "id": id, "method": "social", "provider": "google", "status": "finishing",
        "version": 3, "user_code": "ABCD-EFGH", "verification_uri": null,
        "verification_uri_complete": null, "sign_in_url": null, "expires_at": expires_at,
        "interval_seconds": 1, "account": null, "error": null,
    });
    let plan = json!({
        "actor": "admin:env", "name": name, "max_concurrency": null, "preferred_profile": null,
        "profile_arn": PROFILE, "label": "social-google", "account_id": null,
        "started_at": Utc::now() - chrono::Duration::minutes(1),
    });
    let tokens = refresh_token.map(
        |t| json!({ "access_token": "planted-access", "refresh_token": t, "profile_arn": PROFILE }),
    );
    let secrets = json!({ "device_code": null, "client": null, "pkce": null, "tokens": tokens });
    LoginFlowRow {
        id: id.to_owned(),
        status: "finishing".into(),
        version: 3,
        view: view.to_string(),
        plan: plan.to_string(),
        secrets: secrets.to_string(),
        expires_at,
        finished_at: None,
        owner: None,
        lease_until: None,
    }
}

async fn until_final(h: &common::Harness, id: &str) -> Value {
    follow(h, id, is_final).await.1
}

async fn audited_logins(h: &common::Harness, account_id: i64) -> usize {
    let object_id = account_id.to_string();
    let audit = ok(h, "GET", "/admin/audit?limit=500", ROOT, None).await;
    audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login" && e["object_id"] == object_id.as_str())
        .count()
}

#[tokio::test]
async fn flows_a_stopped_process_left_are_finished_once() {
    let LoginEnv { h, dir: _dir } =
        start_with_args(FakeKiroConfig::default(), &["--login-lease-seconds", "1"]).await;
    let store: Arc<dyn Store> = Arc::clone(&h.gateway.tenancy.as_ref().unwrap().tenancy.store);
    let fake = h.fake();

    // Stored before the process stopped: found, not stored again.
    let earlier = store
        .create_account(NewAccount {
            name: "stored before the crash".into(),
            kind: kiro_layers::traits::AccountKind::KIRO,
            access_token: None,
            machine_id: None,
            client_key: None,
            auth_kind: AuthKind::Desktop,
            refresh_token: "aorPLANTED".into(),
            client_id: None,
            client_secret: None,
            profile_arn: Some(PROFILE.into()),
            sso_region: "us-east-1".into(),
            api_region: "us-east-1".into(),
            max_concurrency: None,
        })
        .await
        .unwrap();
    let refreshes = fake.stats().refreshes;
    let flow = finishing_flow(
        "planted1",
        "stored before the crash",
        Some("aorUNUSED"),
        false,
    );
    store
        .create_login_flow(flow, Duration::from_secs(1), 32)
        .await
        .unwrap();
    let done = until_final(&h, "planted1").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["account"]["id"], earlier.id);
    assert_eq!(fake.stats().refreshes, refreshes);
    assert_eq!(accounts(&h).await.len(), 1);

    // Signed in, not yet stored: the taker verifies, stores and audits it.
    let token = fake.current_refresh_token();
    let flow = finishing_flow("planted2", "stored by the taker", Some(&token), false);
    store
        .create_login_flow(flow, Duration::from_secs(1), 32)
        .await
        .unwrap();
    let done = until_final(&h, "planted2").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["account"]["name"], "stored by the taker");
    assert_eq!(done["account"]["profile_arn"], PROFILE);
    assert_eq!(fake.stats().refreshes, refreshes + 1);
    assert_eq!(accounts(&h).await.len(), 2);
    let id = done["account"]["id"].as_i64().unwrap();
    assert_eq!(audited_logins(&h, id).await, 1);
    // The ended flow keeps no secret.
    let row = store.get_login_flow("planted2").await.unwrap().unwrap();
    assert!(!row.secrets.contains(&token) && row.finished_at.is_some());

    // The pasted address was being exchanged when the process stopped: no tokens ever came.
    let flow = finishing_flow("planted3", "never stored", None, true);
    store
        .create_login_flow(flow, Duration::from_secs(1), 32)
        .await
        .unwrap();
    let done = until_final(&h, "planted3").await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["error"].as_str().unwrap().contains("start again"));
    assert_eq!(accounts(&h).await.len(), 2);
}
