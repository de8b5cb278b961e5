//! Sign-in flows on every backend (migration 0012): created with a lease, read back with their
//! secrets decrypted (and encrypted at rest), written only by compare-and-set on the version,
//! leased by one owner at a time until the lease lapses, listed as orphans once it has, capped
//! in number, and swept once finished long enough.

use std::time::Duration;

use kiro_layers::store::*;

use crate::store_support::*;

const SECRET_TEXT: &str = r#"{"device_code":"dc-SECRET-'; DROP TABLE login_flows;--"}"#;

fn flow(id: &str, owner: Option<&str>) -> LoginFlowRow {
    LoginFlowRow {
        id: id.to_owned(),
        status: "pending".into(),
        version: 1,
        view: format!(r#"{{"id":"{id}","status":"pending","user_code":"ABCD-EFGH"}}"#),
        plan: r#"{"actor":"admin:env"}"#.into(),
        secrets: SECRET_TEXT.into(),
        expires_at: chrono::Utc::now() + chrono::Duration::seconds(600),
        finished_at: None,
        owner: owner.map(str::to_owned),
        lease_until: None,
    }
}

const LONG: Duration = Duration::from_secs(600);

pub async fn login_flows(b: &Backend) {
    let s = &b.store;
    s.create_login_flow(flow("f1", Some("proc-a")), LONG, 5)
        .await
        .unwrap();
    let read = s.get_login_flow("f1").await.unwrap().unwrap();
    assert_eq!(read.secrets, SECRET_TEXT);
    assert_eq!((read.version, read.status.as_str()), (1, "pending"));
    assert_eq!(read.owner.as_deref(), Some("proc-a"));
    assert!(read.lease_until.unwrap() > chrono::Utc::now());
    assert!(!format!("{read:?}").contains("dc-SECRET"));
    assert!(s.get_login_flow("nope").await.unwrap().is_none());
    // The secrets are encrypted at rest.
    let raw = raw_bytes(b, "SELECT secrets_enc FROM login_flows").await;
    assert!(!raw.iter().any(|v| v.windows(9).any(|w| w == b"dc-SECRET")));
    // The same id twice is refused and changes nothing.
    assert!(matches!(
        s.create_login_flow(flow("f1", None), LONG, 5).await,
        Err(StoreError::Conflict(_))
    ));

    // Compare-and-set: the writer that read version 1 wins once.
    let mut next = read.clone();
    next.status = "needs_profile_choice".into();
    next.view = r#"{"status":"needs_profile_choice"}"#.into();
    next.secrets = r#"{"refresh_token":"aor-SECRET"}"#.into();
    assert!(s.update_login_flow(next.clone(), 1).await.unwrap());
    let mut late = read.clone();
    late.status = "cancelled".into();
    assert!(!s.update_login_flow(late, 1).await.unwrap());
    let now = s.get_login_flow("f1").await.unwrap().unwrap();
    assert_eq!(
        (now.version, now.status.as_str()),
        (2, "needs_profile_choice")
    );
    assert_eq!(now.secrets, next.secrets);
    assert_eq!(
        now.owner.as_deref(),
        Some("proc-a"),
        "updates keep the lease"
    );
    assert!(!s.update_login_flow(flow("ghost", None), 1).await.unwrap());

    // One owner at a time while the lease lasts; the owner renews.
    assert!(!s.lease_login_flow("f1", "proc-b", LONG).await.unwrap());
    assert!(s.lease_login_flow("f1", "proc-a", LONG).await.unwrap());
    assert!(s.orphan_login_flows().await.unwrap().is_empty());
    // A lapsed lease: the flow is an orphan and another process takes it.
    assert!(s
        .lease_login_flow("f1", "proc-a", Duration::from_millis(1))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(s.orphan_login_flows().await.unwrap(), vec!["f1".to_owned()]);
    assert!(s.lease_login_flow("f1", "proc-b", LONG).await.unwrap());
    assert!(!s.lease_login_flow("f1", "proc-a", LONG).await.unwrap());
    let taken = s.get_login_flow("f1").await.unwrap().unwrap();
    assert_eq!(taken.owner.as_deref(), Some("proc-b"));
    // A flow created without an owner is an orphan at once.
    s.create_login_flow(flow("f2", None), LONG, 5)
        .await
        .unwrap();
    assert_eq!(s.orphan_login_flows().await.unwrap(), vec!["f2".to_owned()]);

    // The cap counts unfinished flows only.
    s.create_login_flow(flow("f3", Some("proc-a")), LONG, 3)
        .await
        .unwrap();
    assert!(matches!(
        s.create_login_flow(flow("f4", Some("proc-a")), LONG, 3)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let mut done = taken.clone();
    done.status = "succeeded".into();
    done.finished_at = Some(chrono::Utc::now() - chrono::Duration::seconds(120));
    assert!(s.update_login_flow(done, taken.version).await.unwrap());
    s.create_login_flow(flow("f4", Some("proc-a")), LONG, 3)
        .await
        .unwrap();
    // A finished flow is never leased again.
    assert!(!s.lease_login_flow("f1", "proc-b", LONG).await.unwrap());

    // Sweeping keeps recent results and unexpired flows.
    assert_eq!(s.sweep_login_flows(LONG).await.unwrap(), 0);
    assert!(s.get_login_flow("f1").await.unwrap().is_some());
    let mut stale = s.get_login_flow("f2").await.unwrap().unwrap();
    stale.expires_at = chrono::Utc::now() - chrono::Duration::seconds(120);
    assert!(s.update_login_flow(stale, 1).await.unwrap());
    assert_eq!(
        s.sweep_login_flows(Duration::from_secs(60)).await.unwrap(),
        2
    );
    assert!(s.get_login_flow("f1").await.unwrap().is_none());
    assert!(s.get_login_flow("f2").await.unwrap().is_none());
    assert!(s.get_login_flow("f3").await.unwrap().is_some());
}
