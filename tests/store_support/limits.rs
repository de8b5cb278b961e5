//! Kiro usage-limits snapshots: a success replaces the snapshot and clears the error, a
//! failure keeps the last snapshot and records why, unknown accounts are refused, and the row
//! goes with its account.

use kiro_layers::store::*;

use crate::is_not_found;
use crate::store_support::*;

pub async fn usage_limits_keep_the_last_snapshot(b: &Backend) {
    let s = &b.store;
    let account = s
        .create_account(new_account("limits", "aor-limits"))
        .await
        .unwrap();
    let other = s
        .create_account(new_account("other", "aor-other"))
        .await
        .unwrap();
    assert!(s.list_usage_limits().await.unwrap().is_empty());
    let t1 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let t2 = t1 + chrono::Duration::hours(1);
    let snapshot = LimitSnapshot {
        used: 12.5,
        limit: 550.0,
        resource: Some("CREDIT".into()),
        resets_at: Some(t1 + chrono::Duration::days(20)),
        subscription: Some(nasty("plan")),
        email: Some("dev@example.com".into()),
    };
    s.put_usage_limits(account.id, Ok(snapshot.clone()), t1)
        .await
        .unwrap();
    // A failure first on the other account: no snapshot, just the error.
    s.put_usage_limits(other.id, Err("403".into()), t1)
        .await
        .unwrap();
    s.put_usage_limits(account.id, Err(nasty("kiro said no")), t2)
        .await
        .unwrap();
    let rows = s.list_usage_limits().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].account_id, account.id);
    assert_eq!(rows[0].snapshot.as_ref(), Some(&snapshot));
    assert_eq!(rows[0].fetched_at, Some(t1));
    assert_eq!(
        rows[0].error.as_deref(),
        Some(nasty("kiro said no").as_str())
    );
    assert_eq!(rows[0].error_at, Some(t2));
    assert_eq!(
        (rows[1].snapshot.as_ref(), rows[1].error.as_deref()),
        (None, Some("403"))
    );
    // A later success clears the error.
    let newer = LimitSnapshot {
        used: 20.0,
        ..snapshot
    };
    s.put_usage_limits(account.id, Ok(newer.clone()), t2)
        .await
        .unwrap();
    let rows = s.list_usage_limits().await.unwrap();
    assert_eq!(rows[0].snapshot.as_ref(), Some(&newer));
    assert_eq!((rows[0].error.as_deref(), rows[0].error_at), (None, None));
    // Unknown accounts are refused; deleting an account drops its row.
    assert!(is_not_found(s.put_usage_limits(9_999, Ok(newer), t2).await));
    s.delete_account(account.id).await.unwrap();
    let rows = s.list_usage_limits().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].account_id, other.id);
}
