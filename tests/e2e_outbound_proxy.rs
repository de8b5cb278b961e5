//! Behind an outbound proxy: with `HTTP_PROXY` set in the gateway's environment, its calls to
//! Kiro (token refresh and chat) go through the proxy; without it, none does and chat takes the
//! direct client. A real gateway process, a forward proxy and the fake upstream, all on loopback.

mod common;
mod process_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::chat;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kiro_gateway::fake_kiro::FakeKiroConfig;
use process_support::*;

type Seen = Arc<Mutex<Vec<String>>>;

/// A plain-HTTP forward proxy: notes the path of every request (they arrive in absolute form),
/// forwards it and streams the answer back.
async fn start_forward_proxy() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let noted = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (client, noted) = (client.clone(), Arc::clone(&noted));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (client, noted) = (client.clone(), Arc::clone(&noted));
                    async move {
                        noted.lock().unwrap().push(request.uri().path().to_owned());
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let forwarded = Request::from_parts(parts, Full::new(body));
                        let answer: Response<BoxBody<Bytes, hyper::Error>> =
                            match client.request(forwarded).await {
                                Ok(response) => response.map(|b| b.boxed()),
                                Err(_) => Response::builder()
                                    .status(502)
                                    .body(Full::new(Bytes::new()).map_err(|n| match n {}).boxed())
                                    .unwrap(),
                            };
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// The content of an OpenAI SSE answer, deltas joined.
fn streamed_text(body: &str) -> String {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiro_calls_go_through_the_proxy_exactly_when_one_is_set() {
    let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
        .await
        .unwrap();
    let (proxy, seen) = start_forward_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    for via_proxy in [true, false] {
        seen.lock().unwrap().clear();
        let env = if via_proxy {
            vec![("HTTP_PROXY", format!("http://{proxy}"))]
        } else {
            Vec::new()
        };
        let args = fake_account_args(&fake);
        let gateway = GatewayProcess::start_with_env(dir.path(), "none", &args, &env).await;
        for stream in [false, true] {
            let response = gateway
                .http
                .post(gateway.url("/v1/chat/completions"))
                .bearer_auth("process-test-proxy-key")
                .json(&chat(
                    "claude-sonnet-4.5",
                    "hello through the proxy",
                    stream,
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{}", gateway.log());
            let body = response.text().await.unwrap();
            let text = if stream { streamed_text(&body) } else { body };
            assert!(text.contains("hello through the proxy"), "{text}");
        }
        let seen = seen.lock().unwrap().clone();
        let chats = seen
            .iter()
            .filter(|path| path.as_str() == "/generateAssistantResponse")
            .count();
        if via_proxy {
            assert_eq!(chats, 2, "every chat call goes through the proxy: {seen:?}");
            assert!(
                gateway.log().contains("HTTP_PROXY is set"),
                "{}",
                gateway.log()
            );
        } else {
            assert!(seen.is_empty(), "no proxy configured, yet it saw {seen:?}");
        }
    }
}
