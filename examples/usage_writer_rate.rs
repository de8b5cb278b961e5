//! Measures how many usage rows per second the batched usage writer stores.
//!
//! ```text
//! cargo run --release --example usage_writer_rate -- sqlite:///tmp/rate.db 200000
//! cargo run --release --example usage_writer_rate -- postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! Records go through the real path (`UsageSink::record` → queue → batches → `insert_usage`,
//! each row charging a key and a user); the clock stops when `shutdown` has drained the queue.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kiro_gateway::store::crypto::{generate_api_key, hash_api_key, key_suffix};
use kiro_gateway::store::usage_writer::{usage_row, UsageWriter, UsageWriterConfig};
use kiro_gateway::store::{open, Secret};
use kiro_layers::store::{KeyKind, NewApiKey, NewUser};
use kiro_layers::traits::{Principal, UsageRecord, UsageSink, UsageStatus};

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "sqlite:///tmp/kiro-usage-rate.db".into());
    let rows: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let secret = Secret::from_bytes([9; 32]);
    let store = open(&url, &secret).await?;

    let user = store
        .create_user(NewUser {
            name: format!("rate-{}", uuid::Uuid::new_v4().simple()),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let (full, public_id) = generate_api_key();
    let key = store
        .create_api_key(NewApiKey {
            public_id,
            kind: KeyKind::Inference,
            user_id: Some(user.id),
            agent_id: None,
            name: "rate".into(),
            secret_hash: hash_api_key(&secret, &full).to_vec(),
            suffix: key_suffix(&full),
            expires_at: None,
            allowed_models: vec![],
            rpm_limit: None,
            max_concurrency: None,
            quota_limit: None,
        })
        .await
        .map_err(|e| e.to_string())?;

    let config = UsageWriterConfig::default();
    let capacity = config.capacity as u64;
    let (writer, handle) = UsageWriter::start(store, config, Arc::new(|r| usage_row(r, 3)));
    let run = uuid::Uuid::new_v4().simple().to_string();
    let principal = Principal {
        key_id: key.id.to_string(),
        user_id: Some(user.id.to_string()),
        ..Default::default()
    };
    let started = Instant::now();
    for i in 0..rows {
        // Stay under the queue's capacity: this measures the writer, not drops.
        while writer.stats().queue_depth() + 1 >= capacity {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        writer.record(UsageRecord {
            request_id: format!("{run}-{i}"),
            attempt: 1,
            principal: principal.clone(),
            requested_model: "claude-sonnet-4-5".into(),
            resolved_model: "claude-sonnet-4.5".into(),
            account_id: Some("1".into()),
            input_tokens: 1200,
            output_tokens: 300,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            credits: 0.02,
            status: UsageStatus::Ok,
            time_to_first_token: Some(Duration::from_millis(400)),
            duration: Duration::from_millis(2500),
            started_at: SystemTime::now(),
            account_kind: None,
            estimated: false,
        });
    }
    let stats = handle.shutdown().await;
    let elapsed = started.elapsed();
    println!(
        "{}: {} rows written in {:.2}s = {:.0} rows/s (dropped {}, failed {}, duplicates {})",
        kiro_gateway::store::redact_url(&url),
        stats.written(),
        elapsed.as_secs_f64(),
        stats.written() as f64 / elapsed.as_secs_f64(),
        stats.dropped(),
        stats.failed(),
        stats.duplicates()
    );
    Ok(())
}
