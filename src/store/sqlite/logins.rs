//! SQLite: how accounts were signed in (`account_logins`, migration 0007).

use kiro_layers::store::{AccountLogin, StoreError};
use rusqlite::{params, Connection, OptionalExtension};

use super::{now_ms, ts, R};

pub(crate) fn put_account_login(c: &Connection, login: AccountLogin) -> R<()> {
    let written = c.execute(
        "INSERT INTO account_logins (account_id, method, start_url, client_secret_expires_at, \
         created_at) SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?1) \
         ON CONFLICT (account_id) DO UPDATE SET method = excluded.method, \
         start_url = excluded.start_url, \
         client_secret_expires_at = excluded.client_secret_expires_at",
        params![
            login.account_id,
            login.method,
            login.start_url,
            login.client_secret_expires_at.map(|t| t.timestamp_millis()),
            now_ms()
        ],
    )?;
    if written == 0 {
        return Err(StoreError::NotFound(format!("account {}", login.account_id)).into());
    }
    Ok(())
}

pub(crate) fn get_account_login(c: &Connection, account_id: i64) -> R<Option<AccountLogin>> {
    Ok(c.query_row(
        "SELECT method, start_url, client_secret_expires_at FROM account_logins \
         WHERE account_id = ?1",
        params![account_id],
        |r| {
            Ok(AccountLogin {
                account_id,
                method: r.get(0)?,
                start_url: r.get(1)?,
                client_secret_expires_at: r.get::<_, Option<i64>>(2)?.map(ts),
            })
        },
    )
    .optional()?)
}
