//! `UsageLayer`: exactly one [`UsageRecord`] per upstream attempt, finalised once, whether the
//! answer stream ends, fails, or is dropped because the client went away. The record is created
//! in `call` and moved into the response stream; a guard's `Drop` hands it to the
//! [`UsageSink`] (which only queues: drop never blocks).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use futures_util::Stream;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::chat::{ChatEvent, ChatRequest, EventStream, UsageTally};
use crate::error::GatewayError;
use crate::rescue::RequestId;
use crate::traits::{LeaseSlot, Principal, ResolvedModel, UsageRecord, UsageSink, UsageStatus};

/// The prompt's estimated tokens, computed once at the dialect boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEstimate(pub u64);

/// Counts attempts per request (retries add attempts; each gets its own record).
#[derive(Debug, Clone, Default)]
pub struct AttemptCounter(Arc<AtomicU32>);

/// Lets the service below make a second upstream attempt inside one call (the Kiro service's
/// retry after refreshing the token on a 403) and still record each attempt on its own: put in
/// the request by [`Usage`]; [`AttemptRecords::next_attempt`] ends the current record as
/// `upstream_error` and starts the next one, with the next attempt number of the request.
#[derive(Clone)]
pub struct AttemptRecords {
    guard: Arc<Mutex<RecordGuard>>,
    counter: Option<AttemptCounter>,
}

impl AttemptRecords {
    /// The attempt so far failed; what follows is a new attempt with its own record.
    pub fn next_attempt(&self) {
        let attempt = self
            .counter
            .as_ref()
            .map(|c| c.0.fetch_add(1, Ordering::Relaxed) + 1);
        if let Ok(mut guard) = self.guard.lock() {
            guard.restart(attempt);
        }
    }
}

impl std::fmt::Debug for AttemptRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptRecords")
    }
}

/// Builds [`Usage`].
#[derive(Clone)]
pub struct UsageLayer {
    sink: Arc<dyn UsageSink>,
}

impl UsageLayer {
    /// Records into `sink`.
    pub fn new(sink: Arc<dyn UsageSink>) -> Self {
        UsageLayer { sink }
    }
}

impl<S> Layer<S> for UsageLayer {
    type Service = Usage<S>;
    fn layer(&self, inner: S) -> Usage<S> {
        Usage {
            inner,
            sink: Arc::clone(&self.sink),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Usage<S> {
    inner: S,
    sink: Arc<dyn UsageSink>,
}

impl<S> Service<Request<ChatRequest>> for Usage<S>
where
    S: Service<Request<ChatRequest>, Response = Response<EventStream>, Error = GatewayError>,
    S::Future: Send + 'static,
{
    type Response = Response<EventStream>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EventStream>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ChatRequest>) -> Self::Future {
        let ext = request.extensions();
        let attempt = ext
            .get::<AttemptCounter>()
            .map_or(1, |c| c.0.fetch_add(1, Ordering::Relaxed) + 1);
        let resolved = ext.get::<ResolvedModel>();
        let record = UsageRecord {
            request_id: ext
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            attempt,
            principal: ext.get::<Principal>().cloned().unwrap_or_default(),
            requested_model: request.body().model.clone(),
            resolved_model: resolved.map(|r| r.kiro_id.clone()).unwrap_or_default(),
            account_id: ext.get::<LeaseSlot>().and_then(LeaseSlot::account_id),
            account_kind: ext.get::<LeaseSlot>().and_then(LeaseSlot::account_kind),
            estimated: false,
            input_tokens: 0,
            output_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            credits: 0.0,
            status: UsageStatus::ClientAbort,
            time_to_first_token: None,
            duration: Duration::ZERO,
            started_at: SystemTime::now(),
        };
        let guard = RecordGuard {
            record: Some(record),
            sink: Arc::clone(&self.sink),
            tally: UsageTally::default(),
            started: Instant::now(),
            input_estimate: ext.get::<InputEstimate>().map_or(0, |e| e.0),
            context_window: resolved.map_or(0, |r| r.context_window),
        };
        let counter = ext.get::<AttemptCounter>().cloned();
        let guard = Arc::new(Mutex::new(guard));
        let on_error = Arc::clone(&guard);
        request.extensions_mut().insert(AttemptRecords {
            guard: Arc::clone(&guard),
            counter,
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => Ok(response.map(|events| {
                    Box::pin(RecordedStream {
                        inner: events,
                        guard,
                        done: false,
                    }) as EventStream
                })),
                Err(error) => {
                    if let Ok(mut guard) = on_error.lock() {
                        guard.finish(UsageStatus::UpstreamError);
                    }
                    Err(error)
                }
            }
        })
    }
}

/// Holds the record until the attempt ends; `Drop` covers the client going away.
struct RecordGuard {
    record: Option<UsageRecord>,
    sink: Arc<dyn UsageSink>,
    tally: UsageTally,
    started: Instant,
    input_estimate: u64,
    context_window: u64,
}

impl RecordGuard {
    fn observe(&mut self, event: &ChatEvent) {
        if let Some(record) = self.record.as_mut() {
            if record.time_to_first_token.is_none() && is_output(event) {
                record.time_to_first_token = Some(self.started.elapsed());
            }
        }
        self.tally.observe(event);
    }

    /// Sends the record, once; later calls do nothing.
    fn finish(&mut self, status: UsageStatus) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.status = status;
        record.duration = self.started.elapsed();
        record.credits = self.tally.credits();
        // An attempt that produced no output is not charged tokens.
        if record.time_to_first_token.is_some() || status == UsageStatus::Ok {
            let usage = self.tally.usage(self.input_estimate, self.context_window);
            record.input_tokens = usage.input_tokens;
            record.output_tokens = usage.output_tokens;
            record.cache_read_tokens = usage.cache_read_input_tokens;
            record.cache_write_tokens = usage.cache_write_input_tokens;
            record.estimated = self.tally.estimated(self.context_window);
        }
        self.sink.record(record);
    }
}

impl RecordGuard {
    /// Finishes the record as `upstream_error` and starts the next attempt's (`attempt`, or
    /// the one after this).
    fn restart(&mut self, attempt: Option<u32>) {
        let Some(current) = self.record.as_ref() else {
            return;
        };
        let next = UsageRecord {
            attempt: attempt.unwrap_or(current.attempt + 1),
            status: UsageStatus::ClientAbort,
            time_to_first_token: None,
            started_at: SystemTime::now(),
            ..current.clone()
        };
        self.finish(UsageStatus::UpstreamError);
        self.record = Some(next);
        self.tally = UsageTally::default();
        self.started = Instant::now();
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        self.finish(UsageStatus::ClientAbort);
    }
}

fn is_output(event: &ChatEvent) -> bool {
    matches!(
        event,
        ChatEvent::TextDelta(_) | ChatEvent::ReasoningDelta(_) | ChatEvent::ToolUseStart { .. }
    )
}

struct RecordedStream {
    inner: EventStream,
    guard: Arc<Mutex<RecordGuard>>,
    done: bool,
}

impl Stream for RecordedStream {
    type Item = Result<ChatEvent, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(item) = &item {
            if let Ok(mut guard) = self.guard.lock() {
                match item {
                    Some(Ok(event)) => guard.observe(event),
                    Some(Err(_)) => guard.finish(UsageStatus::UpstreamError),
                    None => guard.finish(UsageStatus::Ok),
                }
            }
            if matches!(item, None | Some(Err(_))) {
                self.done = true;
            }
        }
        item
    }
}

/// A sink that writes each record to the log (the default without a database).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogUsageSink;

impl UsageSink for LogUsageSink {
    fn record(&self, r: UsageRecord) {
        tracing::info!(
            request_id = %r.request_id,
            attempt = r.attempt,
            key = %r.principal.key_id,
            model = %r.resolved_model,
            account = r.account_id.as_deref().unwrap_or("-"),
            status = r.status.as_str(),
            input_tokens = r.input_tokens,
            output_tokens = r.output_tokens,
            credits = r.credits,
            ttft_ms = r.time_to_first_token.map(|d| d.as_millis() as u64),
            duration_ms = r.duration.as_millis() as u64,
            "usage"
        );
    }
}

/// A sink that keeps records in memory (tests, examples).
#[derive(Debug, Clone, Default)]
pub struct MemoryUsageSink(Arc<Mutex<Vec<UsageRecord>>>);

impl MemoryUsageSink {
    /// Every record so far.
    pub fn records(&self) -> Vec<UsageRecord> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl UsageSink for MemoryUsageSink {
    fn record(&self, record: UsageRecord) {
        if let Ok(mut records) = self.0.lock() {
            records.push(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Dialect;
    use futures_util::{stream, StreamExt};
    use tower::{service_fn, ServiceExt};

    fn events(items: Vec<Result<ChatEvent, GatewayError>>) -> EventStream {
        Box::pin(stream::iter(items))
    }

    fn request() -> Request<ChatRequest> {
        let mut request = Request::new(ChatRequest::user_text(Dialect::OpenAi, "auto", "hi"));
        request.extensions_mut().insert(RequestId("req_1".into()));
        request.extensions_mut().insert(InputEstimate(10));
        request
    }

    async fn run(items: Vec<Result<ChatEvent, GatewayError>>, read: usize) -> Vec<UsageRecord> {
        let sink = MemoryUsageSink::default();
        let inner = service_fn(move |_req: Request<ChatRequest>| {
            let items = items.clone();
            async move { Ok::<_, GatewayError>(Response::new(events(items))) }
        });
        let service = UsageLayer::new(Arc::new(sink.clone())).layer(inner);
        let response = service.oneshot(request()).await.unwrap();
        let mut body = response.into_body();
        for _ in 0..read {
            if body.next().await.is_none() {
                break;
            }
        }
        drop(body);
        sink.records()
    }

    #[tokio::test]
    async fn completed_stream_records_once_with_usage() {
        let items = vec![
            Ok(ChatEvent::TextDelta("hello world!".into())),
            Ok(ChatEvent::Metering { credits: 0.5 }),
        ];
        let records = run(items, 10).await;
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.status, UsageStatus::Ok);
        assert_eq!(r.request_id, "req_1");
        assert_eq!(r.input_tokens, 10);
        assert!(r.output_tokens > 0);
        assert_eq!(r.credits, 0.5);
        assert!(r.time_to_first_token.is_some());
    }

    #[tokio::test]
    async fn client_abort_records_once() {
        let items = vec![
            Ok(ChatEvent::TextDelta("a".into())),
            Ok(ChatEvent::TextDelta("b".into())),
            Ok(ChatEvent::TextDelta("c".into())),
        ];
        let records = run(items, 1).await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].status, UsageStatus::ClientAbort);
    }

    #[tokio::test]
    async fn abort_before_output_is_not_charged() {
        let records = run(vec![Ok(ChatEvent::TextDelta("a".into()))], 0).await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].status, UsageStatus::ClientAbort);
        assert_eq!(records[0].input_tokens + records[0].output_tokens, 0);
    }

    #[tokio::test]
    async fn stream_error_records_upstream_error_once() {
        let items = vec![
            Ok(ChatEvent::TextDelta("a".into())),
            Err(GatewayError::upstream_stream("reset")),
        ];
        let records = run(items, 10).await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].status, UsageStatus::UpstreamError);
    }

    #[tokio::test]
    async fn failed_call_records_once() {
        let sink = MemoryUsageSink::default();
        let inner = service_fn(|_req: Request<ChatRequest>| async move {
            Err::<Response<EventStream>, _>(GatewayError::upstream(
                http::StatusCode::TOO_MANY_REQUESTS,
                "slow",
            ))
        });
        let service = UsageLayer::new(Arc::new(sink.clone())).layer(inner);
        assert!(service.oneshot(request()).await.is_err());
        let records = sink.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].status, UsageStatus::UpstreamError);
    }
}
