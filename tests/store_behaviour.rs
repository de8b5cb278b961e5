//! The store's rules, checked on every backend: SQLite always, PostgreSQL when
//! `TEST_DATABASE_URL` is set (scripts/test.sh starts one through scripts/pg.sh). Each test
//! body runs once per backend, on a fresh database.

#[path = "store_support/limits.rs"]
mod limits;
#[path = "store_support/login_flows.rs"]
mod login_flows;
#[path = "store_support/money.rs"]
mod money;
#[path = "store_support/paging.rs"]
mod paging;
#[path = "store_support/rollup.rs"]
mod rollup;
#[path = "store_support/sessions.rs"]
mod sessions;
#[path = "store_support/mod.rs"]
mod store_support;

use std::sync::Arc;
use std::time::Duration;

use kiro_gateway::store::crypto::verify_api_key;
use kiro_layers::store::*;
use store_support::*;

/// Runs `rule` against every backend.
macro_rules! behaviour {
    ($($test:ident => $rule:path;)*) => {$(
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
    cursor_accounts_keep_their_kind_and_encrypted_session => cursor_accounts;
    rotation_uses_optimistic_concurrency => rotation_is_optimistic;
    account_state_is_shared_and_follows_the_account => account_state;
    users_belong_to_agents_and_delete_softly => users_and_agents;
    keys_are_found_by_public_id_and_cached_only_when_usable => api_keys;
    bad_input_is_refused_and_changes_nothing => bad_input;
    transfers_never_overdraw_under_concurrency => money::concurrent_transfers;
    quotas_are_set_added_and_charged => money::quotas;
    usage_is_idempotent_and_charged_once => money::usage_idempotent;
    usage_groups_and_filters => money::usage_queries;
    usage_rollup_answers_what_the_rows_say => rollup::rollup_answers_what_the_rows_say;
    usage_rollup_is_backfilled_by_its_migration => rollup::migration_backfills_the_rollup;
    models_aliases_combos_prices => models;
    console_sessions_expire_end_and_follow_their_key => sessions::console_sessions;
    sign_in_flows_are_shared_leased_and_swept => login_flows::login_flows;
    kiro_usage_limits_keep_the_last_snapshot => limits::usage_limits_keep_the_last_snapshot;
    users_keys_audit_and_transfers_are_paged_in_the_database => paging::listings_are_paged_in_the_database;
    audit_log_keeps_entries_newest_first => audit;
    changes_reach_other_store_instances => changes;
    processes_heartbeat_and_share_one_turn => processes_and_turns;
    usage_writer_drains_everything_on_shutdown => money::usage_writer_drains;
    usage_writer_rides_out_an_outage_and_stores_each_row_once => writer::rides_out_an_outage;
    usage_writer_gives_up_on_a_batch_the_database_refuses => writer::gives_up_on_a_refused_batch;
    usage_writer_shutdown_during_an_outage_is_bounded => writer::shutdown_during_an_outage_is_bounded;
    usage_writer_shutdown_during_an_outage_spills_the_held_rows => writer::shutdown_during_an_outage_spills_the_held_rows;
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
    let name = unusual("acct");
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

async fn cursor_accounts(b: &Backend) {
    let mut input = new_account("cursor-1", "PLAINTEXT-cursor-refresh");
    input.kind = kiro_layers::traits::AccountKind::CURSOR;
    input.access_token = Some("eyJhbGciOiJIUzI1NiJ9.PLAINTEXT-cursor-session.sig".into());
    input.sso_region = String::new();
    input.api_region = String::new();
    input.machine_id = Some("ab".repeat(32));
    input.client_key = Some("cd".repeat(32));
    let created = b.store.create_account(input).await.unwrap();
    let kiro = b
        .store
        .create_account(new_account("kiro-1", "aor-k"))
        .await
        .unwrap();
    let read = b.store.get_account(created.id).await.unwrap();
    assert_eq!(read.kind, kiro_layers::traits::AccountKind::CURSOR);
    assert_eq!(
        read.access_token.as_deref(),
        Some("eyJhbGciOiJIUzI1NiJ9.PLAINTEXT-cursor-session.sig")
    );
    // A refreshed session token is written back over the old one, encrypted too; the version
    // (the Kiro refresh-token rotation guard) does not move.
    b.store
        .update_session_token(created.id, "eyJ.PLAINTEXT-refreshed.sig".into())
        .await
        .unwrap();
    let refreshed = b.store.get_account(created.id).await.unwrap();
    assert_eq!(
        refreshed.access_token.as_deref(),
        Some("eyJ.PLAINTEXT-refreshed.sig")
    );
    assert_eq!(refreshed.version, read.version);
    assert!(matches!(
        b.store
            .update_session_token(created.id, "not a jwt".into())
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        b.store.update_session_token(999_999, "a.b.c".into()).await,
        Err(StoreError::NotFound(_))
    ));
    // A Cursor row needs its session token, machine id and client key.
    for broken in [
        |a: &mut NewAccount| a.access_token = None,
        |a: &mut NewAccount| a.machine_id = Some("short".into()),
        |a: &mut NewAccount| a.client_key = None,
    ] {
        let mut input = new_account("cursor-broken", "r");
        input.kind = kiro_layers::traits::AccountKind::CURSOR;
        input.access_token = Some("a.b.c".into());
        input.machine_id = Some("ab".repeat(32));
        input.client_key = Some("cd".repeat(32));
        broken(&mut input);
        assert!(matches!(
            b.store.create_account(input).await,
            Err(StoreError::Invalid(_))
        ));
    }
    assert_eq!(read.machine_id, Some("ab".repeat(32)));
    assert_eq!(read.client_key, Some("cd".repeat(32)));
    assert_eq!(
        b.store.get_account(kiro.id).await.unwrap().kind.as_str(),
        "kiro"
    );
    // The session token is a secret like the refresh token: encrypted, never shown.
    for bytes in raw_bytes(
        b,
        "SELECT access_token_enc FROM accounts WHERE kind = 'cursor'",
    )
    .await
    {
        assert!(bytes.len() > 16);
        assert!(!String::from_utf8_lossy(&bytes).contains("PLAINTEXT"));
    }
    let shown = format!("{read:?} {}", serde_json::to_string(&read).unwrap());
    assert!(!shown.contains("PLAINTEXT"), "{shown}");
    assert!(shown.contains("\"kind\":\"cursor\""), "{shown}");
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
    let acme = s.create_agent(&unusual("acme")).await.unwrap();
    let other = s.create_agent("other").await.unwrap();
    assert_eq!((acme.balance, acme.status), (0, Status::Active));
    assert!(is_conflict(s.create_agent(&unusual("acme")).await));
    let alice = s
        .create_user(NewUser {
            agent_id: Some(acme.id),
            name: unusual("alice"),
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
            name: unusual("alice"),
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
    assert!(is_invalid(s.create_agent(&"x".repeat(101)).await));
    // Names with SQL metacharacters are refused everywhere a name is stored.
    for bad in [
        nasty("n"),
        "dash--dash".into(),
        "back\\slash".into(),
        "semi;".into(),
    ] {
        assert!(is_invalid(s.create_agent(&bad).await), "{bad}");
        let user = NewUser {
            name: bad.clone(),
            ..Default::default()
        };
        assert!(is_invalid(s.create_user(user).await), "{bad}");
        assert!(is_invalid(s.create_account(new_account(&bad, "t")).await));
        let (mut key, _) = new_key(&b.secret, KeyKind::Admin, None, None);
        key.name = bad.clone();
        assert!(is_invalid(s.create_api_key(key).await), "{bad}");
        let (mut key, _) = new_key(&b.secret, KeyKind::Admin, None, None);
        key.allowed_models = vec![bad.clone()];
        assert!(is_invalid(s.create_api_key(key).await), "{bad}");
        assert!(is_invalid(s.set_alias(&bad, "claude-sonnet-4.5").await));
        assert!(is_invalid(s.set_alias("fast", &bad).await));
        assert!(is_invalid(s.set_combo(&bad, vec!["auto".into()]).await));
        assert!(is_invalid(s.set_combo("c", vec![bad.clone()]).await));
        assert!(is_invalid(s.set_price(&bad, Price::default()).await));
    }
    // NUL cannot be stored in PostgreSQL text: refused as invalid on both backends, so the
    // usage writer isolates the row instead of retrying a batch forever.
    let mut row = usage("nul", 1, None, 0);
    row.requested_model = "model\0".into();
    assert!(is_invalid(s.insert_usage(&[row]).await));
    assert!(is_not_found(s.delete_alias("nul\0").await));
    s.ping().await.unwrap();
    let mut account = new_account("a", "t");
    account.sso_region = "evil.example/#".into();
    assert!(is_invalid(s.create_account(account).await));
    let mut account = new_account("a", "t");
    account.profile_arn = Some("arn:aws:x'; --".into());
    assert!(is_invalid(s.create_account(account).await));
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
    assert!(s.list_aliases().await.unwrap().is_empty());
    assert!(s.list_audit(10).await.unwrap().is_empty());
    let usage = s
        .query_usage(UsageFilter::default(), UsageGroup::Model)
        .await
        .unwrap();
    assert!(usage.is_empty());
}

async fn models(b: &Backend) {
    let s = &b.store;
    let alias = unusual_model("gpt");
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

async fn processes_and_turns(b: &Backend) {
    let s = &b.store;
    let within = Duration::from_secs(15);
    assert_eq!(s.heartbeat("a", within).await.unwrap(), 1);
    assert_eq!(s.heartbeat("a", within).await.unwrap(), 1);
    // A second store on the same database stands in for another gateway process; its arrival
    // is announced so that the first counts again at once.
    let other = kiro_gateway::store::open(&b.url, &b.secret).await.unwrap();
    let mut events = s.subscribe();
    assert_eq!(other.heartbeat("b", within).await.unwrap(), 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(Topic::Instances)) => break,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("no Instances change arrived from the other store: {other:?}"),
        }
    }
    assert_eq!(s.heartbeat("a", within).await.unwrap(), 2);
    // Turns are unique and gapless across both, however they interleave.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            Arc::clone(s)
        } else {
            Arc::clone(&other)
        };
        tasks.push(tokio::spawn(
            async move { store.next_turn().await.unwrap() },
        ));
    }
    let mut turns = Vec::new();
    for task in tasks {
        turns.push(task.await.unwrap());
    }
    turns.sort_unstable();
    let first = turns[0];
    assert_eq!(turns, (first..first + 40).collect::<Vec<_>>());
    // Leaving, or not being seen for longer than the window, stops counting.
    other.leave("b").await.unwrap();
    assert_eq!(s.heartbeat("a", within).await.unwrap(), 1);
    other.heartbeat("c", within).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.heartbeat("a", Duration::from_millis(150)).await.unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_upgrade_in_place() {
    for place in places().await {
        eprintln!("migrations on {}", place.name);
        let old = open_place(&place, 1).await;
        let agent = old.create_agent("legacy").await.unwrap();
        drop(old);
        // An account written before migration 0004 (which added kinds) is a Kiro account.
        insert_legacy_account(&place, "legacy", "aor-old").await;
        let new = open_place(&place, usize::MAX).await;
        assert_eq!(new.get_agent(agent.id).await.unwrap().name, "legacy");
        let account = &new.list_accounts().await.unwrap()[0];
        assert_eq!(account.refresh_token, "aor-old");
        assert_eq!(account.kind, kiro_layers::traits::AccountKind::KIRO);
        assert_eq!(account.access_token, None);
        // Tables of the second migration exist now.
        assert_eq!(
            new.insert_usage(&[usage("after-upgrade", 1, None, 0)])
                .await
                .unwrap(),
            1
        );
        new.set_alias("x", "y").await.unwrap();
        // And those of the third.
        assert!(new.next_turn().await.unwrap() < new.next_turn().await.unwrap());
        drop(new);
        // Opening again applies nothing and keeps everything.
        let again = open_place(&place, usize::MAX).await;
        assert_eq!(again.list_aliases().await.unwrap().len(), 1);
    }
}
