//! SQLite: Kiro accounts and their shared runtime state.

use kiro_layers::store::*;
use kiro_layers::traits::AccountKind;
use rusqlite::{params, Connection, Row};

use super::tenancy::{all, exists, immediate, not_found, one};
use super::{bump, ms, now_ms, ts, unique, SqlErr, R};
use crate::store::{crypto_error, to_u32, validate, Secret};

const TOKEN_COLUMN: &str = "accounts.refresh_token";
const CLIENT_SECRET_COLUMN: &str = "accounts.client_secret";
const ACCESS_TOKEN_COLUMN: &str = "accounts.access_token";

const ACCOUNT_COLS: &str = "id, name, auth_kind, refresh_token_enc, client_id, \
    client_secret_enc, profile_arn, sso_region, api_region, status, disabled_reason, \
    max_concurrency, version, created_at, updated_at, kind, access_token_enc, machine_id, \
    client_key";

fn account_row(r: &Row<'_>, s: &Secret) -> R<AccountRow> {
    let token: Vec<u8> = r.get(3)?;
    let client_secret: Option<Vec<u8>> = r.get(5)?;
    let access_token: Option<Vec<u8>> = r.get(16)?;
    Ok(AccountRow {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: AccountKind::new(&r.get::<_, String>(15)?),
        auth_kind: AuthKind::parse(&r.get::<_, String>(2)?)?,
        refresh_token: s.decrypt(TOKEN_COLUMN, &token).map_err(crypto_error)?,
        client_id: r.get(4)?,
        client_secret: client_secret
            .map(|v| s.decrypt(CLIENT_SECRET_COLUMN, &v))
            .transpose()
            .map_err(crypto_error)?,
        access_token: access_token
            .map(|v| s.decrypt(ACCESS_TOKEN_COLUMN, &v))
            .transpose()
            .map_err(crypto_error)?,
        machine_id: r.get(17)?,
        client_key: r.get(18)?,
        profile_arn: r.get(6)?,
        sso_region: r.get(7)?,
        api_region: r.get(8)?,
        status: AccountStatus::parse(&r.get::<_, String>(9)?)?,
        disabled_reason: r.get(10)?,
        max_concurrency: to_u32(r.get(11)?)?,
        version: r.get(12)?,
        created_at: ts(r.get(13)?),
        updated_at: ts(r.get(14)?),
    })
}

pub(crate) fn create_account(
    c: &mut Connection,
    s: &Secret,
    topics: &mut Vec<Topic>,
    a: NewAccount,
) -> R<AccountRow> {
    validate::account(&a)?;
    let now = now_ms();
    let tx = immediate(c)?;
    unique(
        tx.execute(
            "INSERT INTO accounts (name, auth_kind, refresh_token_enc, client_id, \
             client_secret_enc, profile_arn, sso_region, api_region, max_concurrency, \
             created_at, updated_at, kind, access_token_enc, machine_id, client_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14)",
            params![
                a.name,
                a.auth_kind.as_str(),
                s.encrypt(TOKEN_COLUMN, &a.refresh_token),
                a.client_id,
                a.client_secret
                    .as_deref()
                    .map(|v| s.encrypt(CLIENT_SECRET_COLUMN, v)),
                a.profile_arn,
                a.sso_region,
                a.api_region,
                a.max_concurrency,
                now,
                a.kind.as_str(),
                a.access_token
                    .as_deref()
                    .map(|v| s.encrypt(ACCESS_TOKEN_COLUMN, v)),
                a.machine_id,
                a.client_key
            ],
        ),
        || format!("an account named `{}` already exists", a.name),
    )?;
    let id = tx.last_insert_rowid();
    bump(&tx, topics, Topic::Accounts)?;
    let row = get_account(&tx, s, id)?;
    tx.commit()?;
    Ok(row)
}

pub(crate) fn list_accounts(c: &Connection, s: &Secret) -> R<Vec<AccountRow>> {
    let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY id");
    all(c, &sql, &[], |r| account_row(r, s))
}

pub(crate) fn get_account(c: &Connection, s: &Secret, id: i64) -> R<AccountRow> {
    let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1");
    one(
        c,
        &sql,
        &[&id],
        |r| account_row(r, s),
        || format!("account {id}"),
    )
}

pub(crate) fn set_account_status(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    id: i64,
    status: AccountStatus,
    reason: Option<String>,
) -> R<()> {
    let reason = match status {
        AccountStatus::Active => None,
        AccountStatus::Disabled => reason,
    };
    let tx = immediate(c)?;
    let n = tx.execute(
        "UPDATE accounts SET status = ?1, disabled_reason = ?2, updated_at = ?3 WHERE id = ?4",
        params![status.as_str(), reason, now_ms(), id],
    )?;
    if n == 0 {
        return Err(not_found(format!("account {id}")));
    }
    bump(&tx, topics, Topic::Accounts)?;
    Ok(tx.commit()?)
}

pub(crate) fn delete_account(c: &mut Connection, topics: &mut Vec<Topic>, id: i64) -> R<()> {
    let tx = immediate(c)?;
    if tx.execute("DELETE FROM accounts WHERE id = ?1", [id])? == 0 {
        return Err(not_found(format!("account {id}")));
    }
    bump(&tx, topics, Topic::Accounts)?;
    Ok(tx.commit()?)
}

pub(crate) fn update_refresh_token(
    c: &mut Connection,
    s: &Secret,
    topics: &mut Vec<Topic>,
    id: i64,
    expected_version: i64,
    token: &str,
) -> R<bool> {
    if token.trim().is_empty() {
        return Err(SqlErr(StoreError::Invalid(
            "refresh token must not be empty".into(),
        )));
    }
    let tx = immediate(c)?;
    let n = tx.execute(
        "UPDATE accounts SET refresh_token_enc = ?1, version = version + 1, updated_at = ?2 \
         WHERE id = ?3 AND version = ?4",
        params![
            s.encrypt(TOKEN_COLUMN, token),
            now_ms(),
            id,
            expected_version
        ],
    )?;
    if n == 0 {
        return if exists(&tx, "SELECT 1 FROM accounts WHERE id = ?1", id)? {
            Ok(false)
        } else {
            Err(not_found(format!("account {id}")))
        };
    }
    bump(&tx, topics, Topic::Accounts)?;
    tx.commit()?;
    Ok(true)
}

pub(crate) fn update_session_token(c: &Connection, s: &Secret, id: i64, token: &str) -> R<()> {
    validate::session_token(token)?;
    let n = c.execute(
        "UPDATE accounts SET access_token_enc = ?1, updated_at = ?2 WHERE id = ?3",
        params![s.encrypt(ACCESS_TOKEN_COLUMN, token), now_ms(), id],
    )?;
    if n == 0 {
        return Err(not_found(format!("account {id}")));
    }
    Ok(())
}

fn state_row(r: &Row<'_>) -> R<AccountState> {
    Ok(AccountState {
        account_id: r.get(0)?,
        rest_until: r.get::<_, Option<i64>>(1)?.map(ts),
        throttled: r.get(2)?,
        consecutive_failures: to_u32(Some(r.get(3)?))?.unwrap_or(0),
        breaker: BreakerState::parse(&r.get::<_, String>(4)?)?,
    })
}

const STATE_COLS: &str = "account_id, rest_until, throttled, consecutive_failures, breaker";

pub(crate) fn get_account_state(c: &Connection, id: i64) -> R<AccountState> {
    let sql = format!("SELECT {STATE_COLS} FROM account_state WHERE account_id = ?1");
    if let Some(state) = all(c, &sql, &[&id], state_row)?.into_iter().next() {
        return Ok(state);
    }
    if exists(c, "SELECT 1 FROM accounts WHERE id = ?1", id)? {
        Ok(AccountState::fresh(id))
    } else {
        Err(not_found(format!("account {id}")))
    }
}

pub(crate) fn list_account_states(c: &Connection) -> R<Vec<AccountState>> {
    let sql = format!("SELECT {STATE_COLS} FROM account_state ORDER BY account_id");
    all(c, &sql, &[], state_row)
}

pub(crate) fn put_account_state(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    st: AccountState,
) -> R<()> {
    let tx = immediate(c)?;
    if !exists(&tx, "SELECT 1 FROM accounts WHERE id = ?1", st.account_id)? {
        return Err(not_found(format!("account {}", st.account_id)));
    }
    tx.execute(
        "INSERT INTO account_state (account_id, rest_until, throttled, consecutive_failures, \
         breaker, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (account_id) DO UPDATE \
         SET rest_until = excluded.rest_until, throttled = excluded.throttled, \
         consecutive_failures = excluded.consecutive_failures, breaker = excluded.breaker, \
         updated_at = excluded.updated_at",
        params![
            st.account_id,
            st.rest_until.map(ms),
            st.throttled,
            st.consecutive_failures,
            st.breaker.as_str(),
            now_ms()
        ],
    )?;
    bump(&tx, topics, Topic::AccountState)?;
    Ok(tx.commit()?)
}
