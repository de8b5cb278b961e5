//! The floor for `benches/load.sh`: the least any HTTP gateway written with the same crates
//! (hyper server, hyper-util client, tokio) can do per request. It accepts any request, sends one
//! fixed `generateAssistantResponse` call upstream over a pooled keep-alive connection, and
//! streams the answer back byte for byte: no auth, no JSON, no decoding, no re-encoding.
//!
//! The load script runs it next to the gateway so the gateway's figures can be read against
//! what the machine allows at all. With `FLOOR_CLIENT=reqwest` it sends the call with reqwest
//! instead, which is how the cost of reqwest itself was measured. Not a product: nothing here is
//! used by the gateway.
//!
//!     cargo run --release --example proxy_floor -- <listen port> <upstream base URL> <access token> <profile ARN>

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// The upstream call, sent with one client or the other.
#[derive(Clone)]
struct Upstream {
    hyper: Client<HttpConnector, Full<Bytes>>,
    reqwest: Option<reqwest::Client>,
    url: String,
    body: Bytes,
    auth: String,
}

impl Upstream {
    async fn call(&self) -> Result<Response<Body>, BoxError> {
        if let Some(client) = &self.reqwest {
            let response = client
                .post(&self.url)
                .header("authorization", &self.auth)
                .header("content-type", "application/json")
                .body(self.body.clone())
                .send()
                .await?;
            let frames = response
                .bytes_stream()
                .map_ok(Frame::data)
                .map_err(|e| Box::new(e) as BoxError);
            return Ok(Response::new(BodyExt::boxed(StreamBody::new(frames))));
        }
        let request = Request::post(self.url.as_str())
            .header("authorization", &self.auth)
            .header("content-type", "application/json")
            .body(Full::new(self.body.clone()))?;
        let response = self.hyper.request(request).await?;
        Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed()))
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, base, token, arn] = args.as_slice() else {
        eprintln!(
            "usage: proxy_floor <listen port> <upstream base URL> <access token> <profile ARN>"
        );
        std::process::exit(2);
    };
    let reqwest = (std::env::var("FLOOR_CLIENT").as_deref() == Ok("reqwest")).then(|| {
        reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .expect("reqwest client")
    });
    let upstream = Upstream {
        hyper: Client::builder(TokioExecutor::new()).build_http(),
        reqwest,
        url: format!("{base}/generateAssistantResponse"),
        body: Bytes::from(format!(
            r#"{{"conversationState":{{"chatTriggerType":"MANUAL","conversationId":"00000000-0000-4000-8000-000000000000","currentMessage":{{"userInputMessage":{{"content":"hi","modelId":"auto","origin":"AI_EDITOR"}}}}}},"profileArn":"{arn}"}}"#
        )),
        auth: format!("Bearer {token}"),
    };
    let port: u16 = port.parse().expect("port");
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let upstream = upstream.clone();
                async move {
                    // Read the client's body as a gateway would, then forward the fixed call.
                    let _ = request.into_body().collect().await;
                    let response = upstream.call().await.unwrap_or_else(|error| {
                        let text = Full::new(Bytes::from(error.to_string()));
                        let mut response = Response::new(text.map_err(|n| match n {}).boxed());
                        *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                        response
                    });
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
