//! The bottom of the stack: one [`Upstream`] per kind of account, and [`UpstreamService`], which
//! takes the lease the pool put in the request and hands the request to the upstream of the
//! lease's kind. Kiro is one implementation ([`crate::kiro::service::KiroService`]), Cursor
//! another ([`crate::cursor::service::CursorService`]); a third only implements [`Upstream`] and
//! is listed in [`crate::stack::StackDeps::upstreams`], without touching any layer.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kiro_layers::kiro::service::{KiroConfig, KiroService};
//! use kiro_layers::kiro::http::UpstreamClient;
//! use kiro_layers::upstream::{Upstream, UpstreamService};
//!
//! let kiro = KiroService::new(UpstreamClient::direct(), KiroConfig::default());
//! let bottom = UpstreamService::new(vec![Arc::new(kiro) as Arc<dyn Upstream>]);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::Service;

use crate::chat::{ChatRequest, EventStream};
use crate::error::GatewayError;
use crate::traits::{AccountKind, Lease, LeaseSlot};

/// One kind of upstream account: sends the canonical request as the leased account and yields
/// the canonical event stream.
///
/// Contract: the implementation reports the attempt's outcome on the lease
/// ([`Lease::report`]) once it knows it (the response head, or the error before it), and keeps
/// the lease inside the returned stream until its last event, so the pool's slot is given back
/// only when the answer is over.
pub trait Upstream: Send + Sync + 'static {
    /// The kind of account this upstream serves.
    fn kind(&self) -> AccountKind;

    /// Sends `request` as the account of `lease`.
    fn send(
        &self,
        request: Request<ChatRequest>,
        lease: Lease,
    ) -> BoxFuture<'static, Result<Response<EventStream>, GatewayError>>;
}

/// See the module docs.
#[derive(Clone)]
pub struct UpstreamService {
    upstreams: Arc<Vec<Arc<dyn Upstream>>>,
}

impl UpstreamService {
    /// Dispatches over `upstreams` (the first of a kind wins when two claim the same kind).
    pub fn new(upstreams: Vec<Arc<dyn Upstream>>) -> Self {
        UpstreamService {
            upstreams: Arc::new(upstreams),
        }
    }

    /// The kinds served, in order.
    pub fn kinds(&self) -> Vec<AccountKind> {
        self.upstreams.iter().map(|u| u.kind()).collect()
    }

    fn upstream_for(&self, kind: &AccountKind) -> Option<Arc<dyn Upstream>> {
        self.upstreams
            .iter()
            .find(|upstream| &upstream.kind() == kind)
            .cloned()
    }
}

impl std::fmt::Debug for UpstreamService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamService")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Service<Request<ChatRequest>> for UpstreamService {
    type Response = Response<EventStream>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EventStream>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ChatRequest>) -> Self::Future {
        let lease = request
            .extensions()
            .get::<LeaseSlot>()
            .and_then(LeaseSlot::take);
        let Some(lease) = lease else {
            return Box::pin(async {
                Err(GatewayError::internal(
                    "no account was leased for this request (stack wiring bug)",
                ))
            });
        };
        match self.upstream_for(&lease.credential.kind) {
            Some(upstream) => upstream.send(request, lease),
            None => {
                let kind = lease.credential.kind.clone();
                // Not the account's fault: the gateway leased a kind it cannot call.
                drop(lease);
                Box::pin(async move {
                    Err(GatewayError::internal(format!(
                        "an account of kind `{kind}` was leased but no upstream of that kind is configured"
                    )))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatEvent;
    use crate::traits::{AccountHandle, AttemptOutcome, Credential};
    use std::sync::Mutex;

    /// Answers with one text event naming its kind, and notes the outcome it reported.
    struct Named(AccountKind);

    impl Upstream for Named {
        fn kind(&self) -> AccountKind {
            self.0.clone()
        }
        fn send(
            &self,
            _request: Request<ChatRequest>,
            lease: Lease,
        ) -> BoxFuture<'static, Result<Response<EventStream>, GatewayError>> {
            let text = format!("{}:{}", self.0, lease.credential.account_id);
            lease.report(AttemptOutcome::Success);
            Box::pin(async move {
                let events =
                    futures_util::stream::iter(vec![Ok(ChatEvent::TextDelta(text.into()))]);
                let _lease = lease;
                Ok(Response::new(Box::pin(events) as EventStream))
            })
        }
    }

    #[derive(Default)]
    struct Handle {
        outcomes: Mutex<Vec<AttemptOutcome>>,
        released: Mutex<u32>,
    }

    impl AccountHandle for Handle {
        fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
            Box::pin(async { Err(GatewayError::internal("not used")) })
        }
        fn report(&self, outcome: AttemptOutcome) {
            self.outcomes.lock().unwrap().push(outcome);
        }
        fn release(&self) {
            *self.released.lock().unwrap() += 1;
        }
    }

    fn leased(kind: AccountKind, handle: Arc<Handle>) -> Request<ChatRequest> {
        let credential = Credential {
            account_id: "a1".into(),
            kind,
            access_token: "t".into(),
            profile_arn: None,
            api_base: "http://x".into(),
            fingerprint: "f".into(),
            external_idp: false,
            client_key: None,
        };
        let mut request = Request::new(ChatRequest::user_text(
            crate::chat::Dialect::OpenAi,
            "m",
            "hi",
        ));
        request
            .extensions_mut()
            .insert(LeaseSlot::new(Lease::new(credential, handle)));
        request
    }

    async fn first_text(response: Response<EventStream>) -> String {
        use futures_util::StreamExt;
        match response.into_body().next().await {
            Some(Ok(ChatEvent::TextDelta(text))) => text.to_string(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn each_lease_goes_to_the_upstream_of_its_kind() {
        let mut service = UpstreamService::new(vec![
            Arc::new(Named(AccountKind::KIRO)),
            Arc::new(Named(AccountKind::CURSOR)),
        ]);
        let handle = Arc::new(Handle::default());
        let response = service
            .call(leased(AccountKind::CURSOR, Arc::clone(&handle)))
            .await
            .unwrap();
        assert_eq!(first_text(response).await, "cursor:a1");
        let response = service
            .call(leased(AccountKind::KIRO, Arc::clone(&handle)))
            .await
            .unwrap();
        assert_eq!(first_text(response).await, "kiro:a1");
        assert_eq!(handle.outcomes.lock().unwrap().len(), 2);
        assert_eq!(*handle.released.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn a_kind_without_an_upstream_is_an_internal_error_and_gives_the_lease_back() {
        let mut service = UpstreamService::new(vec![Arc::new(Named(AccountKind::KIRO))]);
        let handle = Arc::new(Handle::default());
        let error = service
            .call(leased(AccountKind::new("other"), Arc::clone(&handle)))
            .await
            .err()
            .unwrap();
        assert!(error.message().contains("`other`"), "{}", error.message());
        assert!(handle.outcomes.lock().unwrap().is_empty());
        assert_eq!(*handle.released.lock().unwrap(), 1);
    }

    /// An account of a given kind whose credential always works.
    struct OfKind(String, AccountKind);

    impl crate::pool::CredentialProvider for OfKind {
        fn account_id(&self) -> &str {
            &self.0
        }
        fn current(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
            let credential = Credential {
                account_id: self.0.clone(),
                kind: self.1.clone(),
                access_token: "t".into(),
                profile_arn: None,
                api_base: "http://x".into(),
                fingerprint: "f".into(),
                external_idp: false,
                client_key: None,
            };
            Box::pin(async move { Ok(credential) })
        }
        fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
            self.current()
        }
        fn kind(&self) -> AccountKind {
            self.1.clone()
        }
    }

    fn model(kinds: Vec<AccountKind>) -> crate::traits::ResolvedModel {
        crate::traits::ResolvedModel {
            requested: "m".into(),
            kiro_id: "m".into(),
            context_window: 1,
            max_output_tokens: 1,
            kinds,
            upstream_ids: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_pool_leases_only_kinds_that_serve_the_model_and_alternates_across_both() {
        use crate::pool::{CredentialProvider, PoolPolicy, RoundRobinPool};
        use crate::traits::TokenSource;
        let providers: Vec<Arc<dyn CredentialProvider>> = vec![
            Arc::new(OfKind("k1".into(), AccountKind::KIRO)),
            Arc::new(OfKind("c1".into(), AccountKind::CURSOR)),
            Arc::new(OfKind("k2".into(), AccountKind::KIRO)),
        ];
        let pool = RoundRobinPool::new(providers, PoolPolicy::default());
        let mut seen = Vec::new();
        for _ in 0..4 {
            let lease = pool
                .acquire_for(&model(vec![AccountKind::CURSOR]))
                .await
                .unwrap();
            seen.push(lease.credential.account_id.clone());
        }
        assert_eq!(seen, ["c1"; 4]);
        let kiro_only = model(vec![AccountKind::KIRO]);
        for _ in 0..4 {
            let lease = pool.acquire_for(&kiro_only).await.unwrap();
            assert_eq!(lease.credential.kind, AccountKind::KIRO);
        }
        let both = model(vec![AccountKind::KIRO, AccountKind::CURSOR]);
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..3 {
            kinds.insert(
                pool.acquire_for(&both)
                    .await
                    .unwrap()
                    .credential
                    .kind
                    .clone(),
            );
        }
        assert_eq!(kinds.len(), 2, "round robin runs across both kinds");
        let none = pool
            .acquire_for(&model(vec![AccountKind::new("third")]))
            .await
            .err()
            .unwrap();
        assert_eq!(none.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_request_without_a_lease_is_refused() {
        let mut service = UpstreamService::new(vec![Arc::new(Named(AccountKind::KIRO))]);
        let error = service
            .call(Request::new(ChatRequest::user_text(
                crate::chat::Dialect::OpenAi,
                "m",
                "hi",
            )))
            .await
            .err()
            .unwrap();
        assert!(error.message().contains("no account was leased"));
    }
}
