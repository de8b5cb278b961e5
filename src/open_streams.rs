//! The cap on open answers (`MAX_OPEN_STREAMS`) and the open-file limit it depends on.
//!
//! Every chat answer in progress holds the client's connection and, while it streams, a
//! connection to Kiro: two descriptors; one and a share of a connection when answers share
//! HTTP/2 connections to Kiro (`KIRO_HTTP2=always`). A process that runs out of descriptors fails in ways
//! nobody can read (accept errors, failed upstream connects, a database that cannot be
//! reached), so the gateway refuses the answer that would go over the cap instead, at once and
//! in the client's own dialect (503 `overloaded` with `Retry-After`), and the cap defaults to
//! what the open-file limit allows after a reserve for everything else.
//!
//! At start the process raises its soft open-file limit to the hard one
//! ([`raise_open_file_limit`]), and says so when it cannot.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use kiro_layers::rescue::dialect_for_path;
use kiro_layers::GatewayError;

/// Descriptors kept for everything that is not an answer (listener, database, logs, idle
/// keep-alive connections, the process itself).
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// Descriptors one open answer may hold (client and upstream connection) when it has its own
/// connection to Kiro.
pub const DESCRIPTORS_PER_STREAM: u64 = 2;

/// The gauge of open answers.
pub const OPEN_STREAMS_GAUGE: &str = "kiro_gateway_open_streams";

/// Raises the soft open-file limit to the hard limit. Returns the soft limit in force after
/// (`None` where the platform has no such limit).
pub fn raise_open_file_limit() -> Option<u64> {
    imp::raise()
}

/// The soft open-file limit in force (`None` where unknown or unlimited).
pub fn open_file_limit() -> Option<u64> {
    imp::current()
}

/// The cap for `configured` (`MAX_OPEN_STREAMS`, 0 = derive it) under an open-file limit of
/// `files`: never more than the descriptors left after the reserve allow. `shared_upstream` is
/// how many answers share one connection to Kiro (HTTP/2); `None` when each has its own.
pub fn stream_cap(configured: usize, files: Option<u64>, shared_upstream: Option<usize>) -> usize {
    let affordable = files.map(|files| {
        let free = files.saturating_sub(RESERVED_DESCRIPTORS);
        let spare = match shared_upstream {
            // n answers hold n client connections and ceil(n / per) upstream ones.
            Some(per) => {
                let per = u64::try_from(per.max(1)).unwrap_or(u64::MAX);
                free.saturating_mul(per) / per.saturating_add(1)
            }
            None => free / DESCRIPTORS_PER_STREAM,
        };
        usize::try_from(spare).unwrap_or(usize::MAX).max(1)
    });
    match (configured, affordable) {
        (0, Some(affordable)) => affordable,
        (0, None) => 10_000,
        (wanted, Some(affordable)) if wanted > affordable => {
            tracing::warn!(
                wanted,
                affordable,
                open_file_limit = files,
                "MAX_OPEN_STREAMS is more than the open-file limit allows; capping it (raise the \
                 limit, e.g. `ulimit -n` or LimitNOFILE= in the service unit)"
            );
            affordable
        }
        (wanted, _) => wanted,
    }
}

/// The count of open answers against the cap. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenStreams {
    cap: usize,
    open: Arc<AtomicUsize>,
}

/// One open answer; dropping it closes it.
#[derive(Debug)]
pub struct StreamSlot {
    open: Arc<AtomicUsize>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let now = self.open.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!(OPEN_STREAMS_GAUGE).set(now as f64);
    }
}

impl OpenStreams {
    /// At most `cap` answers open at once.
    pub fn new(cap: usize) -> Self {
        OpenStreams {
            cap: cap.max(1),
            open: Arc::default(),
        }
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Answers open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A slot, unless the cap is reached.
    pub fn try_open(&self) -> Option<StreamSlot> {
        let cap = self.cap;
        let before = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()?;
        metrics::gauge!(OPEN_STREAMS_GAUGE).set((before + 1) as f64);
        Some(StreamSlot {
            open: Arc::clone(&self.open),
        })
    }
}

fn is_chat(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "/v1/chat/completions" | "/v1/messages" | "/v1/responses"
    )
}

/// The axum middleware: chat answers take a slot held until their body ends or is dropped;
/// past the cap they are refused. Other routes pass.
pub async fn cap(State(streams): State<OpenStreams>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if !is_chat(&path) {
        return next.run(request).await;
    }
    let Some(slot) = streams.try_open() else {
        tracing::warn!(
            cap = streams.cap(),
            "refused an answer: MAX_OPEN_STREAMS answers are open"
        );
        let error = GatewayError::overloaded(format!(
            "The gateway has {} answers open, its limit (MAX_OPEN_STREAMS); retry in a moment.",
            streams.cap()
        ))
        .with_retry_after(Duration::from_secs(1));
        return error.to_response(dialect_for_path(&path)).map(Body::from);
    };
    let (parts, body) = next.run(request).await.into_parts();
    Response::from_parts(
        parts,
        Body::new(Held {
            inner: body,
            _slot: slot,
        }),
    )
}

/// A response body that holds its answer's slot until it ends or is dropped.
struct Held {
    inner: Body,
    _slot: StreamSlot,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(unix)]
mod imp {
    use rustix::process::{getrlimit, setrlimit, Resource};

    pub fn current() -> Option<u64> {
        getrlimit(Resource::Nofile).current
    }

    pub fn raise() -> Option<u64> {
        let limit = getrlimit(Resource::Nofile);
        let (Some(soft), hard) = (limit.current, limit.maximum) else {
            return None;
        };
        // An unlimited hard limit is not accepted as a soft limit everywhere: stay finite.
        let target = hard.unwrap_or(1 << 20);
        if target <= soft {
            tracing::info!(open_file_limit = soft, "open-file limit");
            return Some(soft);
        }
        let mut raised = limit;
        raised.current = Some(target);
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(from = soft, to = target, "raised the open-file limit");
                Some(target)
            }
            Err(error) => {
                tracing::warn!(
                    open_file_limit = soft,
                    "could not raise the open-file limit ({error}); MAX_OPEN_STREAMS is derived \
                     from {soft}"
                );
                Some(soft)
            }
        }
    }
}

#[cfg(not(unix))]
mod imp {
    pub fn current() -> Option<u64> {
        None
    }

    pub fn raise() -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_open_file_limit() {
        assert_eq!(stream_cap(0, Some(1024), None), 384);
        assert_eq!(stream_cap(0, Some(65_536), None), 32_640);
        assert_eq!(stream_cap(100, Some(65_536), None), 100);
        assert_eq!(stream_cap(50_000, Some(1024), None), 384);
        assert_eq!(stream_cap(0, Some(10), None), 1);
        assert_eq!(stream_cap(0, None, None), 10_000);
        assert_eq!(stream_cap(7, None, None), 7);
    }

    #[test]
    fn answers_sharing_http2_connections_need_about_one_descriptor_each() {
        // 20,000 descriptors (this bench machine's hard limit): 19,744 after the reserve, of
        // which 19,548 answers and 196 connections of 100 answers to Kiro.
        let cap = stream_cap(0, Some(20_000), Some(100));
        assert_eq!(cap, 19_548);
        assert!(cap + cap.div_ceil(100) <= 20_000 - 256);
        assert_eq!(stream_cap(10_000, Some(20_000), Some(100)), 10_000);
        assert_eq!(stream_cap(10_000, Some(20_000), None), 9_872);
        assert_eq!(stream_cap(0, Some(1024), Some(1)), 384);
    }

    #[test]
    fn slots_are_counted_and_given_back_once() {
        let streams = OpenStreams::new(2);
        let a = streams.try_open().unwrap();
        let b = streams.try_open().unwrap();
        assert!(streams.try_open().is_none());
        assert_eq!(streams.open(), 2);
        drop(a);
        let c = streams.try_open().unwrap();
        drop((b, c));
        assert_eq!(streams.open(), 0);
    }

    #[test]
    fn raising_the_limit_leaves_it_at_least_where_it_was() {
        let before = open_file_limit();
        let after = raise_open_file_limit();
        if let (Some(before), Some(after)) = (before, after) {
            assert!(after >= before);
            assert_eq!(open_file_limit(), Some(after));
        }
    }
}
