//! Two real gateway processes (the `kiro-gateway` binary) on one database behind an imagined
//! load balancer, in front of the fake Kiro: a sign-in started on A is shown, waited on,
//! continued (an Identity Center profile choice, a pasted address) and cancelled on B; when A is killed while
//! its flow waits for the user, B takes the flow over once A's lease lapses and stores the
//! account, verified with one refresh and audited, exactly once; when B is stopped with
//! SIGTERM it hands its flow over and a third process finishes it.
//!
//! PostgreSQL (`TEST_DATABASE_URL`) is the deployment this is for; a SQLite file shared by
//! both processes is checked too. Under CI a missing PostgreSQL is a failure, not a skip.

mod limits_support;
mod process_support;

use std::time::Duration;

use kiro_gateway::fake_kiro::{FakeKiroConfig, FakeKiroHandle, FAKE_IDC_PROFILES};
use limits_support::{new_pg_database, server_url};
use process_support::*;
use serde_json::{json, Value};

/// The lease the processes hold their flows for: short, so the takeover comes quickly.
const LEASE_SECONDS: &str = "2";

/// Every upstream and sign-in URL at the fake, and the short lease.
fn args(fake: &FakeKiroHandle) -> Vec<String> {
    let base = fake.base_url();
    let mut args = upstream_args(fake);
    args.extend([
        "--kiro-profiles-url".to_owned(),
        base.clone(),
        "--kiro-signin-url".to_owned(),
        format!("{base}/signin"),
        "--login-lease-seconds".to_owned(),
        LEASE_SECONDS.to_owned(),
    ]);
    args
}

async fn start_flow(gw: &GatewayProcess, body: Value) -> Value {
    gw.ok("POST", "/admin/accounts/login/start", ROOT, Some(body))
        .await["login"]
        .clone()
}

async fn status(gw: &GatewayProcess, id: &str) -> Value {
    gw.ok("GET", &format!("/admin/accounts/login/{id}"), ROOT, None)
        .await["login"]
        .clone()
}

/// Long-polls flow `id` on `gw` until its status is one of `wanted`.
async fn follow(gw: &GatewayProcess, id: &str, wanted: &[&str]) -> Value {
    let mut version = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let path = format!("/admin/accounts/login/{id}?wait=5&version={version}");
        let view = gw.ok("GET", &path, ROOT, None).await["login"].clone();
        version = view["version"].as_u64().unwrap();
        if wanted.contains(&view["status"].as_str().unwrap()) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flow {id} never reached {wanted:?}: {view}\n{}",
            gw.log()
        );
    }
}

const FINAL: [&str; 5] = ["succeeded", "expired", "denied", "failed", "cancelled"];

async fn accounts(gw: &GatewayProcess) -> Vec<Value> {
    gw.ok("GET", "/admin/accounts", ROOT, None).await["data"]
        .as_array()
        .unwrap()
        .clone()
}

/// Audit entries of `action` on object `object_id`.
async fn audited(gw: &GatewayProcess, action: &str, object_id: &str) -> usize {
    let audit = gw.ok("GET", "/admin/audit?limit=500", ROOT, None).await;
    audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action && e["object_id"].as_str() == Some(object_id))
        .count()
}

async fn sign_in_across_two_processes(backend: &str, url: &str) {
    eprintln!("two gateways signing in on {backend}");
    let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = GatewayProcess::start(dir.path(), url, &args(&fake)).await;
    let mut b = GatewayProcess::start(dir.path(), url, &args(&fake)).await;

    // Identity Center with several profiles: started on A, followed and chosen on B.
    let started = start_flow(
        &a,
        json!({
            "method": "identity-center",
            "start_url": "https://d-fake.awsapps.com/start?fake=several-profiles",
            "region": "eu-west-1",
            "name": "shared idc",
        }),
    )
    .await;
    let idc = started["id"].as_str().unwrap().to_owned();
    let on_b = status(&b, &idc).await;
    assert_eq!(on_b["status"], "pending", "{on_b}");
    assert_eq!(on_b["user_code"], started["user_code"]);
    assert!(fake.approve_device(started["user_code"].as_str().unwrap()));
    let choice = follow(&b, &idc, &["needs_profile_choice", FINAL[0], FINAL[4]]).await;
    assert_eq!(choice["status"], "needs_profile_choice", "{choice}");
    assert_eq!(
        choice["profiles"].as_array().unwrap().len(),
        FAKE_IDC_PROFILES.len()
    );
    let chosen = FAKE_IDC_PROFILES[1].0;
    let path = format!("/admin/accounts/login/{idc}/profile");
    b.ok("POST", &path, ROOT, Some(json!({ "profile_arn": chosen })))
        .await;
    // A second choice, on A, is refused: the first one is being stored.
    let (again, _) = a
        .call("POST", &path, ROOT, Some(json!({ "profile_arn": chosen })))
        .await;
    assert_eq!(again, 409);
    let done = follow(&b, &idc, &FINAL).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["account"]["profile_arn"], chosen);
    assert_eq!(status(&a, &idc).await["account"]["name"], "shared idc");

    // The paste fallback: started on A, the address the browser ended on pasted on B.
    let started = start_flow(&a, json!({ "method": "social-redirect", "name": "pasted" })).await;
    let pasted_id = started["id"].as_str().unwrap().to_owned();
    let callback = fake
        .complete_portal_sign_in(started["sign_in_url"].as_str().unwrap(), "github")
        .unwrap();
    let path = format!("/admin/accounts/login/{pasted_id}/redirect");
    let done = b
        .ok("POST", &path, ROOT, Some(json!({ "url": callback })))
        .await["login"]
        .clone();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["account"]["name"], "pasted");
    let (again, _) = a
        .call("POST", &path, ROOT, Some(json!({ "url": callback })))
        .await;
    assert_eq!(again, 409);

    // Cancelled on B: A stops polling it, and approving the code adds no account.
    let started = start_flow(&a, json!({ "method": "builder-id", "name": "never" })).await;
    let cancelled_id = started["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/accounts/login/{cancelled_id}/cancel");
    let cancelled = b.ok("POST", &path, ROOT, None).await;
    assert_eq!(cancelled["login"]["status"], "cancelled");
    fake.approve_device(started["user_code"].as_str().unwrap());
    assert_eq!(
        follow(&a, &cancelled_id, &FINAL).await["status"],
        "cancelled"
    );

    // A is killed while its flow waits for the user: B takes it over when the lease lapses.
    let started = start_flow(&a, json!({ "method": "builder-id", "name": "survivor" })).await;
    let orphan = started["id"].as_str().unwrap().to_owned();
    let polls = fake.device_polls();
    while fake.device_polls() == polls {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill();
    assert!(fake.approve_device(started["user_code"].as_str().unwrap()));
    let refreshes = fake.stats().refreshes;
    let done = follow(&b, &orphan, &FINAL).await;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", b.log());
    assert_eq!(done["account"]["name"], "survivor");
    assert!(b.log().contains("taking over a sign-in"), "{}", b.log());
    // Verified with one refresh, stored and audited once.
    assert_eq!(fake.stats().refreshes, refreshes + 1);
    let listed = accounts(&b).await;
    let names: Vec<&str> = listed
        .iter()
        .map(|a| a["account"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "survivor").count(),
        1,
        "{names:?}"
    );
    assert!(!names.contains(&"never"), "{names:?}");
    let account_id = done["account"]["id"].as_i64().unwrap().to_string();
    assert_eq!(audited(&b, "login", &account_id).await, 1);

    // B is stopped the orderly way (SIGTERM) mid-flow: it hands its flow over as it exits,
    // and a third process finishes it.
    let c = GatewayProcess::start(dir.path(), url, &args(&fake)).await;
    let started = start_flow(&b, json!({ "method": "builder-id", "name": "handed over" })).await;
    let handed = started["id"].as_str().unwrap().to_owned();
    let polls = fake.device_polls();
    while fake.device_polls() == polls {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.terminate();
    assert!(
        b.wait(Duration::from_secs(30)).await.success(),
        "{}",
        b.log()
    );
    assert!(
        b.log().contains("handed unfinished sign-ins over"),
        "{}",
        b.log()
    );
    assert!(fake.approve_device(started["user_code"].as_str().unwrap()));
    let done = follow(&c, &handed, &FINAL).await;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", c.log());
    assert_eq!(done["account"]["name"], "handed over");

    // No secret in any process's log.
    for log in [a.log(), b.log(), c.log()] {
        assert!(!log.contains(&fake.config().refresh_token) && !log.contains("aorFAKELOGIN"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_is_shared_by_two_processes_on_postgres() {
    let Some(admin) = server_url("TEST_DATABASE_URL", "PostgreSQL") else {
        return;
    };
    let url = new_pg_database(&admin).await;
    sign_in_across_two_processes("postgres", &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_is_shared_by_two_processes_on_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    sign_in_across_two_processes("sqlite", &url).await;
}
