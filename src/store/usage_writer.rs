//! [`UsageWriter`]: the [`UsageSink`] that stores usage without making requests wait on the
//! database. `record` converts the record to a row and puts it on a bounded queue (never
//! blocks); a background task inserts rows in batches (every `batch_size` rows or
//! `flush_interval`, whichever comes first), retrying failed batches (inserts are idempotent
//! by `(request_id, attempt)`, so a retry never counts twice).
//! [`UsageWriterHandle::shutdown`] stops intake and drains the queue completely.
//!
//! When the queue is full the record is dropped, counted in [`UsageWriterStats::dropped`] and
//! logged: the request path never waits and never panics. Size the queue so this stays 0.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn kiro_layers::store::Store>) {
//! use kiro_gateway::store::usage_writer::{usage_row, UsageWriter, UsageWriterConfig};
//! let (writer, handle) = UsageWriter::start(
//!     store,
//!     UsageWriterConfig::default(),
//!     std::sync::Arc::new(|record| usage_row(record, 0)),
//! );
//! // give `writer` to the stack as its UsageSink; at shutdown:
//! let stats = handle.shutdown().await;
//! assert_eq!(stats.dropped(), 0);
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kiro_layers::store::{Store, StoreError, UsageRow};
use kiro_layers::traits::{UsageRecord, UsageSink};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct UsageWriterConfig {
    /// Rows the queue holds before records are dropped.
    pub capacity: usize,
    /// Rows per insert.
    pub batch_size: usize,
    /// Longest a row waits for its batch to fill.
    pub flush_interval: Duration,
    /// Attempts per batch before its rows count as failed.
    pub max_attempts: u32,
}

impl Default for UsageWriterConfig {
    fn default() -> Self {
        UsageWriterConfig {
            capacity: 50_000,
            batch_size: 500,
            flush_interval: Duration::from_millis(200),
            max_attempts: 8,
        }
    }
}

/// Turns a usage record into a stored row (resolves owners, prices the attempt).
pub type ToRow = Arc<dyn Fn(UsageRecord) -> UsageRow + Send + Sync>;

/// The row of `record`, charging `charged` micro-credits. Principal ids that are not numbers
/// (a key from the environment) are stored as absent; an empty request id gets a fresh one so
/// distinct records never collide.
pub fn usage_row(record: UsageRecord, charged: i64) -> UsageRow {
    let id = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok());
    let request_id = if record.request_id.is_empty() {
        format!("gen_{}", uuid::Uuid::new_v4().simple())
    } else {
        record.request_id
    };
    UsageRow {
        request_id: stored_text(&request_id),
        attempt: record.attempt,
        user_id: id(record.principal.user_id.as_deref()),
        agent_id: id(record.principal.agent_id.as_deref()),
        key_id: id(Some(record.principal.key_id.as_str())),
        // The requested model is whatever the client sent: keep it readable and bounded.
        requested_model: stored_text(&record.requested_model),
        resolved_model: stored_text(&record.resolved_model),
        account_id: record.account_id.as_deref().map(stored_text),
        input_tokens: record.input_tokens,
        output_tokens: record.output_tokens,
        cache_read_tokens: record.cache_read_tokens,
        cache_write_tokens: record.cache_write_tokens,
        credits: record.credits,
        status: record.status,
        time_to_first_token: record.time_to_first_token,
        duration: record.duration,
        started_at: chrono::DateTime::<chrono::Utc>::from(record.started_at),
        charged,
    }
}

/// Longest text stored in a usage row, in characters.
const MAX_STORED_TEXT: usize = 200;

/// `text` as a usage row stores it: control characters (NUL, which PostgreSQL cannot store,
/// included) become U+FFFD, and at most [`MAX_STORED_TEXT`] characters are kept.
fn stored_text(text: &str) -> String {
    text.chars()
        .take(MAX_STORED_TEXT)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// Counters shared by the writer, its task and its handle.
#[derive(Debug, Default)]
pub struct UsageWriterStats {
    depth: AtomicU64,
    written: AtomicU64,
    duplicates: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl UsageWriterStats {
    /// Rows waiting in the queue.
    pub fn queue_depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
    /// Rows newly stored.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    /// Rows the database already had (retries, replays).
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
    /// Records refused because the queue was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Rows given up on after every attempt failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// The sink: cheap to clone, never blocks.
#[derive(Clone)]
pub struct UsageWriter {
    queue: mpsc::Sender<UsageRow>,
    to_row: ToRow,
    stats: Arc<UsageWriterStats>,
}

/// Owns the background task; [`UsageWriterHandle::shutdown`] drains it.
pub struct UsageWriterHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    stats: Arc<UsageWriterStats>,
}

impl UsageWriter {
    /// Starts the background task on the current runtime.
    pub fn start(
        store: Arc<dyn Store>,
        config: UsageWriterConfig,
        to_row: ToRow,
    ) -> (UsageWriter, UsageWriterHandle) {
        let (queue, rx) = mpsc::channel(config.capacity.max(1));
        let (stop, stop_rx) = oneshot::channel();
        let stats = Arc::new(UsageWriterStats::default());
        let task = tokio::spawn(run(store, rx, stop_rx, config, Arc::clone(&stats)));
        let writer = UsageWriter {
            queue,
            to_row,
            stats: Arc::clone(&stats),
        };
        (writer, UsageWriterHandle { stop, task, stats })
    }

    /// Queues a row directly.
    pub fn push(&self, row: UsageRow) {
        match self.queue.try_send(row) {
            Ok(()) => {
                self.stats.depth.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                // Log the first drop and then every thousandth, not every one.
                if dropped.checked_rem(1000) == Some(0) {
                    let why = match error {
                        mpsc::error::TrySendError::Full(_) => "the usage queue is full",
                        mpsc::error::TrySendError::Closed(_) => "the usage writer has stopped",
                    };
                    tracing::error!(dropped = dropped + 1, "usage record dropped: {why}");
                }
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> &UsageWriterStats {
        &self.stats
    }
}

impl UsageSink for UsageWriter {
    fn record(&self, record: UsageRecord) {
        self.push((self.to_row)(record));
    }
}

impl UsageWriterHandle {
    /// The counters.
    pub fn stats(&self) -> &UsageWriterStats {
        &self.stats
    }

    /// Stops taking records, writes everything queued, and returns the final counters.
    pub async fn shutdown(self) -> Arc<UsageWriterStats> {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!("usage writer task failed: {error}");
        }
        self.stats
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<UsageRow>,
    mut stop: oneshot::Receiver<()>,
    config: UsageWriterConfig,
    stats: Arc<UsageWriterStats>,
) {
    let batch_size = config.batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut stopping = false;
    loop {
        let received = if stopping {
            rx.recv_many(&mut batch, batch_size).await
        } else {
            tokio::select! {
                _ = &mut stop => {
                    // Stop intake; what is queued is still delivered below.
                    rx.close();
                    stopping = true;
                    continue;
                }
                n = rx.recv_many(&mut batch, batch_size) => n,
            }
        };
        if received == 0 {
            break; // closed and empty
        }
        // Let the batch fill for up to one interval (not while draining for shutdown).
        let deadline = Instant::now() + config.flush_interval;
        while !stopping && batch.len() < batch_size {
            let room = batch_size - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        stats.depth.fetch_sub(batch.len() as u64, Ordering::Relaxed);
        write_batch(store.as_ref(), &batch, &config, &stats).await;
        batch.clear();
    }
}

/// Inserts one batch, retrying with backoff; a batch refused as invalid is retried row by
/// row so one bad row does not lose the others.
async fn write_batch(
    store: &dyn Store,
    batch: &[UsageRow],
    config: &UsageWriterConfig,
    stats: &UsageWriterStats,
) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=config.max_attempts.max(1) {
        match store.insert_usage(batch).await {
            Ok(inserted) => {
                stats.written.fetch_add(inserted, Ordering::Relaxed);
                stats
                    .duplicates
                    .fetch_add(batch.len() as u64 - inserted, Ordering::Relaxed);
                return;
            }
            Err(StoreError::Invalid(message)) if batch.len() > 1 => {
                tracing::warn!("usage batch refused ({message}); inserting row by row");
                for row in batch {
                    Box::pin(write_batch(store, std::slice::from_ref(row), config, stats)).await;
                }
                return;
            }
            Err(StoreError::Invalid(message)) => {
                let request_id = batch.first().map_or("", |r| r.request_id.as_str());
                tracing::error!(request_id, "usage row refused: {message}");
                break;
            }
            Err(error) => {
                tracing::warn!(attempt, rows = batch.len(), "usage insert failed: {error}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    stats
        .failed
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_is_printable_and_bounded() {
        assert_eq!(stored_text("claude-sonnet-4.5"), "claude-sonnet-4.5");
        assert_eq!(stored_text("a\0b\nc"), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(
            stored_text(&"é".repeat(500)).chars().count(),
            MAX_STORED_TEXT
        );
    }
}
