//! Web console sessions on every backend: found by id hash until they expire, one logout ends
//! one session, revoking a key ends every session opened with it (and sweeps expired ones),
//! and a second session with the same id hash is refused.

use kiro_layers::store::*;

use crate::store_support::*;

fn session(tag: u8, key_id: Option<i64>, expires_in_s: i64) -> ConsoleSessionRow {
    ConsoleSessionRow {
        id_hash: vec![tag; 32],
        role: if key_id.is_some() { "user" } else { "admin" }.into(),
        key_id,
        expires_at: chrono::Utc::now() + chrono::Duration::seconds(expires_in_s),
        user_agent: nasty("Mozilla/5.0"),
    }
}

pub async fn console_sessions(b: &Backend) {
    let s = &b.store;
    let admin = session(1, None, 3600);
    let mine_1 = session(2, Some(7), 3600);
    let mine_2 = session(3, Some(7), 3600);
    let other = session(4, Some(8), 3600);
    let expired = session(5, Some(9), -5);
    for row in [&admin, &mine_1, &mine_2, &other, &expired] {
        s.create_console_session(row.clone()).await.unwrap();
    }
    let found = s
        .get_console_session(admin.id_hash.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.role.as_str(), found.key_id, found.user_agent.as_str()),
        ("admin", None, admin.user_agent.as_str())
    );
    assert_eq!(
        found.expires_at.timestamp_millis(),
        admin.expires_at.timestamp_millis()
    );
    let found = s
        .get_console_session(mine_1.id_hash.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.role.as_str(), found.key_id), ("user", Some(7)));
    // Expired and unknown sessions are not found.
    assert!(s
        .get_console_session(expired.id_hash.clone())
        .await
        .unwrap()
        .is_none());
    assert!(s.get_console_session(vec![6; 32]).await.unwrap().is_none());
    // The same id hash twice is an error, and the first session is unchanged.
    assert!(s
        .create_console_session(session(1, Some(99), 60))
        .await
        .is_err());
    let again = s
        .get_console_session(admin.id_hash.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.key_id, None);
    // Logout ends one session (twice is harmless).
    s.delete_console_session(mine_1.id_hash.clone())
        .await
        .unwrap();
    s.delete_console_session(mine_1.id_hash.clone())
        .await
        .unwrap();
    assert!(s
        .get_console_session(mine_1.id_hash.clone())
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get_console_session(mine_2.id_hash.clone())
        .await
        .unwrap()
        .is_some());
    // Revoking key 7 ends its remaining session and sweeps the expired one; key 8's and the
    // admin's stay.
    assert_eq!(s.delete_console_sessions_of_key(7).await.unwrap(), 2);
    assert!(s
        .get_console_session(mine_2.id_hash.clone())
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get_console_session(other.id_hash.clone())
        .await
        .unwrap()
        .is_some());
    assert!(s
        .get_console_session(admin.id_hash.clone())
        .await
        .unwrap()
        .is_some());
    assert_eq!(s.delete_console_sessions_of_key(7).await.unwrap(), 0);
    assert_eq!(s.delete_console_sessions_of_key(8).await.unwrap(), 1);
}
