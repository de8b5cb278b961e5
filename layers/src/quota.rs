//! `QuotaLayer`: refuses a request before it reaches Kiro when its key, the key's user or the
//! user's agent is over quota, over its requests-per-minute limit or over its concurrency limit.
//! The decision comes from a [`QuotaGuard`]: from memory when the host can decide alone
//! ([`Admission::Now`], no I/O on the request path), or after asking counters shared with other
//! processes ([`Admission::Later`]) when the host limits a caller across processes. An admitted request holds a [`QuotaPermit`] inside its response stream until the last
//! event or the client going away, so concurrency slots are released exactly once. A refused
//! request still writes one usage record with status `rejected`.
//!
//! ```
//! use std::sync::Arc;
//! use kiro_layers::quota::{QuotaLayer, Unlimited};
//! use kiro_layers::usage::LogUsageSink;
//!
//! let layer = QuotaLayer::new(Arc::new(Unlimited), Arc::new(LogUsageSink));
//! # let _ = layer;
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use futures_util::Stream;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::chat::{ChatEvent, ChatRequest, EventStream};
use crate::error::GatewayError;
use crate::rescue::RequestId;
use crate::traits::{Principal, UsageRecord, UsageSink, UsageStatus};

/// An admitted request's claim on its limits; dropping it gives the concurrency slots back.
#[must_use = "dropping the permit releases the request's concurrency slot"]
pub struct QuotaPermit {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl QuotaPermit {
    /// A permit that runs `release` once when dropped.
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        QuotaPermit {
            release: Some(Box::new(release)),
        }
    }

    /// A permit that holds nothing.
    pub fn unlimited() -> Self {
        QuotaPermit { release: None }
    }
}

impl Drop for QuotaPermit {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl std::fmt::Debug for QuotaPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuotaPermit")
    }
}

/// A guard's answer: decided already, or once a shared counter has answered.
pub enum Admission {
    /// Decided from memory.
    Now(Result<QuotaPermit, GatewayError>),
    /// Decided by a counter outside the process; the future must answer promptly (it bounds
    /// its own I/O) and never fail for want of that counter.
    Later(BoxFuture<'static, Result<QuotaPermit, GatewayError>>),
}

/// Decides whether a caller may start one more request.
pub trait QuotaGuard: Send + Sync + 'static {
    /// Admits the request (the permit must be held until it ends) or refuses it, typically with
    /// [`GatewayError::rate_limited`] and a message naming the limit. Answers from memory.
    fn check(&self, principal: &Principal) -> Result<QuotaPermit, GatewayError>;

    /// What the layer calls: [`QuotaGuard::check`] unless the guard shares some counters with
    /// other processes.
    fn admit(&self, principal: &Principal) -> Admission {
        Admission::Now(self.check(principal))
    }
}

/// A guard that admits everything (a gateway without users).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl QuotaGuard for Unlimited {
    fn check(&self, _principal: &Principal) -> Result<QuotaPermit, GatewayError> {
        Ok(QuotaPermit::unlimited())
    }
}

/// Builds [`Quota`].
#[derive(Clone)]
pub struct QuotaLayer {
    guard: Arc<dyn QuotaGuard>,
    sink: Arc<dyn UsageSink>,
}

impl QuotaLayer {
    /// Checks with `guard`; refused requests are recorded in `sink`.
    pub fn new(guard: Arc<dyn QuotaGuard>, sink: Arc<dyn UsageSink>) -> Self {
        QuotaLayer { guard, sink }
    }
}

impl<S> Layer<S> for QuotaLayer {
    type Service = Quota<S>;
    fn layer(&self, inner: S) -> Quota<S> {
        Quota {
            inner,
            guard: Arc::clone(&self.guard),
            sink: Arc::clone(&self.sink),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Quota<S> {
    inner: S,
    guard: Arc<dyn QuotaGuard>,
    sink: Arc<dyn UsageSink>,
}

fn rejected_record(request: &Request<ChatRequest>, principal: Principal) -> UsageRecord {
    UsageRecord {
        request_id: request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        attempt: 0,
        principal,
        requested_model: request.body().model.clone(),
        resolved_model: String::new(),
        account_id: None,
        input_tokens: 0,
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        credits: 0.0,
        status: UsageStatus::Rejected,
        time_to_first_token: None,
        duration: Duration::ZERO,
        started_at: SystemTime::now(),
        account_kind: None,
        estimated: false,
    }
}

impl<S> Service<Request<ChatRequest>> for Quota<S>
where
    S: Service<Request<ChatRequest>, Response = Response<EventStream>, Error = GatewayError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<EventStream>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EventStream>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ChatRequest>) -> Self::Future {
        let principal = request
            .extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or_default();
        let permit = match self.guard.admit(&principal) {
            Admission::Now(Ok(permit)) => permit,
            Admission::Now(Err(error)) => {
                self.sink.record(rejected_record(&request, principal));
                return Box::pin(async move { Err(error) });
            }
            Admission::Later(decision) => {
                // The service polled ready goes into the future; a clone stays for the next call.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let sink = Arc::clone(&self.sink);
                return Box::pin(async move {
                    let permit = match decision.await {
                        Ok(permit) => permit,
                        Err(error) => {
                            sink.record(rejected_record(&request, principal));
                            return Err(error);
                        }
                    };
                    with_permit(inner.call(request).await?, permit)
                });
            }
        };
        let future = self.inner.call(request);
        // On an error the permit drops here, with the future.
        Box::pin(async move { with_permit(future.await?, permit) })
    }
}

/// Moves `permit` into the response stream.
fn with_permit(
    response: Response<EventStream>,
    permit: QuotaPermit,
) -> Result<Response<EventStream>, GatewayError> {
    Ok(response.map(|events| {
        Box::pin(PermitStream {
            inner: events,
            _permit: permit,
        }) as EventStream
    }))
}

/// The response stream, holding the permit until it is dropped.
struct PermitStream {
    inner: EventStream,
    _permit: QuotaPermit,
}

impl Stream for PermitStream {
    type Item = Result<ChatEvent, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Dialect;
    use crate::usage::MemoryUsageSink;
    use futures_util::{stream, StreamExt};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{service_fn, ServiceExt};

    /// Admits up to `cap` requests at once.
    struct Cap {
        cap: usize,
        in_flight: Arc<AtomicUsize>,
    }

    impl QuotaGuard for Cap {
        fn check(&self, principal: &Principal) -> Result<QuotaPermit, GatewayError> {
            if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.cap {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                return Err(GatewayError::rate_limited(format!(
                    "Concurrency limit of key {} reached.",
                    principal.key_id
                )));
            }
            let in_flight = Arc::clone(&self.in_flight);
            Ok(QuotaPermit::new(move || {
                in_flight.fetch_sub(1, Ordering::AcqRel);
            }))
        }
    }

    fn request() -> Request<ChatRequest> {
        let mut request = Request::new(ChatRequest::user_text(Dialect::OpenAi, "auto", "hi"));
        request.extensions_mut().insert(RequestId("req_q".into()));
        request.extensions_mut().insert(Principal {
            key_id: "k1".into(),
            ..Principal::default()
        });
        request
    }

    fn service(
        cap: usize,
        sink: MemoryUsageSink,
        in_flight: Arc<AtomicUsize>,
        calls: Arc<AtomicUsize>,
    ) -> Quota<
        impl Service<
                Request<ChatRequest>,
                Response = Response<EventStream>,
                Error = GatewayError,
                Future = impl Send,
            > + Clone,
    > {
        let inner = service_fn(move |_req: Request<ChatRequest>| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move {
                let events: EventStream =
                    Box::pin(stream::iter(vec![Ok(ChatEvent::TextDelta("x".into()))]));
                Ok::<_, GatewayError>(Response::new(events))
            }
        });
        QuotaLayer::new(Arc::new(Cap { cap, in_flight }), Arc::new(sink)).layer(inner)
    }

    #[tokio::test]
    async fn refused_request_never_reaches_inner_and_is_recorded() {
        let sink = MemoryUsageSink::default();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = service(1, sink.clone(), Arc::clone(&in_flight), Arc::clone(&calls));
        let held = svc.clone().oneshot(request()).await.unwrap();
        let Err(err) = svc.clone().oneshot(request()).await else {
            panic!("the second request must be refused");
        };
        assert_eq!(err.status(), 429);
        assert!(err.message().contains("Concurrency limit of key k1"));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let records = sink.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].status, UsageStatus::Rejected);
        assert_eq!(records[0].request_id, "req_q");
        assert_eq!(records[0].principal.key_id, "k1");
        // The slot comes back when the admitted response stream is dropped.
        drop(held);
        assert_eq!(in_flight.load(Ordering::Relaxed), 0);
        let mut body = svc.oneshot(request()).await.unwrap().into_body();
        assert!(body.next().await.is_some());
    }

    /// Answers after a shared counter would have: admits the first request only.
    struct Later {
        admitted: Arc<AtomicUsize>,
    }

    impl QuotaGuard for Later {
        fn check(&self, _principal: &Principal) -> Result<QuotaPermit, GatewayError> {
            unreachable!("the layer calls admit")
        }

        fn admit(&self, _principal: &Principal) -> Admission {
            let admitted = Arc::clone(&self.admitted);
            Admission::Later(Box::pin(async move {
                tokio::task::yield_now().await;
                if admitted.fetch_add(1, Ordering::AcqRel) > 0 {
                    return Err(GatewayError::rate_limited("shared window full"));
                }
                Ok(QuotaPermit::unlimited())
            }))
        }
    }

    #[tokio::test]
    async fn a_later_decision_admits_or_refuses_and_records_the_refusal() {
        let sink = MemoryUsageSink::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let inner = service_fn(move |_req: Request<ChatRequest>| {
            seen.fetch_add(1, Ordering::Relaxed);
            async move {
                let events: EventStream =
                    Box::pin(stream::iter(vec![Ok(ChatEvent::TextDelta("x".into()))]));
                Ok::<_, GatewayError>(Response::new(events))
            }
        });
        let guard = Later {
            admitted: Arc::new(AtomicUsize::new(0)),
        };
        let svc = QuotaLayer::new(Arc::new(guard), Arc::new(sink.clone())).layer(inner);
        let mut body = svc.clone().oneshot(request()).await.unwrap().into_body();
        assert!(body.next().await.is_some());
        let Err(err) = svc.oneshot(request()).await else {
            panic!("the second request must be refused");
        };
        assert_eq!(err.message(), "shared window full");
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let records = sink.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].status, UsageStatus::Rejected);
    }

    #[tokio::test]
    async fn slot_is_released_when_inner_fails() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let guard = Cap {
            cap: 1,
            in_flight: Arc::clone(&in_flight),
        };
        let inner = service_fn(|_req: Request<ChatRequest>| async move {
            Err::<Response<EventStream>, _>(GatewayError::no_account("none"))
        });
        let svc =
            QuotaLayer::new(Arc::new(guard), Arc::new(MemoryUsageSink::default())).layer(inner);
        assert!(svc.clone().oneshot(request()).await.is_err());
        assert_eq!(in_flight.load(Ordering::Relaxed), 0);
        let Err(err) = svc.oneshot(request()).await else {
            panic!("the inner service fails");
        };
        assert_eq!(err.status(), 503);
    }
}
