//! PostgreSQL: how accounts were signed in (`account_logins`, migration 0007).

use kiro_layers::store::{AccountLogin, Timestamp};

use super::tenancy::not_found;
use super::{PgStore, R};

impl PgStore {
    pub(crate) async fn put_account_login_(&self, login: AccountLogin) -> R<()> {
        let conn = self.conn().await?;
        let written = conn
            .execute(
                "INSERT INTO account_logins (account_id, method, start_url, \
                 client_secret_expires_at) SELECT $1, $2, $3, $4 \
                 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
                 ON CONFLICT (account_id) DO UPDATE SET method = excluded.method, \
                 start_url = excluded.start_url, \
                 client_secret_expires_at = excluded.client_secret_expires_at",
                &[
                    &login.account_id,
                    &login.method,
                    &login.start_url,
                    &login.client_secret_expires_at,
                ],
            )
            .await?;
        if written == 0 {
            return Err(not_found(format!("account {}", login.account_id)));
        }
        Ok(())
    }

    pub(crate) async fn get_account_login_(&self, account_id: i64) -> R<Option<AccountLogin>> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT method, start_url, client_secret_expires_at FROM account_logins \
                 WHERE account_id = $1",
                &[&account_id],
            )
            .await?;
        row.map(|r| {
            Ok(AccountLogin {
                account_id,
                method: r.try_get(0)?,
                start_url: r.try_get(1)?,
                client_secret_expires_at: r.try_get::<_, Option<Timestamp>>(2)?,
            })
        })
        .transpose()
    }
}
