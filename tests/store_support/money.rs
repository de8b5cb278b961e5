//! Rules about money and usage: transfers, quotas, charges, usage records and the writer.

use std::sync::Arc;

use kiro_gateway::store::usage_writer::{usage_row, UsageWriter, UsageWriterConfig};
use kiro_layers::store::*;
use kiro_layers::traits::{UsageRecord, UsageSink, UsageStatus};

use crate::store_support::*;
use crate::{is_conflict, is_invalid, is_not_found};

pub async fn concurrent_transfers(b: &Backend) {
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

pub async fn quotas(b: &Backend) {
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

pub async fn usage_idempotent(b: &Backend) {
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

pub async fn usage_queries(b: &Backend) {
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
    rows[0].account_kind = Some("kiro".into());
    rows[1].account_kind = Some("cursor".into());
    rows[1].estimated = true;
    s.insert_usage(&rows).await.unwrap();

    // The kind of account and the estimated marker are stored and grouped on (issue 11).
    let by_kind = s
        .query_usage(UsageFilter::default(), UsageGroup::Kind)
        .await
        .unwrap();
    let summary: Vec<_> = by_kind
        .iter()
        .map(|a| {
            (
                a.group.as_str(),
                a.requests,
                a.estimated_requests,
                a.charged,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("", 1, 0, 40), ("cursor", 1, 1, 20), ("kiro", 1, 0, 10)]
    );

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

pub async fn usage_writer_drains(b: &Backend) {
    let config = UsageWriterConfig {
        capacity: 5_000,
        batch_size: 64,
        ..Default::default()
    };
    let (writer, handle) =
        UsageWriter::start(Arc::clone(&b.store), config, Arc::new(|r| usage_row(r, 1)));
    for i in 0..2_000u32 {
        writer.record(UsageRecord {
            attempt: i % 2 + 1,
            ..crate::store_support::writer::record(format!("w-{}", i / 2))
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
