//! The pool's throttle rests and its line of waiting requests, on a paused clock.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::tests::Fixed;
use super::{CredentialProvider, PoolPolicy, RoundRobinPool};
use crate::traits::{AttemptOutcome, TokenSource};

fn pool(accounts: usize, policy: PoolPolicy) -> RoundRobinPool {
    let providers = (0..accounts)
        .map(|i| Arc::new(Fixed(format!("a{i}"))) as Arc<dyn CredentialProvider>)
        .collect();
    RoundRobinPool::new(providers, policy)
}

fn throttled(after: Option<u64>) -> AttemptOutcome {
    AttemptOutcome::Throttled {
        retry_after: after.map(Duration::from_secs),
    }
}

/// Leases and throttles `pool`'s next account, returning when that happened.
async fn throttle_once(pool: &RoundRobinPool, after: Option<u64>) -> Instant {
    let lease = pool.acquire("auto").await.unwrap();
    lease.report(throttled(after));
    Instant::now()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_throttle_rests_the_only_account_a_second_and_the_next_request_waits_for_it() {
    let pool = pool(1, PoolPolicy::default());
    let throttled_at = throttle_once(&pool, None).await;
    let lease = pool.acquire("auto").await.unwrap();
    assert_eq!(Instant::now() - throttled_at, Duration::from_secs(1));
    // The next throttle in a row rests twice as long; a success starts over.
    lease.report(throttled(None));
    drop(lease);
    let second_at = Instant::now();
    let lease = pool.acquire("auto").await.unwrap();
    assert_eq!(Instant::now() - second_at, Duration::from_secs(2));
    lease.report(AttemptOutcome::Success);
    drop(lease);
    let third_at = throttle_once(&pool, None).await;
    pool.acquire("auto").await.unwrap();
    assert_eq!(Instant::now() - third_at, Duration::from_secs(1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_throttled_account_is_skipped_for_a_free_one_without_waiting() {
    let pool = pool(2, PoolPolicy::default());
    throttle_once(&pool, Some(5)).await;
    let start = Instant::now();
    for _ in 0..3 {
        let lease = pool.acquire("auto").await.unwrap();
        assert_eq!(lease.credential.account_id, "a1");
    }
    assert_eq!(Instant::now(), start);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_rest_longer_than_the_wait_is_refused_at_once_429_when_throttled_503_for_quota() {
    let policy = PoolPolicy {
        queue_timeout: Duration::from_secs(10),
        ..PoolPolicy::default()
    };
    let throttled_pool = pool(1, policy.clone());
    throttle_once(&throttled_pool, Some(60)).await;
    let start = Instant::now();
    let error = throttled_pool.acquire("auto").await.unwrap_err();
    assert_eq!(error.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(error.retry_after().unwrap() > Duration::from_secs(50));
    assert_eq!(Instant::now(), start, "no wait in vain");

    let quota_pool = pool(1, policy);
    let lease = quota_pool.acquire("auto").await.unwrap();
    lease.report(AttemptOutcome::QuotaExhausted);
    drop(lease);
    let error = quota_pool.acquire("auto").await.unwrap_err();
    assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(error.retry_after().unwrap() > Duration::from_secs(3000));
    assert_eq!(Instant::now(), start);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn busy_accounts_serve_the_line_in_arrival_order() {
    let policy = PoolPolicy {
        max_concurrency_per_account: 1,
        ..PoolPolicy::default()
    };
    let pool = pool(1, policy);
    let held = pool.acquire("auto").await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for who in 0..4 {
        let (pool, order) = (pool.clone(), Arc::clone(&order));
        waiters.push(tokio::spawn(async move {
            let lease = pool.acquire("auto").await.unwrap();
            order.lock().unwrap().push(who);
            // Each holds the account a moment before giving it back.
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(lease);
        }));
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.waiting(), 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(held);
    for waiter in waiters {
        waiter.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
    assert_eq!(pool.waiting(), 0);
    assert_eq!(pool.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_waits_at_most_the_queue_timeout_then_gets_a_503_with_retry_after() {
    let policy = PoolPolicy {
        max_concurrency_per_account: 1,
        queue_timeout: Duration::from_secs(3),
        ..PoolPolicy::default()
    };
    let pool = pool(1, policy);
    let _held = pool.acquire("auto").await.unwrap();
    let start = Instant::now();
    let error = pool.acquire("auto").await.unwrap_err();
    assert_eq!(Instant::now() - start, Duration::from_secs(3));
    assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(error.retry_after().is_some());
    assert_eq!(pool.waiting(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_answer_deadline_caps_the_wait_below_the_queue_timeout() {
    let pool = pool(1, PoolPolicy::default());
    throttle_once(&pool, Some(5)).await;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(2);
    let error = super::queue::waiting_until(deadline, pool.acquire("auto"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        Instant::now(),
        start,
        "the rest ends after the answer's deadline"
    );
}
