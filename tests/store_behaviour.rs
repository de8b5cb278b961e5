//! The store's rules, checked on every backend: SQLite always, PostgreSQL when
//! `TEST_DATABASE_URL` is set (scripts/test.sh starts one through scripts/pg.sh). Each test
//! body runs once per backend, on a fresh database.

#[path = "store_support/mod.rs"]
mod store_support;

use std::sync::Arc;
use std::time::Duration;

use kiro_gateway::store::crypto::verify_api_key;
use kiro_gateway::store::usage_writer::{usage_row, UsageWriter, UsageWriterConfig};
use kiro_layers::store::*;
use kiro_layers::traits::{Principal, UsageRecord, UsageSink, UsageStatus};
use store_support::*;

/// Runs `rule` against every backend.
macro_rules! behaviour {
    ($($test:ident => $rule:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $test() {
            for backend in backends().await {
                eprintln!("{} on {}", stringify!($test), backend.name);
                $rule(&backend).await;
            }
        }
    )*};
}

behaviour! {
    accounts_round_trip_with_metacharacters => accounts_round_trip;
    secrets_are_encrypted_at_rest => secrets_encrypted;
    rotation_uses_optimistic_concurrency => rotation_is_optimistic;
    account_state_is_shared_and_follows_the_account => account_state;
    users_belong_to_agents_and_delete_softly => users_and_agents;
    keys_are_found_by_public_id_and_cached_only_when_usable => api_keys;
    bad_input_is_refused_and_changes_nothing => bad_input;
    transfers_never_overdraw_under_concurrency => concurrent_transfers;
    quotas_are_set_added_and_charged => quotas;
    usage_is_idempotent_and_charged_once => usage_idempotent;
    usage_groups_and_filters => usage_queries;
    models_aliases_combos_prices => models;
    audit_log_keeps_entries_newest_first => audit;
    changes_reach_other_store_instances => changes;
    usage_writer_drains_everything_on_shutdown => usage_writer_drains;
}

fn is_not_found<T: std::fmt::Debug>(r: StoreResult<T>) -> bool {
    matches!(r, Err(StoreError::NotFound(_)))
}

fn is_conflict<T: std::fmt::Debug>(r: StoreResult<T>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

fn is_invalid<T: std::fmt::Debug>(r: StoreResult<T>) -> bool {
    matches!(r, Err(StoreError::Invalid(_)))
}

async fn accounts_round_trip(b: &Backend) {
    let s = &b.store;
    let name = nasty("acct");
    let mut input = new_account(&name, "aorToken-1");
    input.auth_kind = AuthKind::Oidc;
    input.client_id = Some("client-'id".into());
    input.client_secret = Some("client-secret-xyz".into());
    let created = s.create_account(input.clone()).await.unwrap();
    assert_eq!(created.name, name);
    assert_eq!(created.version, 1);
    assert_eq!(created.status, AccountStatus::Active);
    assert_eq!(created.client_secret.as_deref(), Some("client-secret-xyz"));
    assert_eq!(s.get_account(created.id).await.unwrap(), created);
    assert_eq!(s.list_accounts().await.unwrap(), vec![created.clone()]);
    assert!(is_conflict(s.create_account(input).await));

    s.set_account_status(
        created.id,
        AccountStatus::Disabled,
        Some("invalid_grant: token revoked".into()),
    )
    .await
    .unwrap();
    let disabled = s.get_account(created.id).await.unwrap();
    assert_eq!(disabled.status, AccountStatus::Disabled);
    assert_eq!(
        disabled.disabled_reason.as_deref(),
        Some("invalid_grant: token revoked")
    );
    s.set_account_status(created.id, AccountStatus::Active, Some("ignored".into()))
        .await
        .unwrap();
    assert_eq!(
        s.get_account(created.id).await.unwrap().disabled_reason,
        None
    );

    s.delete_account(created.id).await.unwrap();
    assert!(is_not_found(s.get_account(created.id).await));
    assert!(is_not_found(s.delete_account(created.id).await));
    assert!(is_not_found(
        s.set_account_status(created.id, AccountStatus::Active, None)
            .await
    ));
    // Secrets never reach Debug output or JSON.
    let shown = format!("{created:?} {}", serde_json::to_string(&created).unwrap());
    assert!(!shown.contains("aorToken-1") && !shown.contains("client-secret-xyz"));
}

async fn secrets_encrypted(b: &Backend) {
    let mut input = new_account("enc", "aorPLAINTEXT-refresh-token-123");
    input.client_secret = Some("PLAINTEXT-client-secret-456".into());
    let account = b.store.create_account(input).await.unwrap();
    b.store
        .update_refresh_token(account.id, 1, "aorPLAINTEXT-rotated-789".into())
        .await
        .unwrap();
    let columns = raw_bytes(b, "SELECT refresh_token_enc FROM accounts")
        .await
        .into_iter()
        .chain(raw_bytes(b, "SELECT client_secret_enc FROM accounts").await);
    for bytes in columns {
        assert!(bytes.len() > 16, "an encrypted value is stored");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("PLAINTEXT"),
            "plaintext found in a secret column"
        );
    }
    // Another secret cannot read the tokens, and says why instead of panicking.
    let other =
        kiro_gateway::store::open(&b.url, &kiro_gateway::store::Secret::from_bytes([1; 32]))
            .await
            .unwrap();
    match other.get_account(account.id).await {
        Err(StoreError::Backend(message)) => assert!(message.contains("KIRO_GATEWAY_SECRET")),
        other => panic!("expected a decryption error, got {other:?}"),
    }
}

async fn rotation_is_optimistic(b: &Backend) {
    let s = &b.store;
    let a = s.create_account(new_account("rot", "t1")).await.unwrap();
    assert!(s.update_refresh_token(a.id, 1, "t2".into()).await.unwrap());
    assert!(!s.update_refresh_token(a.id, 1, "t3".into()).await.unwrap());
    let now = s.get_account(a.id).await.unwrap();
    assert_eq!((now.refresh_token.as_str(), now.version), ("t2", 2));
    assert!(is_not_found(
        s.update_refresh_token(999_999, 1, "x".into()).await
    ));

    // Ten writers read version 2 at once: exactly one rotation lands.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = Arc::clone(s);
        tasks.push(tokio::spawn(async move {
            s.update_refresh_token(a.id, 2, format!("race-{i}"))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    let after = s.get_account(a.id).await.unwrap();
    assert_eq!(after.version, 3);
    assert!(after.refresh_token.starts_with("race-"));
}

async fn account_state(b: &Backend) {
    let s = &b.store;
    let a = s.create_account(new_account("st", "t")).await.unwrap();
    assert_eq!(
        s.get_account_state(a.id).await.unwrap(),
        AccountState::fresh(a.id)
    );
    let rest =
        chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis() + 30_000)
            .unwrap();
    let state = AccountState {
        account_id: a.id,
        rest_until: Some(rest),
        throttled: true,
        consecutive_failures: 3,
        breaker: BreakerState::HalfOpen,
    };
    s.put_account_state(state.clone()).await.unwrap();
    assert_eq!(s.get_account_state(a.id).await.unwrap(), state);
    assert_eq!(s.list_account_states().await.unwrap(), vec![state.clone()]);
    let closed = AccountState::fresh(a.id);
    s.put_account_state(closed.clone()).await.unwrap();
    assert_eq!(s.get_account_state(a.id).await.unwrap(), closed);
    assert!(is_not_found(
        s.put_account_state(AccountState::fresh(424_242)).await
    ));
    s.delete_account(a.id).await.unwrap();
    assert!(s.list_account_states().await.unwrap().is_empty());
}

async fn users_and_agents(b: &Backend) {
    let s = &b.store;
    let acme = s.create_agent(&nasty("acme")).await.unwrap();
    let other = s.create_agent("other").await.unwrap();
    assert_eq!((acme.balance, acme.status), (0, Status::Active));
    assert!(is_conflict(s.create_agent(&nasty("acme")).await));
    let alice = s
        .create_user(NewUser {
            agent_id: Some(acme.id),
            name: nasty("alice"),
            quota_limit: Some(5),
            rpm_limit: Some(10),
        })
        .await
        .unwrap();
    let bob = s
        .create_user(NewUser {
            agent_id: Some(other.id),
            name: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let carol = s
        .create_user(NewUser {
            name: "carol".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alice.quota_used, 0);
    assert!(is_conflict(
        s.create_user(NewUser {
            name: nasty("alice"),
            ..Default::default()
        })
        .await
    ));
    assert!(is_not_found(
        s.create_user(NewUser {
            agent_id: Some(777_777),
            name: "x".into(),
            ..Default::default()
        })
        .await
    ));
    assert_eq!(
        s.list_users(Some(acme.id)).await.unwrap(),
        vec![alice.clone()]
    );
    assert_eq!(s.list_users(None).await.unwrap().len(), 3);

    let renamed = s
        .update_user(
            alice.id,
            UserUpdate {
                name: Some("alice2".into()),
                status: Some(Status::Disabled),
                rpm_limit: Some(None),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.status, renamed.rpm_limit),
        ("alice2", Status::Disabled, None)
    );
    assert_eq!(renamed.quota_limit, Some(5));
    assert!(is_conflict(
        s.update_user(
            alice.id,
            UserUpdate {
                name: Some("bob".into()),
                ..Default::default()
            }
        )
        .await
    ));

    let (key, _) = new_key(&b.secret, KeyKind::Inference, Some(bob.id), None);
    let key = s.create_api_key(key).await.unwrap();
    s.delete_user(bob.id).await.unwrap();
    assert!(is_not_found(s.get_user(bob.id).await));
    assert!(is_not_found(s.delete_user(bob.id).await));
    assert_eq!(
        s.get_api_key(key.id).await.unwrap().status,
        KeyStatus::Revoked
    );
    assert!(s.list_users(Some(other.id)).await.unwrap().is_empty());
    // The name is free again once its holder is deleted.
    s.create_user(NewUser {
        name: "bob".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    s.set_agent_status(other.id, Status::Disabled)
        .await
        .unwrap();
    assert_eq!(
        s.get_agent(other.id).await.unwrap().status,
        Status::Disabled
    );
    assert_eq!(s.list_agents().await.unwrap().len(), 2);
    assert!(is_not_found(
        s.set_agent_status(555_555, Status::Active).await
    ));
    assert_eq!(s.get_user(carol.id).await.unwrap().agent_id, None);
}

async fn api_keys(b: &Backend) {
    let s = &b.store;
    let agent = s.create_agent("resell").await.unwrap();
    let user = s
        .create_user(NewUser {
            agent_id: Some(agent.id),
            name: "u".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (input, full) = new_key(&b.secret, KeyKind::Inference, Some(user.id), None);
    let key = s.create_api_key(input.clone()).await.unwrap();
    assert_eq!(
        key.agent_id,
        Some(agent.id),
        "a user's key takes the user's agent"
    );
    assert_eq!(key.allowed_models, vec!["claude-sonnet-4.5".to_owned()]);
    assert!(is_conflict(s.create_api_key(input).await));
    let found = s.get_api_key_by_public_id(&key.public_id).await.unwrap();
    assert_eq!(found, key);
    assert!(verify_api_key(&b.secret, &full, &found.secret_hash));
    assert!(!verify_api_key(
        &b.secret,
        &format!("{full}0"),
        &found.secret_hash
    ));
    assert!(is_not_found(
        s.get_api_key_by_public_id("nosuchkey123").await
    ));

    let (agent_key, _) = new_key(&b.secret, KeyKind::Agent, None, Some(agent.id));
    let agent_key = s.create_api_key(agent_key).await.unwrap();
    let (admin_key, _) = new_key(&b.secret, KeyKind::Admin, None, None);
    let admin_key = s.create_api_key(admin_key).await.unwrap();
    let (bad, _) = new_key(&b.secret, KeyKind::Agent, None, None);
    assert!(is_invalid(s.create_api_key(bad).await));
    let other = s.create_agent("other").await.unwrap();
    let (bad, _) = new_key(&b.secret, KeyKind::Inference, Some(user.id), Some(other.id));
    assert!(is_invalid(s.create_api_key(bad).await));

    let ids = |keys: Vec<ApiKeyRow>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_api_keys(KeyOwner::User(user.id)).await.unwrap()),
        vec![key.id]
    );
    assert_eq!(
        ids(s.list_api_keys(KeyOwner::Agent(agent.id)).await.unwrap()),
        vec![key.id, agent_key.id]
    );
    assert_eq!(s.list_api_keys(KeyOwner::All).await.unwrap().len(), 3);
    assert_eq!(
        ids(s.list_active_keys().await.unwrap()),
        vec![key.id, agent_key.id, admin_key.id]
    );

    s.update_user(
        user.id,
        UserUpdate {
            status: Some(Status::Disabled),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        ids(s.list_active_keys().await.unwrap()),
        vec![agent_key.id, admin_key.id]
    );
    s.set_agent_status(agent.id, Status::Disabled)
        .await
        .unwrap();
    assert_eq!(ids(s.list_active_keys().await.unwrap()), vec![admin_key.id]);
    s.revoke_api_key(admin_key.id).await.unwrap();
    s.revoke_api_key(admin_key.id).await.unwrap();
    assert!(s.list_active_keys().await.unwrap().is_empty());
    assert!(is_not_found(s.revoke_api_key(123_456).await));
}

async fn bad_input(b: &Backend) {
    let s = &b.store;
    assert!(is_invalid(s.create_agent("   ").await));
    assert!(is_invalid(s.create_agent("tab\there").await));
    assert!(is_invalid(s.create_agent(&"x".repeat(201)).await));
    assert!(is_invalid(
        s.create_user(NewUser {
            name: String::new(),
            ..Default::default()
        })
        .await
    ));
    assert!(is_invalid(
        s.create_user(NewUser {
            name: "neg".into(),
            quota_limit: Some(-1),
            ..Default::default()
        })
        .await
    ));
    assert!(is_invalid(s.create_account(new_account("a", "  ")).await));
    let (mut key, _) = new_key(&b.secret, KeyKind::Admin, None, None);
    key.public_id = "short".into();
    assert!(is_invalid(s.create_api_key(key).await));
    assert!(is_invalid(s.set_combo("c", vec![]).await));
    let price = Price {
        input_per_m: -5,
        ..Default::default()
    };
    assert!(is_invalid(s.set_price("m", price).await));
    assert!(is_invalid(
        s.charge(&[ChargeLine {
            amount: -3,
            ..Default::default()
        }])
        .await
    ));
    assert!(is_invalid(
        s.add_quota(QuotaSubject::Agent(1), i64::MAX).await
    ));
    assert!(s.list_agents().await.unwrap().is_empty());
    assert!(s.list_users(None).await.unwrap().is_empty());
    assert!(s.list_accounts().await.unwrap().is_empty());
    assert!(s.list_api_keys(KeyOwner::All).await.unwrap().is_empty());
    assert!(s.list_combos().await.unwrap().is_empty());
    assert!(s.list_prices().await.unwrap().is_empty());
}

async fn concurrent_transfers(b: &Backend) {
    let s = &b.store;
    let agent = s.create_agent("bank").await.unwrap();
    let stranger = s.create_agent("stranger").await.unwrap();
    s.add_quota(QuotaSubject::Agent(agent.id), 10_000_000)
        .await
        .unwrap();
    let user = s
        .create_user(NewUser {
            agent_id: Some(agent.id),
            name: "saver".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let foreign = s
        .create_user(NewUser {
            agent_id: Some(stranger.id),
            name: "foreign".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(is_not_found(
        s.transfer_quota(agent.id, foreign.id, 1).await
    ));
    assert!(is_invalid(s.transfer_quota(agent.id, user.id, 0).await));
    assert!(is_invalid(s.transfer_quota(agent.id, user.id, -10).await));

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = Arc::clone(s);
        let (a, u) = (agent.id, user.id);
        tasks.push(tokio::spawn(async move {
            s.transfer_quota(a, u, 300_000).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(row) => {
                ok += 1;
                assert!(row.agent_balance_after >= 0);
            }
            Err(StoreError::Conflict(message)) => assert!(message.contains("balance")),
            Err(other) => panic!("unexpected transfer error: {other}"),
        }
    }
    assert_eq!(ok, 33, "10 credits hold 33 transfers of 0.3");
    assert_eq!(s.get_agent(agent.id).await.unwrap().balance, 100_000);
    assert_eq!(
        s.get_user(user.id).await.unwrap().quota_limit,
        Some(9_900_000)
    );
    let transfers = s.list_transfers(Some(agent.id)).await.unwrap();
    assert_eq!(transfers.len(), 33);
    assert!(
        transfers.windows(2).all(|w| w[0].id > w[1].id),
        "newest first"
    );
    assert!(s
        .list_transfers(Some(stranger.id))
        .await
        .unwrap()
        .is_empty());
}

async fn quotas(b: &Backend) {
    let s = &b.store;
    let agent = s.create_agent("q").await.unwrap();
    let user = s
        .create_user(NewUser {
            name: "qu".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (key, _) = new_key(&b.secret, KeyKind::Inference, Some(user.id), None);
    let key = s.create_api_key(key).await.unwrap();

    s.set_quota(QuotaSubject::User(user.id), Some(1_000))
        .await
        .unwrap();
    s.add_quota(QuotaSubject::User(user.id), 500).await.unwrap();
    assert_eq!(s.get_user(user.id).await.unwrap().quota_limit, Some(1_500));
    assert!(is_conflict(
        s.add_quota(QuotaSubject::User(user.id), -2_000).await
    ));
    s.set_quota(QuotaSubject::User(user.id), None)
        .await
        .unwrap();
    assert_eq!(s.get_user(user.id).await.unwrap().quota_limit, None);
    s.add_quota(QuotaSubject::Key(key.id), 250).await.unwrap();
    assert_eq!(s.get_api_key(key.id).await.unwrap().quota_limit, Some(250));
    s.set_quota(QuotaSubject::Agent(agent.id), Some(9))
        .await
        .unwrap();
    assert_eq!(s.get_agent(agent.id).await.unwrap().balance, 9);
    assert!(is_not_found(
        s.set_quota(QuotaSubject::Key(99_999), Some(1)).await
    ));
    assert!(is_not_found(
        s.add_quota(QuotaSubject::User(99_999), 1).await
    ));

    s.charge(&[
        ChargeLine {
            key_id: Some(key.id),
            user_id: Some(user.id),
            agent_id: None,
            amount: 40,
        },
        ChargeLine {
            key_id: Some(key.id),
            user_id: Some(user.id),
            agent_id: Some(agent.id),
            amount: 2,
        },
        ChargeLine {
            agent_id: Some(agent.id),
            amount: 20,
            ..Default::default()
        },
    ])
    .await
    .unwrap();
    assert_eq!(s.get_api_key(key.id).await.unwrap().quota_used, 42);
    assert_eq!(s.get_user(user.id).await.unwrap().quota_used, 42);
    assert_eq!(
        s.get_agent(agent.id).await.unwrap().balance,
        -13,
        "usage may overdraw"
    );
}

async fn usage_idempotent(b: &Backend) {
    let s = &b.store;
    let user = s
        .create_user(NewUser {
            name: "meter".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (key, _) = new_key(&b.secret, KeyKind::Inference, Some(user.id), None);
    let key = s.create_api_key(key).await.unwrap();
    let agent = s.create_agent("own-key-agent").await.unwrap();
    s.add_quota(QuotaSubject::Agent(agent.id), 1_000)
        .await
        .unwrap();
    let (agent_key, _) = new_key(&b.secret, KeyKind::Inference, None, Some(agent.id));
    let agent_key = s.create_api_key(agent_key).await.unwrap();

    let batch = vec![
        usage("req-1", 1, Some(&key), 100),
        usage("req-1", 2, Some(&key), 50),
        usage("req'2;--", 1, Some(&agent_key), 30),
    ];
    assert_eq!(s.insert_usage(&batch).await.unwrap(), 3);
    assert_eq!(
        s.insert_usage(&batch).await.unwrap(),
        0,
        "a replayed batch adds nothing"
    );
    let overlapping = vec![batch[1].clone(), usage("req-3", 1, Some(&key), 7)];
    assert_eq!(s.insert_usage(&overlapping).await.unwrap(), 1);
    let repeated = vec![
        usage("req-4", 1, Some(&key), 3),
        usage("req-4", 1, Some(&key), 3),
    ];
    assert_eq!(
        s.insert_usage(&repeated).await.unwrap(),
        1,
        "a row repeated within a batch counts once"
    );

    assert_eq!(s.get_api_key(key.id).await.unwrap().quota_used, 160);
    assert_eq!(s.get_user(user.id).await.unwrap().quota_used, 160);
    assert_eq!(
        s.get_agent(agent.id).await.unwrap().balance,
        970,
        "an agent's own key pays from its balance"
    );
    assert!(s.get_api_key(key.id).await.unwrap().last_used_at.is_some());
    let totals = s
        .query_usage(UsageFilter::default(), UsageGroup::Model)
        .await
        .unwrap();
    assert_eq!(totals.len(), 1);
    assert_eq!(
        (
            totals[0].requests,
            totals[0].charged,
            totals[0].input_tokens
        ),
        (5, 190, 500)
    );
    assert!((totals[0].credits - 1.25).abs() < 1e-9);
    let mut bad = usage("", 1, None, 0);
    assert!(is_invalid(s.insert_usage(std::slice::from_ref(&bad)).await));
    bad.request_id = "neg".into();
    bad.charged = -1;
    assert!(is_invalid(s.insert_usage(&[bad]).await));
}

async fn usage_queries(b: &Backend) {
    let s = &b.store;
    let u1 = s
        .create_user(NewUser {
            name: "u1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let u2 = s
        .create_user(NewUser {
            name: "u2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (k1, _) = new_key(&b.secret, KeyKind::Inference, Some(u1.id), None);
    let k1 = s.create_api_key(k1).await.unwrap();
    let (k2, _) = new_key(&b.secret, KeyKind::Inference, Some(u2.id), None);
    let k2 = s.create_api_key(k2).await.unwrap();
    let day = |d: u32| {
        chrono::NaiveDate::from_ymd_opt(2026, 3, d)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
    };
    let mut rows = vec![
        usage("a", 1, Some(&k1), 10),
        usage("b", 1, Some(&k1), 20),
        usage("c", 1, Some(&k2), 40),
    ];
    rows[0].started_at = day(1);
    rows[1].started_at = day(2);
    rows[1].status = UsageStatus::UpstreamError;
    rows[1].resolved_model = "claude-haiku-4.5".into();
    rows[2].started_at = day(2);
    rows[2].account_id = None;
    s.insert_usage(&rows).await.unwrap();

    let by_day = s
        .query_usage(UsageFilter::default(), UsageGroup::Day)
        .await
        .unwrap();
    let summary: Vec<_> = by_day
        .iter()
        .map(|a| (a.group.as_str(), a.requests, a.successes, a.charged))
        .collect();
    assert_eq!(
        summary,
        vec![("2026-03-01", 1, 1, 10), ("2026-03-02", 2, 1, 60)]
    );
    let by_user = s
        .query_usage(UsageFilter::default(), UsageGroup::User)
        .await
        .unwrap();
    let mut expected = vec![(u1.id.to_string(), 30), (u2.id.to_string(), 40)];
    expected.sort();
    assert_eq!(
        by_user
            .iter()
            .map(|a| (a.group.clone(), a.charged))
            .collect::<Vec<_>>(),
        expected
    );
    let mine = UsageFilter {
        key_id: Some(k1.id),
        ..Default::default()
    };
    let by_model = s.query_usage(mine, UsageGroup::Model).await.unwrap();
    assert_eq!(
        by_model
            .iter()
            .map(|a| a.group.as_str())
            .collect::<Vec<_>>(),
        vec!["claude-haiku-4.5", "claude-sonnet-4.5"]
    );
    let by_account = s
        .query_usage(UsageFilter::default(), UsageGroup::Account)
        .await
        .unwrap();
    assert_eq!(
        by_account
            .iter()
            .map(|a| (a.group.as_str(), a.requests))
            .collect::<Vec<_>>(),
        vec![("", 1), ("7", 2)]
    );
    let window = UsageFilter {
        from: Some(day(2)),
        to: Some(day(3)),
        user_id: Some(u1.id),
        ..Default::default()
    };
    let by_key = s.query_usage(window, UsageGroup::Key).await.unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(
        (by_key[0].group.clone(), by_key[0].charged),
        (k1.id.to_string(), 20)
    );
}

async fn models(b: &Backend) {
    let s = &b.store;
    let alias = nasty("gpt-4o");
    s.set_alias(&alias, "claude-sonnet-4.5").await.unwrap();
    s.set_alias(&alias, "claude-opus-4.5").await.unwrap();
    s.set_alias("fast", "claude-haiku-4.5").await.unwrap();
    let aliases = s.list_aliases().await.unwrap();
    assert_eq!(aliases.len(), 2);
    assert!(aliases.contains(&AliasRow {
        alias: alias.clone(),
        model_id: "claude-opus-4.5".into()
    }));
    s.delete_alias(&alias).await.unwrap();
    assert!(is_not_found(s.delete_alias(&alias).await));

    let members = vec!["claude-opus-4.5".to_owned(), "claude-sonnet-4.5".to_owned()];
    s.set_combo("best", members.clone()).await.unwrap();
    assert_eq!(
        s.list_combos().await.unwrap(),
        vec![ComboRow {
            name: "best".into(),
            members: members.clone()
        }]
    );
    s.set_combo("best", vec!["claude-haiku-4.5".into()])
        .await
        .unwrap();
    assert_eq!(
        s.list_combos().await.unwrap()[0].members,
        vec!["claude-haiku-4.5".to_owned()]
    );
    s.delete_combo("best").await.unwrap();
    assert!(s.list_combos().await.unwrap().is_empty());

    let price = Price {
        input_per_m: 3_000_000,
        output_per_m: 15_000_000,
        cache_read_per_m: 300_000,
        cache_write_per_m: 3_750_000,
    };
    s.set_price("claude-sonnet-4.5", price).await.unwrap();
    assert_eq!(
        s.list_prices().await.unwrap(),
        vec![PriceRow {
            model_id: "claude-sonnet-4.5".into(),
            price
        }]
    );
    s.delete_price("claude-sonnet-4.5").await.unwrap();
    assert!(is_not_found(s.delete_price("claude-sonnet-4.5").await));
}

async fn audit(b: &Backend) {
    let s = &b.store;
    for i in 0..5 {
        s.append_audit(AuditEntry {
            actor: "admin".into(),
            action: "user.create".into(),
            object_type: "user".into(),
            object_id: i.to_string(),
            detail: serde_json::json!({"name": nasty("n"), "i": i}),
        })
        .await
        .unwrap();
    }
    let rows = s.list_audit(3).await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.object_id.as_str())
            .collect::<Vec<_>>(),
        vec!["4", "3", "2"]
    );
    assert_eq!(rows[0].detail["name"], serde_json::json!(nasty("n")));
}

async fn changes(b: &Backend) {
    let s = &b.store;
    let start = s.changes_since(0).await.unwrap();
    s.create_agent("notify").await.unwrap();
    let after = s.changes_since(start.version).await.unwrap();
    assert!(after.version > start.version);
    assert_eq!(after.topics, vec![Topic::Keys]);
    assert!(s
        .changes_since(after.version)
        .await
        .unwrap()
        .topics
        .is_empty());

    // A second store on the same database stands in for another gateway process.
    let other = kiro_gateway::store::open(&b.url, &b.secret).await.unwrap();
    let mut events = other.subscribe();
    s.set_alias("a", "m").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(Topic::Models)) => break,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("no Models change arrived from the other store: {other:?}"),
        }
    }
}

async fn usage_writer_drains(b: &Backend) {
    let config = UsageWriterConfig {
        capacity: 5_000,
        batch_size: 64,
        ..Default::default()
    };
    let (writer, handle) =
        UsageWriter::start(Arc::clone(&b.store), config, Arc::new(|r| usage_row(r, 1)));
    for i in 0..2_000u32 {
        writer.record(UsageRecord {
            request_id: format!("w-{}", i / 2),
            attempt: i % 2 + 1,
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
            started_at: std::time::SystemTime::now(),
        });
    }
    writer.push(usage_row_for_replay());
    let stats = handle.shutdown().await;
    assert_eq!(
        (
            stats.written(),
            stats.dropped(),
            stats.failed(),
            stats.queue_depth()
        ),
        (2_001, 0, 0, 0)
    );
    writer.push(usage_row_for_replay());
    assert_eq!(
        writer.stats().dropped(),
        1,
        "after shutdown records are counted as dropped"
    );
    let totals = b
        .store
        .query_usage(UsageFilter::default(), UsageGroup::Model)
        .await
        .unwrap();
    assert_eq!(totals.iter().map(|t| t.requests).sum::<u64>(), 2_001);
}

fn usage_row_for_replay() -> UsageRow {
    usage("replay", 1, None, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_upgrade_in_place() {
    for place in places().await {
        eprintln!("migrations on {}", place.name);
        let old = open_place(&place, 1).await;
        let agent = old.create_agent("legacy").await.unwrap();
        let account = old
            .create_account(new_account("legacy", "aor-old"))
            .await
            .unwrap();
        drop(old);
        let new = open_place(&place, usize::MAX).await;
        assert_eq!(new.get_agent(agent.id).await.unwrap().name, "legacy");
        assert_eq!(
            new.get_account(account.id).await.unwrap().refresh_token,
            "aor-old"
        );
        // Tables of the second migration exist now.
        assert_eq!(
            new.insert_usage(&[usage("after-upgrade", 1, None, 0)])
                .await
                .unwrap(),
            1
        );
        new.set_alias("x", "y").await.unwrap();
        drop(new);
        // Opening again applies nothing and keeps everything.
        let again = open_place(&place, usize::MAX).await;
        assert_eq!(again.list_aliases().await.unwrap().len(), 1);
    }
}
