//! The shared counter engines against real servers: PostgreSQL (`TEST_DATABASE_URL`, started by
//! scripts/pg.sh) and Redis (`TEST_REDIS_URL`, started by scripts/redis.sh). Two engine clients
//! stand for two gateway processes. Under CI a missing server is a failure, not a skip.

mod limits_support;

use std::sync::Arc;
use std::time::Duration;

use kiro_gateway::tenancy::shared_limits::{CounterEngine, Hit};
use limits_support::engines;

/// `hits` requests at once, spread over `clients`, against a window of `limit`.
async fn concurrent_hits(
    clients: &[Arc<dyn CounterEngine>],
    subject: &str,
    limit: u32,
    hits: usize,
) -> (usize, Vec<Duration>) {
    let mut tasks = Vec::new();
    for i in 0..hits {
        let client = Arc::clone(&clients[i % clients.len()]);
        let subject = subject.to_owned();
        tasks.push(tokio::spawn(async move {
            client
                .hit(&subject, limit, Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut admitted = 0;
    let mut waits = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Hit::Admitted => admitted += 1,
            Hit::Refused(after) => waits.push(after),
        }
    }
    (admitted, waits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_window_admits_exactly_its_limit_across_two_clients() {
    for (name, clients) in engines(2).await {
        let subject = format!("key:{}", uuid::Uuid::new_v4().simple());
        // Aligned to the start of a window so all 60 hits fall in one (a hit in the last
        // second of a window would land in the next one).
        limits_support::away_from_window_end().await;
        let (admitted, waits) = concurrent_hits(&clients, &subject, 10, 60).await;
        assert_eq!(admitted, 10, "{name}: exactly the limit");
        assert_eq!(waits.len(), 50);
        for wait in waits {
            assert!(
                wait > Duration::ZERO && wait <= Duration::from_secs(60),
                "{name}: {wait:?}"
            );
        }
        // Another subject has its own window.
        let other = format!("user:{}", uuid::Uuid::new_v4().simple());
        let (admitted, _) = concurrent_hits(&clients, &other, 3, 5).await;
        assert_eq!(admitted, 3, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slots_cap_concurrency_across_two_clients_and_come_back_on_release() {
    for (name, clients) in engines(2).await {
        let subject = format!("key:{}", uuid::Uuid::new_v4().simple());
        let mut tasks = Vec::new();
        for i in 0..30 {
            let client = Arc::clone(&clients[i % 2]);
            let subject = subject.clone();
            tasks.push(tokio::spawn(async move {
                let lease = format!("lease-{i}");
                let taken = client
                    .acquire(&subject, 3, &lease, Duration::from_secs(60))
                    .await
                    .unwrap();
                taken.then_some(lease)
            }));
        }
        let mut held = Vec::new();
        for task in tasks {
            held.extend(task.await.unwrap());
        }
        assert_eq!(held.len(), 3, "{name}: exactly the cap");
        let ttl = Duration::from_secs(60);
        assert!(!clients[0].acquire(&subject, 3, "late", ttl).await.unwrap());
        clients[1].release(&subject, &held[0]).await.unwrap();
        assert!(
            clients[0].acquire(&subject, 3, "late", ttl).await.unwrap(),
            "{name}"
        );
        assert!(!clients[1].acquire(&subject, 3, "later", ttl).await.unwrap());
        clients[0].probe().await.unwrap();
    }
}

#[tokio::test]
async fn a_slot_its_process_stops_renewing_expires_and_a_renewed_one_does_not() {
    for (name, clients) in engines(2).await {
        let subject = format!("key:{}", uuid::Uuid::new_v4().simple());
        let ttl = Duration::from_millis(600);
        // The "crashed" process took a slot and never renews it; the live one renews its own.
        assert!(clients[0]
            .acquire(&subject, 2, "crashed", ttl)
            .await
            .unwrap());
        assert!(clients[1].acquire(&subject, 2, "alive", ttl).await.unwrap());
        assert!(!clients[1].acquire(&subject, 2, "extra", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(350)).await;
        clients[1]
            .renew(&[(subject.clone(), "alive".to_owned())], ttl)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        // 750 ms in: "crashed" expired, "alive" was renewed at 350 ms until 950 ms.
        assert!(
            clients[1].acquire(&subject, 2, "extra", ttl).await.unwrap(),
            "{name}: the crashed process's slot came back"
        );
        assert!(
            !clients[0]
                .acquire(&subject, 2, "one-more", ttl)
                .await
                .unwrap(),
            "{name}: the renewed slot still counts"
        );
    }
}
