//! PostgreSQL: Kiro accounts and their shared runtime state.

use kiro_layers::store::*;
use kiro_layers::traits::AccountKind;
use tokio_postgres::Row;

use super::tenancy::{all, not_found, one, u32_param};
use super::{bump, unique, PgErr, PgStore, R};
use crate::store::{crypto_error, to_u32, validate, Secret};

const TOKEN_COLUMN: &str = "accounts.refresh_token";
const CLIENT_SECRET_COLUMN: &str = "accounts.client_secret";
const ACCESS_TOKEN_COLUMN: &str = "accounts.access_token";

const ACCOUNT_COLS: &str = "id, name, auth_kind, refresh_token_enc, client_id, \
    client_secret_enc, profile_arn, sso_region, api_region, status, disabled_reason, \
    max_concurrency, version, created_at, updated_at, kind, access_token_enc, machine_id, \
    client_key";

fn account_row(r: &Row, s: &Secret) -> R<AccountRow> {
    let token: Vec<u8> = r.try_get(3)?;
    let client_secret: Option<Vec<u8>> = r.try_get(5)?;
    let access_token: Option<Vec<u8>> = r.try_get(16)?;
    Ok(AccountRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        kind: AccountKind::new(r.try_get(15)?),
        auth_kind: AuthKind::parse(r.try_get(2)?)?,
        refresh_token: s.decrypt(TOKEN_COLUMN, &token).map_err(crypto_error)?,
        client_id: r.try_get(4)?,
        client_secret: client_secret
            .map(|v| s.decrypt(CLIENT_SECRET_COLUMN, &v))
            .transpose()
            .map_err(crypto_error)?,
        access_token: access_token
            .map(|v| s.decrypt(ACCESS_TOKEN_COLUMN, &v))
            .transpose()
            .map_err(crypto_error)?,
        machine_id: r.try_get(17)?,
        client_key: r.try_get(18)?,
        profile_arn: r.try_get(6)?,
        sso_region: r.try_get(7)?,
        api_region: r.try_get(8)?,
        status: AccountStatus::parse(r.try_get(9)?)?,
        disabled_reason: r.try_get(10)?,
        max_concurrency: to_u32(r.try_get(11)?)?,
        version: r.try_get(12)?,
        created_at: r.try_get(13)?,
        updated_at: r.try_get(14)?,
    })
}

fn state_row(r: &Row) -> R<AccountState> {
    Ok(AccountState {
        account_id: r.try_get(0)?,
        rest_until: r.try_get(1)?,
        throttled: r.try_get(2)?,
        consecutive_failures: to_u32(Some(r.try_get(3)?))?.unwrap_or(0),
        breaker: BreakerState::parse(r.try_get(4)?)?,
    })
}

const STATE_COLS: &str = "account_id, rest_until, throttled, consecutive_failures, breaker";
impl PgStore {
    pub(crate) async fn create_account_(&self, a: NewAccount) -> R<AccountRow> {
        validate::account(&a)?;
        let s = self.secret();
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let sql = format!(
            "INSERT INTO accounts (name, auth_kind, refresh_token_enc, client_id, \
             client_secret_enc, profile_arn, sso_region, api_region, max_concurrency, kind, \
             access_token_enc, machine_id, client_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             RETURNING {ACCOUNT_COLS}"
        );
        let row = unique(
            tx.query_one(
                &sql,
                &[
                    &a.name,
                    &a.auth_kind.as_str(),
                    &s.encrypt(TOKEN_COLUMN, &a.refresh_token),
                    &a.client_id,
                    &a.client_secret
                        .as_deref()
                        .map(|v| s.encrypt(CLIENT_SECRET_COLUMN, v)),
                    &a.profile_arn,
                    &a.sso_region,
                    &a.api_region,
                    &u32_param(a.max_concurrency),
                    &a.kind.as_str(),
                    &a.access_token
                        .as_deref()
                        .map(|v| s.encrypt(ACCESS_TOKEN_COLUMN, v)),
                    &a.machine_id,
                    &a.client_key,
                ],
            )
            .await,
            || format!("an account named `{}` already exists", a.name),
        )?;
        let account = account_row(&row, s)?;
        bump(&tx, Topic::Accounts).await?;
        tx.commit().await?;
        Ok(account)
    }

    pub(crate) async fn list_accounts_(&self) -> R<Vec<AccountRow>> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY id");
        all(&*conn, &sql, &[], |r| account_row(r, self.secret())).await
    }

    pub(crate) async fn get_account_(&self, id: i64) -> R<AccountRow> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1");
        one(
            &*conn,
            &sql,
            &[&id],
            |r| account_row(r, self.secret()),
            || format!("account {id}"),
        )
        .await
    }

    pub(crate) async fn set_account_status_(
        &self,
        id: i64,
        status: AccountStatus,
        reason: Option<String>,
    ) -> R<()> {
        let reason = match status {
            AccountStatus::Active => None,
            AccountStatus::Disabled => reason,
        };
        self.mutate_one(
            "UPDATE accounts SET status = $1, disabled_reason = $2, updated_at = now() WHERE id = $3",
            &[&status.as_str(), &reason, &id],
            Topic::Accounts,
            format!("account {id}"),
        )
        .await
    }

    pub(crate) async fn delete_account_(&self, id: i64) -> R<()> {
        self.mutate_one(
            "DELETE FROM accounts WHERE id = $1",
            &[&id],
            Topic::Accounts,
            format!("account {id}"),
        )
        .await
    }

    pub(crate) async fn update_refresh_token_(
        &self,
        id: i64,
        expected: i64,
        token: String,
    ) -> R<bool> {
        if token.trim().is_empty() {
            return Err(PgErr(StoreError::Invalid(
                "refresh token must not be empty".into(),
            )));
        }
        let sealed = self.secret().encrypt(TOKEN_COLUMN, &token);
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let n = tx
            .execute(
                "UPDATE accounts SET refresh_token_enc = $1, version = version + 1, \
                 updated_at = now() WHERE id = $2 AND version = $3",
                &[&sealed, &id, &expected],
            )
            .await?;
        if n == 0 {
            let found = tx
                .query_opt("SELECT 1 FROM accounts WHERE id = $1", &[&id])
                .await?;
            return match found {
                Some(_) => Ok(false),
                None => Err(not_found(format!("account {id}"))),
            };
        }
        bump(&tx, Topic::Accounts).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn update_session_token_(&self, id: i64, token: String) -> R<()> {
        validate::session_token(&token)?;
        let sealed = self.secret().encrypt(ACCESS_TOKEN_COLUMN, &token);
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "UPDATE accounts SET access_token_enc = $1, updated_at = now() WHERE id = $2",
                &[&sealed, &id],
            )
            .await?;
        if n == 0 {
            return Err(not_found(format!("account {id}")));
        }
        Ok(())
    }

    pub(crate) async fn get_account_state_(&self, id: i64) -> R<AccountState> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {STATE_COLS} FROM account_state WHERE account_id = $1");
        if let Some(row) = conn.query_opt(&sql, &[&id]).await? {
            return state_row(&row);
        }
        match conn
            .query_opt("SELECT 1 FROM accounts WHERE id = $1", &[&id])
            .await?
        {
            Some(_) => Ok(AccountState::fresh(id)),
            None => Err(not_found(format!("account {id}"))),
        }
    }

    pub(crate) async fn list_account_states_(&self) -> R<Vec<AccountState>> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {STATE_COLS} FROM account_state ORDER BY account_id");
        all(&*conn, &sql, &[], state_row).await
    }

    pub(crate) async fn put_account_state_(&self, st: AccountState) -> R<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let n = tx
            .execute(
                "INSERT INTO account_state (account_id, rest_until, throttled, \
                 consecutive_failures, breaker) SELECT id, $2, $3, $4, $5 FROM accounts WHERE id = $1 \
                 ON CONFLICT (account_id) DO UPDATE SET rest_until = excluded.rest_until, \
                 throttled = excluded.throttled, consecutive_failures = excluded.consecutive_failures, \
                 breaker = excluded.breaker, updated_at = now()",
                &[
                    &st.account_id,
                    &st.rest_until,
                    &st.throttled,
                    &i64::from(st.consecutive_failures),
                    &st.breaker.as_str(),
                ],
            )
            .await?;
        if n == 0 {
            return Err(not_found(format!("account {}", st.account_id)));
        }
        bump(&tx, Topic::AccountState).await?;
        Ok(tx.commit().await?)
    }
}
