//! PostgreSQL: web console sessions (hashed ids only, see
//! `schema/postgres/0006_console_sessions.sql`).

use kiro_layers::store::ConsoleSessionRow;

use super::{PgStore, R};

impl PgStore {
    pub(crate) async fn create_console_session_(&self, s: ConsoleSessionRow) -> R<()> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO console_sessions (id_hash, role, key_id, expires_at, user_agent) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&s.id_hash, &s.role, &s.key_id, &s.expires_at, &s.user_agent],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn get_console_session_(
        &self,
        id_hash: Vec<u8>,
    ) -> R<Option<ConsoleSessionRow>> {
        let row = self
            .conn()
            .await?
            .query_opt(
                "SELECT role, key_id, expires_at, user_agent FROM console_sessions \
                 WHERE id_hash = $1 AND expires_at > now()",
                &[&id_hash],
            )
            .await?;
        row.map(|r| {
            Ok(ConsoleSessionRow {
                id_hash: id_hash.clone(),
                role: r.try_get(0)?,
                key_id: r.try_get(1)?,
                expires_at: r.try_get(2)?,
                user_agent: r.try_get(3)?,
            })
        })
        .transpose()
    }

    pub(crate) async fn delete_console_session_(&self, id_hash: Vec<u8>) -> R<()> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM console_sessions WHERE id_hash = $1",
                &[&id_hash],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn delete_console_sessions_of_key_(&self, key_id: i64) -> R<u64> {
        let n = self
            .conn()
            .await?
            .execute(
                "DELETE FROM console_sessions WHERE key_id = $1 OR expires_at <= now()",
                &[&key_id],
            )
            .await?;
        Ok(n)
    }
}
