//! Refresh flows against a local scripted auth server (axum on 127.0.0.1:0): request shapes,
//! single-flight, coalescing, error mapping, region separation and write-back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use chrono::{TimeDelta, Utc};
use kiro_gateway::credentials::KiroCliStore;
use kiro_layers::kiro::auth::{
    CredentialStore, Endpoints, JsonFileStore, MemoryStore, RefreshingCredential, TokenSet,
};
use serde_json::{json, Value};

const FINGERPRINT: &str = "f00dfeed";

/// One request the auth server saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

type Reply = Arc<dyn Fn(&Seen) -> (StatusCode, Value) + Send + Sync>;

struct AuthServer {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    hits: Arc<AtomicUsize>,
}

impl AuthServer {
    async fn start(delay: Duration, reply: Reply) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (seen_in, hits_in) = (Arc::clone(&seen), Arc::clone(&hits));
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (seen, hits, reply) = (
                Arc::clone(&seen_in),
                Arc::clone(&hits_in),
                Arc::clone(&reply),
            );
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                let request = Seen {
                    path: uri.path().to_string(),
                    headers,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                };
                seen.lock().unwrap().push(request.clone());
                tokio::time::sleep(delay).await;
                let (status, body) = reply(&request);
                (
                    status,
                    [("content-type", "application/json")],
                    body.to_string(),
                )
                    .into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        AuthServer { base, seen, hits }
    }

    fn endpoints(&self) -> Endpoints {
        Endpoints {
            desktop_auth_url: format!("{}/desktop/{{region}}", self.base),
            oidc_url: format!("{}/oidc/{{region}}", self.base),
            api_url: "https://runtime.{region}.kiro.test".to_string(),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The real desktop refresh 200 body from the captures (tokens redacted there too).
fn captured_desktop_answer() -> Value {
    json!({
        "accessToken": "aoaAAAAAREDACTED_KIRO_ACCESS_TOKEN",
        "expiresIn": 3600,
        "profileArn": "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK",
        "refreshToken": "aorAAAAAREDACTED_KIRO_REFRESH_TOKEN"
    })
}

fn ok(body: Value) -> Reply {
    Arc::new(move |_| (StatusCode::OK, body.clone()))
}

fn credential(
    server: &AuthServer,
    store: Arc<dyn CredentialStore>,
    api_region_override: Option<&str>,
) -> Arc<RefreshingCredential> {
    Arc::new(RefreshingCredential::new(
        "acct-1".into(),
        store,
        server.endpoints(),
        "us-east-1".into(),
        api_region_override.map(str::to_owned),
        None,
        reqwest::Client::new(),
        FINGERPRINT.into(),
    ))
}

fn memory(refresh: &str, access: Option<&str>, expires_in_secs: Option<i64>) -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(TokenSet {
        refresh_token: refresh.into(),
        access_token: access.map(str::to_owned),
        expires_at: expires_in_secs.map(|s| Utc::now() + TimeDelta::seconds(s)),
        ..TokenSet::default()
    }))
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiro-cred-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn desktop_refresh_sends_the_documented_request_and_rotates() {
    let server = AuthServer::start(Duration::ZERO, ok(captured_desktop_answer())).await;
    let store = memory("rt-original", None, None);
    let cred = credential(&server, store.clone(), None);

    let ready = cred.current().await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/desktop/us-east-1/refreshToken");
    assert_eq!(seen[0].body, json!({"refreshToken": "rt-original"}));
    assert_eq!(
        seen[0].headers["user-agent"],
        format!("KiroIDE-0.7.45-{FINGERPRINT}")
    );
    assert_eq!(seen[0].headers["content-type"], "application/json");

    assert_eq!(ready.access_token, "aoaAAAAAREDACTED_KIRO_ACCESS_TOKEN");
    assert_eq!(
        ready.profile_arn.as_deref(),
        Some("arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK")
    );
    assert_eq!(ready.api_base, "https://runtime.us-east-1.kiro.test");
    assert_eq!(ready.account_id, "acct-1");
    assert_eq!(ready.fingerprint, FINGERPRINT);
    assert_eq!(cred.refresh_count(), 1);

    // Rotated token written back; expiry is now + 3600 - 60.
    let stored = store.load().await.unwrap();
    assert_eq!(stored.refresh_token, "aorAAAAAREDACTED_KIRO_REFRESH_TOKEN");
    let left = (stored.expires_at.unwrap() - Utc::now()).num_seconds();
    assert!((3530..=3540).contains(&left), "expires in {left}s");

    // Fresh now: no second refresh.
    cred.current().await.unwrap();
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn oidc_refresh_uses_sso_region_for_the_url_and_arn_region_for_the_api() {
    let server = AuthServer::start(
        Duration::ZERO,
        ok(json!({"accessToken": "new-access", "expiresIn": 1800, "tokenType": "Bearer"})),
    )
    .await;
    let dir = temp_dir();
    let path = dir.join("kiro-auth-token.json");
    std::fs::write(
        &path,
        json!({
            "refreshToken": "oidc-refresh", "accessToken": "old-access",
            "expiresAt": "2020-01-01T00:00:00.000Z", "clientId": "client-1",
            "clientSecret": "client-secret-1", "region": "eu-west-1",
            "profileArn": "arn:aws:codewhisperer:us-east-1:111122223333:profile/P1",
            "authMethod": "IdC", "provider": "Enterprise"
        })
        .to_string(),
    )
    .unwrap();
    let cred = credential(&server, Arc::new(JsonFileStore::new(&path)), None);

    let ready = cred.current().await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/oidc/eu-west-1/token");
    assert_eq!(
        seen[0].body,
        json!({"grantType": "refresh_token", "clientId": "client-1",
               "clientSecret": "client-secret-1", "refreshToken": "oidc-refresh"})
    );
    assert_eq!(seen[0].headers["content-type"], "application/json");
    assert!(!seen[0]
        .headers
        .get("user-agent")
        .is_some_and(|ua| ua.to_str().unwrap().contains("KiroIDE")));

    assert_eq!(ready.access_token, "new-access");
    // SSO region eu-west-1 refreshes; the API goes where the profile lives.
    assert_eq!(ready.api_base, "https://runtime.us-east-1.kiro.test");

    // Write-back: new access token, old refresh token (not rotated), unknown fields kept.
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(saved["accessToken"], "new-access");
    assert_eq!(saved["refreshToken"], "oidc-refresh");
    assert_eq!(saved["authMethod"], "IdC");
    assert_eq!(saved["provider"], "Enterprise");
    assert!(saved["expiresAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn api_region_override_beats_detection_and_sso_region_is_the_fallback() {
    let server = AuthServer::start(Duration::ZERO, ok(json!({"accessToken": "a"}))).await;
    let tokens = TokenSet {
        refresh_token: "r".into(),
        sso_region: Some("eu-central-1".into()),
        profile_arn: Some("arn:aws:codewhisperer:us-east-1:1:profile/X".into()),
        ..TokenSet::default()
    };
    let overridden = credential(
        &server,
        Arc::new(MemoryStore::new(tokens.clone())),
        Some("eu-central-1"),
    );
    assert_eq!(
        overridden.current().await.unwrap().api_base,
        "https://runtime.eu-central-1.kiro.test"
    );

    let no_arn = TokenSet {
        profile_arn: None,
        ..tokens
    };
    let fallback = credential(&server, Arc::new(MemoryStore::new(no_arn)), None);
    let ready = fallback.current().await.unwrap();
    assert_eq!(ready.api_base, "https://runtime.eu-central-1.kiro.test");
    assert_eq!(ready.profile_arn, None);
    assert!(server
        .seen()
        .iter()
        .all(|s| s.path == "/desktop/eu-central-1/refreshToken"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_callers_cause_exactly_one_refresh() {
    let server = AuthServer::start(Duration::from_millis(150), ok(captured_desktop_answer())).await;
    // Expires in 5 minutes: inside the 10-minute threshold, so every caller wants a refresh.
    let cred = credential(&server, memory("rt", Some("old-access"), Some(300)), None);

    let callers: Vec<_> = (0..100)
        .map(|_| {
            let cred = Arc::clone(&cred);
            tokio::spawn(async move { cred.current().await })
        })
        .collect();
    for caller in callers {
        let ready = caller.await.unwrap().unwrap();
        assert_eq!(ready.access_token, "aoaAAAAAREDACTED_KIRO_ACCESS_TOKEN");
    }
    assert_eq!(server.hits(), 1);
    assert_eq!(cred.refresh_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_force_refreshes_coalesce() {
    let counter = Arc::new(AtomicUsize::new(0));
    let counter_in = Arc::clone(&counter);
    let reply: Reply = Arc::new(move |_| {
        let n = counter_in.fetch_add(1, Ordering::SeqCst) + 1;
        (
            StatusCode::OK,
            json!({"accessToken": format!("access-{n}"), "expiresIn": 3600}),
        )
    });
    let server = AuthServer::start(Duration::from_millis(200), reply).await;
    let cred = credential(&server, memory("rt", Some("fresh"), Some(3000)), None);
    assert_eq!(cred.current().await.unwrap().access_token, "fresh");
    assert_eq!(server.hits(), 0, "a fresh token needs no refresh");

    let callers: Vec<_> = (0..20)
        .map(|_| {
            let cred = Arc::clone(&cred);
            tokio::spawn(async move { cred.force_refresh().await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap().access_token, "access-1");
    }
    assert_eq!(server.hits(), 1);

    // A later 403 gets its own refresh.
    assert_eq!(cred.force_refresh().await.unwrap().access_token, "access-2");
    assert_eq!(cred.refresh_count(), 2);
}

#[tokio::test]
async fn oidc_invalid_grant_says_log_in_again_without_leaking_the_token() {
    // The server echoes the token back, as a careless service might.
    let reply: Reply = Arc::new(|seen| {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "Invalid refresh token provided",
                   "echo": seen.body["refreshToken"]}),
        )
    });
    let server = AuthServer::start(Duration::ZERO, reply).await;
    let store = Arc::new(MemoryStore::new(TokenSet {
        refresh_token: "dead-refresh-token-123".into(),
        client_id: Some("cid".into()),
        client_secret: Some("csecret-456".into()),
        ..TokenSet::default()
    }));
    let cred = credential(&server, store, None);

    let err = cred.current().await.unwrap_err();
    assert_eq!(err.upstream_reason(), Some("invalid_grant"));
    assert!(err.message().contains("Log in again"), "{}", err.message());
    for shown in [
        err.message().to_string(),
        format!("{err:?}"),
        err.to_string(),
    ] {
        assert!(!shown.contains("dead-refresh-token-123"), "{shown}");
        assert!(!shown.contains("csecret-456"), "{shown}");
    }
    assert!(
        err.status().is_server_error(),
        "an account problem is not the client's fault"
    );
}

#[tokio::test]
async fn desktop_invalid_refresh_token_maps_to_invalid_grant() {
    let server = AuthServer::start(
        Duration::ZERO,
        Arc::new(|_| {
            (
                StatusCode::UNAUTHORIZED,
                json!({"message": "Invalid refresh token provided"}),
            )
        }),
    )
    .await;
    let cred = credential(&server, memory("desktop-dead-token", None, None), None);
    let err = cred.current().await.unwrap_err();
    assert_eq!(err.upstream_reason(), Some("invalid_grant"));
    assert!(
        err.message().contains("REFRESH_TOKEN"),
        "names where to fix it: {}",
        err.message()
    );
    assert!(!format!("{err:?}").contains("desktop-dead-token"));
}

#[tokio::test]
async fn a_still_valid_token_survives_a_failed_refresh() {
    let server = AuthServer::start(
        Duration::ZERO,
        Arc::new(|_| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"message": "boom"}),
            )
        }),
    )
    .await;
    // 5 minutes left: refresh is due but the token still works.
    let cred = credential(&server, memory("rt", Some("still-good"), Some(300)), None);
    assert_eq!(cred.current().await.unwrap().access_token, "still-good");
    assert_eq!(cred.refresh_count(), 0);
    // The failure is remembered for a while instead of hammering the auth service.
    assert_eq!(cred.current().await.unwrap().access_token, "still-good");
    assert_eq!(server.hits(), 1);

    // An expired token cannot be rescued.
    let expired = credential(&server, memory("rt", Some("gone"), Some(-5)), None);
    let err = expired.current().await.unwrap_err();
    assert!(err.message().contains("HTTP 500"), "{}", err.message());
}

#[tokio::test]
async fn unreachable_auth_service_is_a_clear_upstream_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let cred = RefreshingCredential::new(
        "acct-net".into(),
        memory("net-secret-token", None, None),
        Endpoints::all_at(&format!("http://127.0.0.1:{port}")),
        "us-east-1".into(),
        None,
        None,
        reqwest::Client::new(),
        FINGERPRINT.into(),
    );
    let err = cred.current().await.unwrap_err();
    assert!(
        err.message().contains("could not reach"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("acct-net"));
    assert!(!err.message().contains("net-secret-token"));
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
}

fn cli_db(dir: &std::path::Path, token: Value) -> std::path::PathBuf {
    let path = dir.join("data.sqlite3");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch("CREATE TABLE auth_kv (key TEXT PRIMARY KEY, value TEXT);")
        .unwrap();
    connection
        .execute(
            "INSERT INTO auth_kv VALUES ('kirocli:odic:token', ?1), ('kirocli:odic:device-registration', ?2)",
            rusqlite::params![
                token.to_string(),
                json!({"client_id": "cid", "client_secret": "csec", "region": "us-east-1"}).to_string()
            ],
        )
        .unwrap();
    path
}

fn cli_token(path: &std::path::Path) -> Value {
    let text: String = rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT value FROM auth_kv WHERE key = 'kirocli:odic:token'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn kiro_cli_refresh_writes_the_rotated_token_into_its_row() {
    let server = AuthServer::start(
        Duration::ZERO,
        ok(json!({"accessToken": "cli-new", "refreshToken": "cli-rotated", "expiresIn": 3600})),
    )
    .await;
    let dir = temp_dir();
    let path = cli_db(
        &dir,
        json!({"access_token": "cli-old", "refresh_token": "cli-refresh", "region": "us-east-1",
               "expires_at": "2020-01-01T00:00:00.123456789Z", "start_url": "https://x/start"}),
    );
    let cred = credential(&server, Arc::new(KiroCliStore::new(&path, false)), None);
    assert_eq!(cred.current().await.unwrap().access_token, "cli-new");
    assert_eq!(server.seen()[0].path, "/oidc/us-east-1/token");

    let row = cli_token(&path);
    assert_eq!(row["refresh_token"], "cli-rotated");
    assert_eq!(row["access_token"], "cli-new");
    assert_eq!(row["start_url"], "https://x/start");
}

#[tokio::test]
async fn kiro_cli_is_reloaded_before_refreshing() {
    let server = AuthServer::start(Duration::ZERO, ok(json!({"accessToken": "from-server"}))).await;
    let dir = temp_dir();
    let soon = (Utc::now() + TimeDelta::seconds(120)).to_rfc3339();
    let path = cli_db(
        &dir,
        json!({"access_token": "cli-a", "refresh_token": "cli-r", "expires_at": soon}),
    );
    let cred = credential(&server, Arc::new(KiroCliStore::new(&path, true)), None);
    // First use: expiring soon, refresh at the server.
    assert_eq!(cred.current().await.unwrap().access_token, "from-server");
    assert_eq!(server.hits(), 1);

    // kiro-cli refreshes on its own; after an upstream 403 we pick its token up instead.
    let later =
        (Utc::now() + TimeDelta::seconds(7200)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE auth_kv SET value = ?1 WHERE key = 'kirocli:odic:token'",
            [json!({"access_token": "cli-fresh", "refresh_token": "cli-r2", "expires_at": later}).to_string()],
        )
        .unwrap();
    assert_eq!(
        cred.force_refresh().await.unwrap().access_token,
        "cli-fresh"
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn profile_arn_override_beats_the_stored_one() {
    let server = AuthServer::start(Duration::ZERO, ok(captured_desktop_answer())).await;
    let cred = RefreshingCredential::new(
        "acct-arn".into(),
        memory("rt", None, None),
        server.endpoints(),
        "us-east-1".into(),
        None,
        Some("arn:aws:codewhisperer:eu-central-1:444455556666:profile/OVERRIDE".into()),
        reqwest::Client::new(),
        FINGERPRINT.into(),
    );
    let ready = cred.current().await.unwrap();
    assert_eq!(
        ready.profile_arn.as_deref(),
        Some("arn:aws:codewhisperer:eu-central-1:444455556666:profile/OVERRIDE")
    );
    // The API region follows the ARN actually sent.
    assert_eq!(ready.api_base, "https://runtime.eu-central-1.kiro.test");
}

#[tokio::test]
async fn a_200_without_access_token_is_an_error() {
    let server = AuthServer::start(Duration::ZERO, ok(json!({"expiresIn": 3600}))).await;
    let cred = credential(&server, memory("rt", None, None), None);
    let err = cred.current().await.unwrap_err();
    assert!(
        err.message().contains("without an accessToken"),
        "{}",
        err.message()
    );
    assert_eq!(cred.refresh_count(), 0);
}

#[tokio::test]
async fn a_caller_that_goes_away_mid_refresh_does_not_lose_the_rotated_token() {
    let server = AuthServer::start(Duration::from_millis(300), ok(captured_desktop_answer())).await;
    let store = memory("rt-before", None, None);
    let cred = credential(&server, store.clone(), None);
    let caller = {
        let cred = Arc::clone(&cred);
        tokio::spawn(async move { cred.current().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    caller.abort(); // the client disconnected while the refresh was on the wire
                    // A caller arriving right away waits for the orphaned refresh instead of racing it with the
                    // old refresh token, then picks the saved token up from the store.
    assert_eq!(
        cred.current().await.unwrap().access_token,
        "aoaAAAAAREDACTED_KIRO_ACCESS_TOKEN"
    );
    assert_eq!(
        store.load().await.unwrap().refresh_token,
        "aorAAAAAREDACTED_KIRO_REFRESH_TOKEN"
    );
    assert_eq!(server.hits(), 1);
}
