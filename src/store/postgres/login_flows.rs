//! PostgreSQL: sign-in flows shared by every gateway process (`login_flows`, migration 0012).
//! Leases are measured by the database's clock, so the processes' clocks need not agree.

use std::time::Duration;

use kiro_layers::store::{LoginFlowRow, StoreError, Timestamp};

use super::tenancy::all;
use super::{PgStore, R};
use crate::store::crypto_error;

/// Associated data of the encrypted column.
const SECRETS_COLUMN: &str = "login_flows.secrets";

impl PgStore {
    pub(crate) async fn create_login_flow_(
        &self,
        row: LoginFlowRow,
        lease: Duration,
        max_live: u32,
    ) -> R<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // Creators queue on one lock so the count and the insert cannot interleave.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('kiro-login-flows', 0))",
            &[],
        )
        .await?;
        let live: i64 = tx
            .query_one(
                "SELECT count(*) FROM login_flows WHERE finished_at IS NULL",
                &[],
            )
            .await?
            .try_get(0)?;
        if live >= i64::from(max_live) {
            return Err(StoreError::Conflict(format!(
                "{live} sign-ins are already in progress: finish or cancel one first."
            ))
            .into());
        }
        let sealed = self.secret().encrypt(SECRETS_COLUMN, &row.secrets);
        let inserted = tx
            .execute(
                "INSERT INTO login_flows (id, status, version, view, plan, secrets_enc, \
                 expires_at, finished_at, owner, lease_until) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 CASE WHEN $9::text IS NULL THEN NULL \
                 ELSE now() + make_interval(secs => $10) END) \
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &row.id,
                    &row.status,
                    &row.version,
                    &row.view,
                    &row.plan,
                    &sealed,
                    &row.expires_at,
                    &row.finished_at,
                    &row.owner,
                    &lease.as_secs_f64(),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(
                StoreError::Conflict(format!("sign-in `{}` exists already", row.id)).into(),
            );
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn get_login_flow_(&self, id: &str) -> R<Option<LoginFlowRow>> {
        let row = self
            .conn()
            .await?
            .query_opt(
                "SELECT status, version, view, plan, secrets_enc, expires_at, finished_at, \
                 owner, lease_until FROM login_flows WHERE id = $1",
                &[&id],
            )
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let sealed: Vec<u8> = r.try_get(4)?;
        Ok(Some(LoginFlowRow {
            id: id.to_owned(),
            status: r.try_get(0)?,
            version: r.try_get(1)?,
            view: r.try_get(2)?,
            plan: r.try_get(3)?,
            secrets: self
                .secret()
                .decrypt(SECRETS_COLUMN, &sealed)
                .map_err(crypto_error)?,
            expires_at: r.try_get(5)?,
            finished_at: r.try_get::<_, Option<Timestamp>>(6)?,
            owner: r.try_get(7)?,
            lease_until: r.try_get::<_, Option<Timestamp>>(8)?,
        }))
    }

    pub(crate) async fn update_login_flow_(&self, row: LoginFlowRow, expected: i64) -> R<bool> {
        let sealed = self.secret().encrypt(SECRETS_COLUMN, &row.secrets);
        let written = self
            .conn()
            .await?
            .execute(
                "UPDATE login_flows SET status = $3, version = $2 + 1, view = $4, plan = $5, \
                 secrets_enc = $6, expires_at = $7, finished_at = $8 \
                 WHERE id = $1 AND version = $2",
                &[
                    &row.id,
                    &expected,
                    &row.status,
                    &row.view,
                    &row.plan,
                    &sealed,
                    &row.expires_at,
                    &row.finished_at,
                ],
            )
            .await?;
        Ok(written == 1)
    }

    pub(crate) async fn lease_login_flow_(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> R<bool> {
        let written = self
            .conn()
            .await?
            .execute(
                "UPDATE login_flows SET owner = $2, \
                 lease_until = now() + make_interval(secs => $3) \
                 WHERE id = $1 AND finished_at IS NULL AND (owner = $2 OR owner IS NULL \
                 OR lease_until IS NULL OR lease_until < now())",
                &[&id, &owner, &lease.as_secs_f64()],
            )
            .await?;
        Ok(written == 1)
    }

    pub(crate) async fn orphan_login_flows_(&self) -> R<Vec<String>> {
        all(
            &*self.conn().await?,
            "SELECT id FROM login_flows WHERE finished_at IS NULL \
             AND (lease_until IS NULL OR lease_until < now()) ORDER BY created_at",
            &[],
            |r| Ok(r.try_get(0)?),
        )
        .await
    }

    pub(crate) async fn sweep_login_flows_(&self, keep: Duration) -> R<u64> {
        let n = self
            .conn()
            .await?
            .execute(
                "DELETE FROM login_flows WHERE finished_at < now() - make_interval(secs => $1) \
                 OR (finished_at IS NULL AND expires_at < now() - make_interval(secs => $1))",
                &[&keep.as_secs_f64()],
            )
            .await?;
        Ok(n)
    }
}
