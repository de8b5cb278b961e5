//! `account_logins` (migration 0007) on every backend: SQLite always, PostgreSQL when
//! `TEST_DATABASE_URL` is set. Recorded per account, replaced on a second write, refused for an
//! unknown account, removed with the account, and present after an upgrade from the first
//! migration.

#[path = "store_support/mod.rs"]
mod store_support;

use kiro_layers::store::*;
use store_support::*;

fn login(account_id: i64, method: &str) -> AccountLogin {
    AccountLogin {
        account_id,
        method: method.to_owned(),
        start_url: Some(
            "https://d-1234567890.awsapps.com/start?x='; DROP TABLE accounts;--".into(),
        ),
        client_secret_expires_at: chrono::DateTime::from_timestamp(1_900_000_000, 0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_details_follow_their_account() {
    for backend in backends().await {
        eprintln!("account_logins on {}", backend.name);
        let s = &backend.store;
        let a = s
            .create_account(new_account("signed-in", "aor-1"))
            .await
            .unwrap();
        assert_eq!(s.get_account_login(a.id).await.unwrap(), None);
        s.put_account_login(login(a.id, "identity-center"))
            .await
            .unwrap();
        assert_eq!(
            s.get_account_login(a.id).await.unwrap(),
            Some(login(a.id, "identity-center"))
        );
        let replaced = AccountLogin {
            start_url: None,
            client_secret_expires_at: None,
            ..login(a.id, "builder-id")
        };
        s.put_account_login(replaced.clone()).await.unwrap();
        assert_eq!(s.get_account_login(a.id).await.unwrap(), Some(replaced));
        assert!(matches!(
            s.put_account_login(login(a.id + 1000, "builder-id")).await,
            Err(StoreError::NotFound(_))
        ));
        s.delete_account(a.id).await.unwrap();
        assert_eq!(s.get_account_login(a.id).await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_exists_after_an_upgrade() {
    for place in places().await {
        let old = open_place(&place, 1).await;
        drop(old);
        // An account row as the first migration wrote it (before kinds, migration 0004).
        insert_legacy_account(&place, "legacy", "aor-old").await;
        let new = open_place(&place, usize::MAX).await;
        let account = new.list_accounts().await.unwrap().remove(0);
        new.put_account_login(login(account.id, "import"))
            .await
            .unwrap();
        assert_eq!(
            new.get_account_login(account.id)
                .await
                .unwrap()
                .unwrap()
                .method,
            "import"
        );
    }
}
