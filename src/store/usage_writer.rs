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

use kiro_layers::rescue::RequestId;
use kiro_layers::store::{Store, StoreError, UsageRow};
use kiro_layers::traits::{UsageRecord, UsageSink};
use tokio::sync::{mpsc, watch};
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
    /// Attempts per batch, while the database answers, before its rows count as failed.
    /// Attempts during an outage (the database does not answer a ping) do not count.
    pub max_attempts: u32,
    /// Longest pause between two attempts (the pause doubles from 50 ms).
    pub max_backoff: Duration,
    /// How long shutdown keeps retrying while the database is down before giving up (the
    /// gateway uses `SHUTDOWN_TIMEOUT`).
    pub shutdown_grace: Duration,
    /// Where rows go when shutdown gives up on the database (see [`super::usage_spill`]);
    /// `None`: they are lost (logged and counted).
    pub spill_file: Option<std::path::PathBuf>,
}

impl Default for UsageWriterConfig {
    fn default() -> Self {
        UsageWriterConfig {
            capacity: 50_000,
            batch_size: 500,
            flush_interval: Duration::from_millis(200),
            max_attempts: 8,
            max_backoff: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(15),
            spill_file: None,
        }
    }
}

/// Turns a usage record into a stored row (resolves owners, prices the attempt).
pub type ToRow = Arc<dyn Fn(UsageRecord) -> UsageRow + Send + Sync>;

/// The row of `record`, charging `charged` micro-credits. Principal ids that are not numbers
/// (a key from the environment) are stored as absent.
///
/// Rows are unique by `(request_id, attempt)`, which makes the writer's retries idempotent, so
/// distinct records must never share a request id: an empty one gets a fresh id, and one the
/// client chose (`x-request-id`, which a client may send on every request) gets a random
/// `~suffix`: it stays searchable by the client's id, and a reused id neither hides a request's
/// usage nor spares its charge. The gateway's own ids (`req_…`) are unique already and are
/// kept as they are, so the attempts of one request share their id.
pub fn usage_row(record: UsageRecord, charged: i64) -> UsageRow {
    let id = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok());
    let fresh = || uuid::Uuid::new_v4().simple().to_string();
    let request_id = if record.request_id.is_empty() {
        format!("gen_{}", fresh())
    } else if RequestId(record.request_id.clone()).is_generated() {
        record.request_id
    } else {
        format!("{}~{}", record.request_id, &fresh()[..12])
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
        account_kind: record
            .account_kind
            .as_ref()
            .map(|k| stored_text(k.as_str())),
        estimated: record.estimated,
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
    retries: AtomicU64,
    spilled: AtomicU64,
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
    /// Failed insert attempts that were retried.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    /// Rows saved to the spill file at shutdown, for the next start to store.
    pub fn spilled(&self) -> u64 {
        self.spilled.load(Ordering::Relaxed)
    }

    fn lose(&self, counter: &AtomicU64, rows: u64) {
        counter.fetch_add(rows, Ordering::Relaxed);
        kiro_layers::metrics::usage_dropped(rows);
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
    stop: watch::Sender<bool>,
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
        let (stop, stop_rx) = watch::channel(false);
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
                let dropped = self.stats.dropped.load(Ordering::Relaxed);
                self.stats.lose(&self.stats.dropped, 1);
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
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!("usage writer task failed: {error}");
        }
        self.stats
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<UsageRow>,
    stop: watch::Receiver<bool>,
    config: UsageWriterConfig,
    stats: Arc<UsageWriterStats>,
) {
    let batch_size = config.batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut writer = BatchWriter {
        store,
        config,
        stats,
        stop,
        give_up_at: None,
        abandoned: false,
    };
    let mut closed = false;
    loop {
        if writer.stopping() && !closed {
            // Stop intake (the stop may have been seen while retrying); what is queued is still
            // delivered below.
            rx.close();
            closed = true;
        }
        let received = if closed {
            rx.recv_many(&mut batch, batch_size).await
        } else {
            tokio::select! {
                _ = writer.stop.changed() => {
                    writer.begin_stop();
                    continue;
                }
                n = rx.recv_many(&mut batch, batch_size) => n,
            }
        };
        if received == 0 {
            break; // closed and empty
        }
        // Let the batch fill for up to one interval (not while draining for shutdown).
        let deadline = Instant::now() + writer.config.flush_interval;
        while !writer.stopping() && batch.len() < batch_size {
            let room = batch_size - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        writer
            .stats
            .depth
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        writer.write(&batch).await;
        writer.show_depth(0);
        batch.clear();
    }
}

/// First pause between attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Longest wait for the ping that tells an outage from a bad batch.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// How often an ongoing outage is logged again.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(30);

/// The writing half of the task: retries, outage detection, the shutdown deadline.
struct BatchWriter {
    store: Arc<dyn Store>,
    config: UsageWriterConfig,
    stats: Arc<UsageWriterStats>,
    stop: watch::Receiver<bool>,
    /// Set when shutdown begins: retries stop at this instant.
    give_up_at: Option<Instant>,
    /// The shutdown deadline passed with the database down: the rest is counted, not tried.
    abandoned: bool,
}

impl BatchWriter {
    /// Shutdown gave up on the database: `batch` goes to the spill file, or is lost.
    fn spill_or_lose(&self, batch: &[UsageRow]) {
        let rows = batch.len() as u64;
        let Some(file) = &self.config.spill_file else {
            self.stats.lose(&self.stats.failed, rows);
            return;
        };
        match super::usage_spill::append(file, batch) {
            Ok(()) => {
                self.stats.spilled.fetch_add(rows, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::error!(
                    rows,
                    "usage rows lost: cannot write them to {}: {error}",
                    file.display()
                );
                self.stats.lose(&self.stats.failed, rows);
            }
        }
    }

    fn stopping(&self) -> bool {
        self.give_up_at.is_some()
    }

    fn begin_stop(&mut self) {
        if self.give_up_at.is_none() {
            self.give_up_at = Some(Instant::now() + self.config.shutdown_grace);
        }
    }

    /// Publishes the backlog: queued rows plus `in_hand` rows being written.
    fn show_depth(&self, in_hand: usize) {
        let depth = self.stats.depth.load(Ordering::Relaxed) as usize + in_hand;
        kiro_layers::metrics::usage_queue_depth(depth);
    }

    /// Waits `delay` before the next attempt; false when shutdown's deadline has passed.
    async fn pause(&mut self, delay: Duration) -> bool {
        match self.give_up_at {
            None => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    // A closed channel (handle dropped) counts as a stop too.
                    _ = self.stop.changed() => self.begin_stop(),
                }
            }
            Some(at) => tokio::time::sleep_until((Instant::now() + delay).min(at)).await,
        }
        self.give_up_at.is_none_or(|at| Instant::now() < at)
    }

    /// One insert. A stop that arrives meanwhile starts the shutdown deadline, and from then on
    /// an attempt hanging on an unreachable database ends at the deadline.
    async fn attempt(&mut self, batch: &[UsageRow]) -> Result<u64, StoreError> {
        let attempt = self.store.insert_usage(batch);
        tokio::pin!(attempt);
        if self.give_up_at.is_none() {
            tokio::select! {
                result = &mut attempt => return result,
                // A closed channel (handle dropped) counts as a stop too.
                _ = self.stop.changed() => {
                    self.give_up_at = Some(Instant::now() + self.config.shutdown_grace);
                }
            }
        }
        let deadline = self.give_up_at.unwrap_or_else(Instant::now);
        tokio::time::timeout_at(deadline, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Backend(
                    "no answer before the shutdown deadline".into(),
                ))
            })
    }

    /// True when the database answers a trivial query right now.
    async fn reachable(&self) -> bool {
        matches!(
            tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await,
            Ok(Ok(()))
        )
    }

    /// Inserts one batch; see the module docs for the retry rules.
    async fn write(&mut self, batch: &[UsageRow]) {
        if self.abandoned {
            self.spill_or_lose(batch);
            return;
        }
        let mut delay = FIRST_BACKOFF;
        let mut attempts_while_up = 0;
        let mut outage: Option<(Instant, Instant)> = None; // (since, last logged)
        loop {
            let result = self.attempt(batch).await;
            let error = match result {
                Ok(inserted) => {
                    self.stats.written.fetch_add(inserted, Ordering::Relaxed);
                    self.stats
                        .duplicates
                        .fetch_add(batch.len() as u64 - inserted, Ordering::Relaxed);
                    if let Some((since, _)) = outage {
                        tracing::warn!(
                            rows = batch.len(),
                            queued = self.stats.queue_depth(),
                            "usage writes resumed: the database is back ({:.1} s after the \
                             outage was noticed)",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    return;
                }
                Err(StoreError::Invalid(message)) if batch.len() > 1 => {
                    tracing::warn!("usage batch refused ({message}); inserting row by row");
                    for row in batch {
                        Box::pin(self.write(std::slice::from_ref(row))).await;
                    }
                    return;
                }
                Err(StoreError::Invalid(message)) => {
                    let request_id = batch.first().map_or("", |r| r.request_id.as_str());
                    tracing::error!(request_id, "usage row refused: {message}");
                    self.stats.lose(&self.stats.failed, 1);
                    return;
                }
                Err(error) => error,
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            self.show_depth(batch.len());
            if self.reachable().await {
                attempts_while_up += 1;
                tracing::warn!(
                    attempt = attempts_while_up,
                    rows = batch.len(),
                    "usage insert failed: {error}"
                );
                if attempts_while_up >= self.config.max_attempts.max(1) {
                    tracing::error!(
                        rows = batch.len(),
                        "usage rows lost: the insert failed {attempts_while_up} times: {error}"
                    );
                    self.stats.lose(&self.stats.failed, batch.len() as u64);
                    return;
                }
            } else {
                let now = Instant::now();
                match &mut outage {
                    None => {
                        tracing::error!(
                            rows = batch.len(),
                            queued = self.stats.queue_depth(),
                            "the database is unreachable ({error}); usage rows stay queued and \
                             are retried until it is back"
                        );
                        outage = Some((now, now));
                    }
                    Some((since, logged)) if now.duration_since(*logged) >= OUTAGE_LOG_EVERY => {
                        tracing::error!(
                            queued = self.stats.queue_depth() + batch.len() as u64,
                            "the database is still unreachable after {} s ({error})",
                            now.duration_since(*since).as_secs()
                        );
                        *logged = now;
                    }
                    Some(_) => {}
                }
            }
            if !self.pause(delay).await {
                let left = batch.len() as u64 + self.stats.queue_depth();
                match &self.config.spill_file {
                    Some(file) => tracing::error!(
                        rows = left,
                        "shutting down while usage inserts fail ({error}): {left} usage rows go \
                         to {} and are stored at the next start",
                        file.display()
                    ),
                    None => tracing::error!(
                        rows = left,
                        "shutting down while usage inserts fail: {left} usage rows are lost \
                         ({error})"
                    ),
                }
                self.abandoned = true;
                self.spill_or_lose(batch);
                return;
            }
            delay = (delay * 2).min(self.config.max_backoff.max(FIRST_BACKOFF));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(request_id: &str) -> UsageRecord {
        UsageRecord {
            request_id: request_id.into(),
            attempt: 1,
            principal: Default::default(),
            requested_model: "m".into(),
            resolved_model: "m".into(),
            account_id: None,
            input_tokens: 0,
            output_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            credits: 0.0,
            status: kiro_layers::traits::UsageStatus::Ok,
            time_to_first_token: None,
            duration: Duration::ZERO,
            started_at: std::time::SystemTime::now(),
            account_kind: None,
            estimated: false,
        }
    }

    #[test]
    fn request_ids_of_distinct_records_never_collide() {
        let own = RequestId::generate().0;
        assert_eq!(usage_row(record(&own), 0).request_id, own);
        let a = usage_row(record("client-trace-1"), 0).request_id;
        let b = usage_row(record("client-trace-1"), 0).request_id;
        assert!(a.starts_with("client-trace-1~") && b.starts_with("client-trace-1~"));
        assert_ne!(a, b);
        assert!(usage_row(record(""), 0).request_id.starts_with("gen_"));
    }

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
