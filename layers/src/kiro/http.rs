//! The HTTP client that sends `generateAssistantResponse` calls.
//!
//! Two ways, one interface ([`UpstreamClient::post`]):
//! - [`UpstreamClient::direct`]: hyper-util's pooled client with rustls (HTTP/1.1, HTTP/2 by
//!   ALPN, or h2c with prior knowledge; see [`super::lanes`] for how answers share HTTP/2
//!   connections) and nothing else. Measured with `examples/proxy_floor.rs`, it costs about 40 µs less
//!   CPU per streamed request than reqwest (redirect and retry layers, a second URL parse, body
//!   and error wrappers), on a request path that costs a few hundred.
//! - [`UpstreamClient::Reqwest`]: reqwest, which honours `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`
//!   and `NO_PROXY`. [`UpstreamClient::for_environment`] picks it whenever one of those is set,
//!   so a gateway behind a corporate proxy keeps working exactly as before.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{HeaderMap, StatusCode, Uri};
use http_body_util::{BodyDataStream, Full};

use super::lanes::{DirectOptions, Lanes};

/// A response body: chunks as they are read, or the reason reading stopped.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// What came back from one call.
pub struct UpstreamResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body, streamed.
    pub body: BodyStream,
}

/// Why a call got no response at all.
#[derive(Debug)]
pub struct TransportError {
    /// The connection could not be opened (refused, DNS, TLS handshake, connect timeout).
    pub connect: bool,
    /// What happened, for the client's error message.
    pub message: String,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// See the module docs.
#[derive(Clone)]
pub enum UpstreamClient {
    /// hyper-util with rustls, in lanes (behind an `Arc`: the service clones its client per
    /// request).
    Direct(Arc<Lanes>),
    /// reqwest (proxy support).
    Reqwest(reqwest::Client),
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpstreamClient::Direct(_) => "UpstreamClient::Direct",
            UpstreamClient::Reqwest(_) => "UpstreamClient::Reqwest",
        })
    }
}

impl From<reqwest::Client> for UpstreamClient {
    fn from(client: reqwest::Client) -> Self {
        UpstreamClient::Reqwest(client)
    }
}

/// The proxy variables reqwest reads (either case).
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

impl UpstreamClient {
    /// The direct client with the default options (HTTP/2 by ALPN, 100 answers per HTTP/2
    /// connection).
    pub fn direct() -> Self {
        UpstreamClient::direct_with(DirectOptions::default())
    }

    /// The direct client with `options`.
    pub fn direct_with(options: DirectOptions) -> Self {
        UpstreamClient::Direct(Arc::new(Lanes::new(options)))
    }

    /// `fallback` (reqwest) when a proxy variable is set, else the direct client with `options`.
    pub fn for_environment(fallback: reqwest::Client, options: DirectOptions) -> Self {
        let proxy = PROXY_VARIABLES
            .iter()
            .find(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        match proxy {
            Some(name) => {
                tracing::info!("{name} is set: Kiro calls go through the proxy (reqwest client)");
                UpstreamClient::Reqwest(fallback)
            }
            None => UpstreamClient::direct_with(options),
        }
    }

    /// POSTs `body` to `url` with `headers`; the response's body is streamed.
    pub async fn post(
        &self,
        url: &ChatUrl,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, TransportError> {
        match self {
            UpstreamClient::Direct(lanes) => {
                let ticket = lanes.take();
                let mut request = http::Request::new(Full::new(body));
                *request.method_mut() = http::Method::POST;
                *request.uri_mut() = url.uri.clone();
                *request.headers_mut() = headers;
                let response = ticket.client().request(request).await.map_err(|error| {
                    let connect = error.is_connect();
                    TransportError {
                        connect,
                        message: describe(&error, connect),
                    }
                })?;
                let (parts, body) = response.into_parts();
                Ok(UpstreamResponse {
                    status: parts.status,
                    headers: parts.headers,
                    // The answer keeps its place in the lane until its body is dropped.
                    body: Box::pin(BodyDataStream::new(body).map_err(move |e| {
                        let _held = &ticket;
                        e.to_string()
                    })),
                })
            }
            UpstreamClient::Reqwest(client) => {
                let response = client
                    .post(url.url.clone())
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .map_err(|error| TransportError {
                        connect: error.is_connect(),
                        message: if error.is_timeout() {
                            "the connection timed out".to_owned()
                        } else {
                            describe(&error, error.is_connect())
                        },
                    })?;
                Ok(UpstreamResponse {
                    status: response.status(),
                    headers: response.headers().clone(),
                    body: Box::pin(
                        response
                            .bytes_stream()
                            .map(|c| c.map_err(|e| e.to_string())),
                    ),
                })
            }
        }
    }
}

/// An error with its sources, which carry the useful part (`connection refused`, the TLS alert).
fn describe(error: &(dyn std::error::Error + 'static), connect: bool) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if connect {
        format!("connection failed ({text})")
    } else {
        text
    }
}

/// A chat URL parsed once for both clients.
#[derive(Debug, Clone)]
pub struct ChatUrl {
    uri: Uri,
    url: reqwest::Url,
}

impl ChatUrl {
    /// Parses `text` (an absolute http or https URL).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(text).map_err(|e| e.to_string())?;
        let uri = text.parse::<Uri>().map_err(|e| e.to_string())?;
        Ok(ChatUrl { uri, url })
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error_naming_the_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = ChatUrl::parse(&format!(
            "http://127.0.0.1:{port}/generateAssistantResponse"
        ))
        .unwrap();
        for client in [
            UpstreamClient::direct(),
            UpstreamClient::from(reqwest::Client::new()),
        ] {
            let Err(error) = client.post(&url, HeaderMap::new(), Bytes::new()).await else {
                panic!("{client:?}: a closed port answered");
            };
            assert!(error.connect, "{client:?}: {error}");
            assert!(error.message.contains("connection failed"), "{error}");
            assert!(error.message.to_lowercase().contains("refused"), "{error}");
        }
    }

    #[test]
    fn urls_parse_for_both_clients_or_not_at_all() {
        let url =
            ChatUrl::parse("https://runtime.us-east-1.kiro.dev/generateAssistantResponse").unwrap();
        assert_eq!(url.uri.host(), Some("runtime.us-east-1.kiro.dev"));
        assert_eq!(
            url.as_str(),
            "https://runtime.us-east-1.kiro.dev/generateAssistantResponse"
        );
        assert!(ChatUrl::parse("not a url").is_err());
    }
}
