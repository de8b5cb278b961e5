//! `AuthLayer`: checks the caller's API key before the body is read and puts the
//! [`Principal`] in the request extensions. Accepts `Authorization: Bearer <key>` (OpenAI) and
//! `x-api-key: <key>` (Anthropic) on every route.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use crate::error::GatewayError;
use crate::traits::{KeyStore, Principal};

/// The key a request presents, if any.
pub fn presented_key<B>(request: &Request<B>) -> Option<&str> {
    let headers = request.headers();
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim());
    }
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// A key store with one shared key (`PROXY_API_KEY`). Compares SHA-256 digests in constant time,
/// so neither the content nor the length of the key leaks through timing.
#[derive(Clone)]
pub struct SingleKeyStore {
    digest: [u8; 32],
}

impl SingleKeyStore {
    /// A store accepting exactly `key`.
    pub fn new(key: &str) -> Self {
        SingleKeyStore {
            digest: Sha256::digest(key.as_bytes()).into(),
        }
    }
}

impl std::fmt::Debug for SingleKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SingleKeyStore(<redacted>)")
    }
}

impl KeyStore for SingleKeyStore {
    fn authenticate(&self, presented_key: &str) -> Result<Principal, GatewayError> {
        let digest: [u8; 32] = Sha256::digest(presented_key.as_bytes()).into();
        if bool::from(digest.ct_eq(&self.digest)) {
            Ok(Principal {
                key_id: "proxy-api-key".to_owned(),
                ..Principal::default()
            })
        } else {
            Err(GatewayError::unauthenticated(
                "Invalid API key. Send the gateway's key (PROXY_API_KEY) as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
            ))
        }
    }
}

/// Builds [`Auth`].
#[derive(Clone)]
pub struct AuthLayer {
    keys: Arc<dyn KeyStore>,
}

impl AuthLayer {
    /// Authenticates against `keys`.
    pub fn new(keys: Arc<dyn KeyStore>) -> Self {
        AuthLayer { keys }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            keys: Arc::clone(&self.keys),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    keys: Arc<dyn KeyStore>,
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Error = GatewayError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let principal = match presented_key(&request) {
            None => Err(GatewayError::unauthenticated(
                "Missing API key. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
            )),
            Some(key) => self.keys.authenticate(key),
        };
        match principal {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Box::pin(self.inner.call(request))
            }
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{service_fn, ServiceExt};

    fn service() -> impl Service<Request<()>, Response = String, Error = GatewayError> {
        AuthLayer::new(Arc::new(SingleKeyStore::new("secret"))).layer(service_fn(
            |req: Request<()>| async move {
                Ok::<_, GatewayError>(req.extensions().get::<Principal>().unwrap().key_id.clone())
            },
        ))
    }

    #[tokio::test]
    async fn accepts_bearer_and_x_api_key() {
        let bearer = Request::get("/")
            .header("authorization", "Bearer secret")
            .body(())
            .unwrap();
        assert_eq!(service().oneshot(bearer).await.unwrap(), "proxy-api-key");
        let x_api_key = Request::get("/")
            .header("x-api-key", "secret")
            .body(())
            .unwrap();
        assert_eq!(service().oneshot(x_api_key).await.unwrap(), "proxy-api-key");
    }

    #[tokio::test]
    async fn refuses_missing_and_wrong_keys() {
        let missing = Request::get("/").body(()).unwrap();
        let err = service().oneshot(missing).await.unwrap_err();
        assert!(err.is_unauthenticated());
        assert!(err.message().contains("Missing"));
        let wrong = Request::get("/")
            .header("authorization", "Bearer secreT")
            .body(())
            .unwrap();
        assert!(service()
            .oneshot(wrong)
            .await
            .unwrap_err()
            .is_unauthenticated());
        let prefix = Request::get("/")
            .header("x-api-key", "secre")
            .body(())
            .unwrap();
        assert!(service()
            .oneshot(prefix)
            .await
            .unwrap_err()
            .is_unauthenticated());
    }
}
