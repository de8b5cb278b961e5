//! The floor for `benches/load.sh`: the least any HTTP gateway written with the same crates
//! (hyper server, hyper-util client, tokio) can do per request. It accepts any request, sends one
//! fixed `generateAssistantResponse` call upstream over a pooled keep-alive connection, and
//! streams the answer back byte for byte: no auth, no JSON, no decoding, no re-encoding.
//!
//! The load script runs it next to the gateway so the gateway's figures can be read against
//! what the machine allows at all. Not a product: nothing here is used by the gateway.
//!
//!     cargo run --release --example proxy_floor -- <listen port> <upstream base URL> <access token> <profile ARN>

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Full<Bytes>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, base, token, arn] = args.as_slice() else {
        eprintln!(
            "usage: proxy_floor <listen port> <upstream base URL> <access token> <profile ARN>"
        );
        std::process::exit(2);
    };
    let url: hyper::Uri = format!("{base}/generateAssistantResponse")
        .parse()
        .expect("upstream URL");
    let body = Bytes::from(format!(
        r#"{{"conversationState":{{"chatTriggerType":"MANUAL","conversationId":"00000000-0000-4000-8000-000000000000","currentMessage":{{"userInputMessage":{{"content":"hi","modelId":"auto","origin":"AI_EDITOR"}}}}}},"profileArn":"{arn}"}}"#
    ));
    let auth = format!("Bearer {token}");
    let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
    let port: u16 = port.parse().expect("port");
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, url, body, auth) = (client.clone(), url.clone(), body.clone(), auth.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (client, url, body, auth) =
                    (client.clone(), url.clone(), body.clone(), auth.clone());
                async move {
                    // Read the client's body as a gateway would, then forward the fixed call.
                    let _ = request.into_body().collect().await;
                    let upstream = Request::post(url)
                        .header("authorization", auth)
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .expect("request");
                    let response = match client.request(upstream).await {
                        Ok(response) => response.map(|b| b.boxed()),
                        Err(error) => Response::builder()
                            .status(502)
                            .body(
                                Full::new(Bytes::from(error.to_string()))
                                    .map_err(|never| match never {})
                                    .boxed(),
                            )
                            .expect("response"),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
