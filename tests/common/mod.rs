//! Shared harness of the end-to-end tests: the real gateway (routes, server, layers) on a
//! loopback port in front of the fake Kiro upstream.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kiro_gateway::app::{assemble, Gateway};
use kiro_gateway::config::{Cli, Command, ServeArgs};
use kiro_gateway::fake_kiro::{FakeKiroConfig, FakeKiroHandle};
use kiro_layers::usage::MemoryUsageSink;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const KEY: &str = "e2e-test-key";

pub struct Harness {
    pub fake: Option<FakeKiroHandle>,
    pub addr: SocketAddr,
    pub usage: MemoryUsageSink,
    pub gateway: Gateway,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Parses `serve` arguments the way the binary does, ignoring the test process's environment
/// for the options that matter.
pub fn serve_args(extra: &[&str]) -> ServeArgs {
    let mut argv = vec![
        "kiro-gateway",
        "serve",
        "--proxy-api-key",
        KEY,
        "--log-level",
        "warn",
        // No database unless a test asks for one (a later --database-url overrides this).
        "--database-url",
        "none",
    ];
    argv.extend_from_slice(extra);
    let Command::Serve(args) = Cli::try_parse_from(argv)
        .expect("valid test arguments")
        .command
    else {
        panic!("serve arguments expected")
    };
    *args
}

/// Starts the fake with `config`, then a gateway whose one account is a refresh token the fake
/// accepts.
pub async fn start_with(config: FakeKiroConfig, extra: &[&str]) -> Harness {
    let refresh_token = config.refresh_token.clone();
    let fake = kiro_gateway::fake_kiro::start(config)
        .await
        .expect("fake upstream starts");
    let base = fake.base_url();
    let mut argv: Vec<String> = vec![
        "--refresh-token".into(),
        refresh_token,
        "--profile-arn".into(),
        "arn:aws:codewhisperer:us-east-1:123456789012:profile/TESTPROFILE".into(),
        "--kiro-api-url".into(),
        base.clone(),
        "--kiro-desktop-auth-url".into(),
        base.clone(),
        "--kiro-oidc-url".into(),
        base,
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut harness = start_gateway(serve_args(&argv)).await;
    harness.fake = Some(fake);
    harness
}

pub async fn start() -> Harness {
    start_with(FakeKiroConfig::default(), &[]).await
}

/// Starts a gateway from `args` on 127.0.0.1:0.
pub async fn start_gateway(args: ServeArgs) -> Harness {
    let usage = MemoryUsageSink::default();
    let gateway = assemble(&args, Arc::new(usage.clone()))
        .await
        .expect("gateway assembles");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let router = gateway.router.clone();
    let task = tokio::spawn(async move {
        kiro_gateway::server::serve(
            listener,
            router,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    });
    Harness {
        fake: None,
        addr,
        usage,
        gateway,
        http: reqwest::Client::new(),
        stop: Some(stop),
        task: Some(task),
    }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn fake(&self) -> &FakeKiroHandle {
        self.fake
            .as_ref()
            .expect("this harness has a fake upstream")
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Waits until every lease is back and `n` usage records exist (they are written when the
    /// response stream is dropped, which can trail the client's last read a little).
    pub async fn settle(&self, records: usize) {
        for _ in 0..200 {
            if self.gateway.pool.in_flight() == 0 && self.usage.records().len() >= records {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "did not settle: in_flight={} records={}",
            self.gateway.pool.in_flight(),
            self.usage.records().len()
        );
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Parses an OpenAI SSE body into its `data:` JSON payloads; checks the `[DONE]` terminator.
pub fn openai_sse(body: &str) -> (Vec<serde_json::Value>, bool) {
    let mut chunks = Vec::new();
    let mut done = false;
    for event in body.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = event
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("SSE event without data: {event:?}"));
        if data == "[DONE]" {
            done = true;
        } else {
            chunks.push(
                serde_json::from_str(data).unwrap_or_else(|e| panic!("bad SSE JSON {data:?}: {e}")),
            );
        }
    }
    (chunks, done)
}

/// The concatenated `delta.content` of OpenAI chunks.
pub fn openai_text(chunks: &[serde_json::Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// The `finish_reason` of the chunk that has one.
pub fn openai_finish(chunks: &[serde_json::Value]) -> Option<String> {
    chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str().map(str::to_owned))
}

pub fn chat(model: &str, text: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
}
