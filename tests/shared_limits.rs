//! The shared counter engines against real servers: PostgreSQL (`TEST_DATABASE_URL`, started by
//! scripts/pg.sh) and Redis (`TEST_REDIS_URL`, started by scripts/redis.sh). Two engine clients
//! stand for two gateway processes. Under CI a missing server is a failure, not a skip.

mod limits_support;

use std::sync::Arc;
use std::time::Duration;

use kiro_gateway::tenancy::limits::{Limits, QuotaBook, Subject};
use kiro_gateway::tenancy::shared_limits::{CounterEngine, Hit, SharedLimits};
use kiro_layers::quota::{Admission, QuotaGuard, QuotaPermit};
use kiro_layers::traits::Principal;
use kiro_layers::GatewayError;
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

/// Two "processes" (a book and its shared limits each) on the clients of one engine.
fn start_processes(
    clients: &[Arc<dyn CounterEngine>],
    limits: &[(Subject, Limits)],
) -> Vec<(QuotaBook, Arc<SharedLimits>)> {
    clients
        .iter()
        .map(|client| {
            let book = QuotaBook::new();
            for (subject, limit) in limits {
                book.set(subject.clone(), *limit);
            }
            let shared = SharedLimits::new(Arc::clone(client), None);
            shared.spawn();
            book.share(Arc::clone(&shared));
            (book, shared)
        })
        .collect()
}

fn principal(key: &str, agent: Option<&str>) -> Principal {
    Principal {
        key_id: key.into(),
        user_id: None,
        agent_id: agent.map(str::to_owned),
        allowed_models: vec![],
    }
}

async fn admit(book: &QuotaBook, principal: &Principal) -> Result<QuotaPermit, GatewayError> {
    match book.admit(principal) {
        Admission::Now(decision) => decision,
        Admission::Later(decision) => decision.await,
    }
}

/// 64 admissions at once over two processes (more than the DEFAULT_PG_POOL connections of
/// each one's pool), the permits held until all have answered; returns the admitted ones and
/// the refusals' messages.
async fn burst(
    processes: &[(QuotaBook, Arc<SharedLimits>)],
    principal: &Principal,
) -> (Vec<QuotaPermit>, Vec<String>) {
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let book = processes[i % processes.len()].0.clone();
            let principal = principal.clone();
            tokio::spawn(async move { admit(&book, &principal).await })
        })
        .collect();
    let (mut admitted, mut refused) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await.unwrap() {
            Ok(permit) => admitted.push(permit),
            Err(error) => refused.push(error.message().to_owned()),
        }
    }
    (admitted, refused)
}

/// A burst (see [`burst`]) on a new key with `limits` over two processes on `clients`: the
/// number admitted, once every admission was checked to have been counted in the engine
/// (none degraded, none waited out for a connection), and the refusals' messages.
async fn burst_on_a_new_key(
    name: &str,
    clients: &[Arc<dyn CounterEngine>],
    limits: Limits,
) -> (usize, Vec<String>) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let processes = start_processes(clients, &[(Subject::Key(id.clone()), limits)]);
    let (admitted, refused) = burst(&processes, &principal(&id, None)).await;
    for (_, shared) in &processes {
        assert_eq!(shared.degradations(), 0, "{name}: a burst is not an outage");
        assert_eq!(shared.busy(), 0, "{name}: every admission got a connection");
    }
    (admitted.len(), refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_admissions_at_once_get_exactly_the_limit_without_degrading() {
    for (name, clients) in engines(2).await {
        let rate = Limits {
            rpm_limit: Some(20),
            max_concurrency: Some(1000),
            ..Limits::default()
        };
        limits_support::away_from_window_end().await;
        let (admitted, refused) = burst_on_a_new_key(name, &clients, rate).await;
        assert_eq!(admitted, 20, "{name}: exactly the rpm limit");
        assert!(refused.iter().all(|m| m.contains("rate limit")), "{name}");

        let concurrency = Limits {
            rpm_limit: Some(1000),
            max_concurrency: Some(5),
            ..Limits::default()
        };
        let (admitted, refused) = burst_on_a_new_key(name, &clients, concurrency).await;
        assert_eq!(admitted, 5, "{name}: exactly the concurrency limit");
        assert!(
            refused.iter().all(|m| m.contains("concurrency limit")),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_admission_holds_no_slot_of_another_subject() {
    for (name, clients) in engines(1).await {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let (agent, key, free) = (
            format!("a{unique}"),
            format!("k{unique}"),
            format!("f{unique}"),
        );
        // The agent's slot is taken (its subject sorts first), then the key's window refuses.
        let processes = start_processes(
            &clients,
            &[
                (
                    Subject::Agent(agent.clone()),
                    Limits {
                        max_concurrency: Some(2),
                        ..Limits::default()
                    },
                ),
                (Subject::Key(key.clone()), rpm(1)),
                (Subject::Key(free.clone()), Limits::default()),
            ],
        );
        let book = &processes[0].0;
        limits_support::away_from_window_end().await;
        let first = admit(book, &principal(&key, Some(&agent))).await.unwrap();
        let refused = admit(book, &principal(&key, Some(&agent)))
            .await
            .unwrap_err();
        assert!(refused.message().contains("rate limit"), "{name}");
        // Had the refused request kept its agent slot, both would now be taken.
        let second = admit(book, &principal(&free, Some(&agent))).await;
        assert!(
            second.is_ok(),
            "{name}: the refused request gave its slot back"
        );
        let third = admit(book, &principal(&free, Some(&agent))).await;
        assert!(
            third.unwrap_err().message().contains("concurrency limit"),
            "{name}"
        );
        drop(first);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_admission_counts_no_window_hit_of_another_subject() {
    for (name, clients) in engines(2).await {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let (agent, key, free) = (
            format!("a{unique}"),
            format!("k{unique}"),
            format!("f{unique}"),
        );
        // A request's key is asked before its agent: the key's window takes a hit, then the
        // agent's refuses.
        let processes = start_processes(
            &clients,
            &[
                (Subject::Key(key.clone()), rpm(2)),
                (Subject::Agent(agent.clone()), rpm(1)),
                (Subject::Key(free.clone()), Limits::default()),
            ],
        );
        let (book, other) = (&processes[0].0, &processes[1].0);
        limits_support::away_from_window_end().await;
        let _first = admit(book, &principal(&free, Some(&agent))).await.unwrap();
        // In the other process, whose own counters have seen nothing: the engine refuses.
        let refused = admit(other, &principal(&key, Some(&agent)))
            .await
            .unwrap_err();
        assert!(refused.message().contains("rate limit"), "{name}");
        // Had the refused request counted in the key's window, one of these two would not fit.
        for _ in 0..2 {
            let alone = admit(book, &principal(&key, None)).await;
            assert!(
                alone.is_ok(),
                "{name}: the refused request took nothing from the key's window"
            );
        }
        let over = admit(book, &principal(&key, None)).await;
        assert!(over.unwrap_err().message().contains("rate limit"), "{name}");
    }
}

fn rpm(limit: u32) -> Limits {
    Limits {
        rpm_limit: Some(limit),
        ..Limits::default()
    }
}
