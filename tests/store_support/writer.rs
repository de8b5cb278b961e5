//! The usage writer against a database that goes away ([`FlakyStore`] around each backend):
//! an outage keeps rows queued and retried for as long as it lasts, then every row arrives
//! exactly once; a database that answers but refuses still gives up after `max_attempts`;
//! shutdown during an outage ends within its grace; the queue is bounded.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kiro_gateway::store::usage_writer::{usage_row, UsageWriter, UsageWriterConfig};
use kiro_layers::store::{Store, UsageFilter, UsageGroup};
use kiro_layers::traits::{Principal, UsageRecord, UsageSink, UsageStatus};

use super::flaky::{FlakyStore, Mode};
use super::Backend;

/// A one-token usage record of the environment key (what the writer tests queue).
pub fn record(request_id: String) -> UsageRecord {
    UsageRecord {
        request_id,
        attempt: 1,
        principal: Principal {
            key_id: "env-key".into(),
            ..Default::default()
        },
        requested_model: "m".into(),
        resolved_model: "m".into(),
        account_id: None,
        input_tokens: 1,
        output_tokens: 1,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        credits: 0.0,
        status: UsageStatus::Ok,
        time_to_first_token: None,
        duration: Duration::from_millis(1),
        started_at: SystemTime::now(),
        account_kind: None,
        estimated: false,
    }
}

/// Fast retries, so "many attempts" takes milliseconds.
fn config() -> UsageWriterConfig {
    UsageWriterConfig {
        capacity: 10_000,
        batch_size: 50,
        flush_interval: Duration::from_millis(10),
        max_attempts: 3,
        max_backoff: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(10),
        spill_file: None,
    }
}

fn start(
    store: &Arc<FlakyStore>,
    config: UsageWriterConfig,
) -> (UsageWriter, kiro_gateway::store::UsageWriterHandle) {
    UsageWriter::start(
        Arc::clone(store) as Arc<dyn Store>,
        config,
        Arc::new(|r| usage_row(r, 1)),
    )
}

async fn stored(store: &dyn Store) -> (u64, i64) {
    let rows = store
        .query_usage(UsageFilter::default(), UsageGroup::Model)
        .await
        .unwrap();
    (
        rows.iter().map(|r| r.requests).sum(),
        rows.iter().map(|r| r.charged).sum(),
    )
}

async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// Down for far longer than `max_attempts` retries take: nothing is given up; back up, every
/// row arrives once; lost acknowledgements are retried and not counted twice.
pub async fn rides_out_an_outage(b: &Backend) {
    let flaky = FlakyStore::new(Arc::clone(&b.store));
    flaky.set(Mode::Down);
    let (writer, handle) = start(&flaky, config());
    for i in 0..500 {
        writer.record(record(format!("outage-{i}")));
    }
    // `max_attempts` (3) with a 20 ms cap take well under 100 ms; the outage lasts 800 ms.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let attempts = flaky.inserts.load(Ordering::SeqCst);
    assert!(attempts > 6, "only {attempts} attempts during the outage");
    let stats = handle.stats();
    assert_eq!(
        (stats.written(), stats.failed(), stats.dropped()),
        (0, 0, 0)
    );
    assert!(stats.retries() >= attempts - 1);
    assert_eq!(stored(b.store.as_ref()).await.0, 0);

    flaky.set(Mode::Up);
    eventually("the queued rows are written", || {
        handle.stats().written() == 500
    })
    .await;

    flaky.acks_to_lose.store(2, Ordering::SeqCst);
    flaky.set(Mode::LosingAcks);
    for i in 0..100 {
        writer.record(record(format!("acks-{i}")));
    }
    let stats = handle.shutdown().await;
    assert_eq!((stats.failed(), stats.dropped()), (0, 0));
    // Rows of a batch whose acknowledgement was lost are found already stored on the retry.
    assert!(stats.duplicates() >= 2, "{}", stats.duplicates());
    assert_eq!(stats.written() + stats.duplicates(), 600);
    // Exactly once, and charged once.
    assert_eq!(stored(b.store.as_ref()).await, (600, 600));
}

/// A database that answers pings but refuses the insert: given up after `max_attempts`.
pub async fn gives_up_on_a_refused_batch(b: &Backend) {
    let flaky = FlakyStore::new(Arc::clone(&b.store));
    flaky.set(Mode::Refusing);
    let (writer, handle) = start(&flaky, config());
    for i in 0..10 {
        writer.record(record(format!("refused-{i}")));
    }
    eventually("the batch is given up", || handle.stats().failed() == 10).await;
    // `max_attempts` per batch (the ten rows may have come in one batch or two).
    assert_eq!(flaky.inserts.load(Ordering::SeqCst) % 3, 0);
    flaky.set(Mode::Up);
    writer.record(record("after".into()));
    let stats = handle.shutdown().await;
    assert_eq!((stats.written(), stats.failed()), (1, 10));
}

/// Shutdown while the database is down ends within its grace and counts the rows it lost; the
/// queue is bounded while down.
pub async fn shutdown_during_an_outage_is_bounded(b: &Backend) {
    let flaky = FlakyStore::new(Arc::clone(&b.store));
    flaky.set(Mode::Down);
    let config = UsageWriterConfig {
        capacity: 100,
        shutdown_grace: Duration::from_millis(300),
        ..config()
    };
    let (writer, handle) = start(&flaky, config);
    for i in 0..300 {
        writer.record(record(format!("bounded-{i}")));
    }
    // At most the queue plus the batch being retried are held; the rest is refused at once.
    let held = 300 - writer.stats().dropped();
    assert!((100..=150).contains(&held), "{held} rows held");
    let started = std::time::Instant::now();
    let stats = handle.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.written(), 0);
    assert_eq!(stats.failed(), held, "every held row is counted as lost");
    assert_eq!(stored(b.store.as_ref()).await.0, 0);
}

/// The same shutdown with a spill file: the held rows go to the file instead of being lost, and
/// replaying it once the database is back stores each of them.
pub async fn shutdown_during_an_outage_spills_the_held_rows(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("usage-spill.jsonl");
    let flaky = FlakyStore::new(Arc::clone(&b.store));
    flaky.set(Mode::Down);
    let config = UsageWriterConfig {
        capacity: 100,
        shutdown_grace: Duration::from_millis(300),
        spill_file: Some(file.clone()),
        ..config()
    };
    let (writer, handle) = start(&flaky, config);
    for i in 0..120 {
        writer.record(record(format!("spilled-{i}")));
    }
    let held = 120 - writer.stats().dropped();
    let stats = handle.shutdown().await;
    assert_eq!((stats.written(), stats.failed()), (0, 0));
    assert_eq!(stats.spilled(), held, "every held row is in the file");
    let lines = std::fs::read_to_string(&file).unwrap().lines().count() as u64;
    assert_eq!(lines, held);
    assert_eq!(stored(b.store.as_ref()).await.0, 0);
    let replayed = kiro_gateway::store::usage_spill::replay(b.store.as_ref(), &file)
        .await
        .unwrap();
    assert_eq!((replayed.rows, replayed.stored), (held, held));
    assert_eq!(stored(b.store.as_ref()).await.0, held);
}
