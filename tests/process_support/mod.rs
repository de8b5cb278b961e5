//! A real gateway process (the `kiro-gateway` binary, as operators run it) in front of the fake
//! Kiro upstream running in the test process, on a database the test can open afterwards
//! through the same store API the gateway uses.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kiro_gateway::fake_kiro::FakeKiroHandle;
use kiro_gateway::store::Secret;
use kiro_layers::store::Store;
use serde_json::Value;

/// The root admin key of every process started here.
pub const ROOT: &str = "root-admin-key";

/// The options pointing a gateway at `fake` (URLs only: no account).
pub fn upstream_args(fake: &FakeKiroHandle) -> Vec<String> {
    let base = fake.base_url();
    [
        "--kiro-api-url",
        "--kiro-desktop-auth-url",
        "--kiro-oidc-url",
    ]
    .into_iter()
    .flat_map(|flag| [flag.to_owned(), base.clone()])
    .collect()
}

/// The options pointing a gateway at `fake` with `fake`'s refresh token as its one account.
pub fn fake_account_args(fake: &FakeKiroHandle) -> Vec<String> {
    let mut args = upstream_args(fake);
    args.extend(env_account_args(fake));
    args
}

/// The options adding `fake`'s refresh token as the environment account.
pub fn env_account_args(fake: &FakeKiroHandle) -> Vec<String> {
    vec![
        "--refresh-token".into(),
        fake.config().refresh_token.clone(),
        "--profile-arn".into(),
        "arn:aws:codewhisperer:us-east-1:123456789012:profile/TESTPROFILE".into(),
    ]
}

/// A running `kiro-gateway serve`; killed (by its pid) when dropped.
pub struct GatewayProcess {
    child: tokio::process::Child,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub database_url: String,
    pub key_file: PathBuf,
    log: PathBuf,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl GatewayProcess {
    /// Starts the binary on a free loopback port with `database_url`, the root admin key, a
    /// key file in `dir` and `extra` options, and waits until `/health` answers.
    pub async fn start(dir: &Path, database_url: &str, extra: &[String]) -> Self {
        Self::start_with_env(dir, database_url, extra, &[]).await
    }

    /// [`GatewayProcess::start`] with these environment variables set as well.
    pub async fn start_with_env(
        dir: &Path,
        database_url: &str,
        extra: &[String],
        env: &[(&str, String)],
    ) -> Self {
        let key_file = dir.join("secret.key");
        let log = dir.join(format!("gateway-{}.log", uuid::Uuid::new_v4().simple()));
        let port = free_port();
        let mut args: Vec<String> = [
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--proxy-api-key",
            "process-test-proxy-key",
            "--admin-api-key",
            ROOT,
            "--database-url",
            database_url,
            "--secret-key-file",
            key_file.to_str().unwrap(),
            "--log-level",
            "info",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().cloned());
        let output = std::fs::File::create(&log).unwrap();
        // A clean environment and working directory: no `.env`, no DATABASE_URL or keys of
        // the machine running the tests.
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiro-gateway"))
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .expect("the kiro-gateway binary starts");
        let mut process = GatewayProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            http: reqwest::Client::new(),
            database_url: database_url.to_owned(),
            key_file,
            log,
        };
        process.wait_healthy().await;
        process
    }

    async fn wait_healthy(&mut self) {
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the gateway exited at start-up ({status}):\n{}", self.log());
            }
            let health = self.http.get(self.url("/health")).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway never became healthy:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, as systemd or Kubernetes do to stop it.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGKILL: the process dies at once, as on a crash or an out-of-memory kill.
    pub fn kill(&self) {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -KILL failed");
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("the gateway did not exit within {limit:?}:\n{}", self.log()),
        }
    }

    /// The gateway's database, opened with its secret.
    pub async fn store(&self) -> Arc<dyn Store> {
        let (secret, _) = Secret::load(&self.key_file).unwrap();
        kiro_gateway::store::open(&self.database_url, &secret)
            .await
            .unwrap()
    }

    /// A JSON call: status and body (a string body when it is not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// A call that must answer 200.
    pub async fn ok(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, key, body).await;
        assert_eq!(status, 200, "{method} {path}: {value}");
        value
    }

    /// Creates a user and an inference key for it with `quota_limit` (None = unlimited):
    /// (key id, key).
    pub async fn user_key(&self, name: &str, quota_limit: Option<i64>) -> (i64, String) {
        let user = serde_json::json!({ "name": name });
        let user = self.ok("POST", "/admin/users", ROOT, Some(user)).await;
        let body = serde_json::json!({
            "kind": "inference", "user_id": user["user"]["id"], "quota_limit": quota_limit,
        });
        let key = self.ok("POST", "/admin/keys", ROOT, Some(body)).await;
        (
            key["api_key"]["id"].as_i64().unwrap(),
            key["key"].as_str().unwrap().to_owned(),
        )
    }
}

/// A database URL per backend: a SQLite file in `dir`, and a fresh PostgreSQL database when
/// `TEST_DATABASE_URL` is set.
pub async fn backend_urls(dir: &Path) -> Vec<(&'static str, String)> {
    let mut urls = vec![(
        "sqlite",
        format!("sqlite://{}", dir.join("gateway.db").display()),
    )];
    if let Ok(admin) = std::env::var("TEST_DATABASE_URL") {
        if !admin.is_empty() {
            urls.push(("postgres", pg::fresh_pg_database(&admin).await));
        }
    }
    urls
}

#[path = "../store_support/pg.rs"]
mod pg;
#[allow(unused_imports)]
pub use pg::fresh_pg_database;
