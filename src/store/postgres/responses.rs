//! Stored Responses answers (`stored_responses`), always scoped to their owner.

use kiro_layers::store::ResponseRow;

use super::{PgStore, R};

impl PgStore {
    pub(crate) async fn put_response_(&self, row: ResponseRow) -> R<()> {
        let conn = self.conn().await?;
        conn.execute(
            "DELETE FROM stored_responses WHERE expires_at <= $1",
            &[&row.created_at_ms],
        )
        .await?;
        conn.execute(
            "INSERT INTO stored_responses (owner, id, response, items, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (owner, id) DO UPDATE SET response = excluded.response, \
             items = excluded.items, created_at = excluded.created_at, expires_at = excluded.expires_at",
            &[
                &row.owner,
                &row.id,
                &row.response,
                &row.items,
                &row.created_at_ms,
                &row.expires_at_ms,
            ],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn get_response_(
        &self,
        owner: &str,
        id: &str,
        now_ms: i64,
    ) -> R<Option<ResponseRow>> {
        let row = self
            .conn()
            .await?
            .query_opt(
                "SELECT owner, id, response, items, created_at, expires_at FROM stored_responses \
                 WHERE owner = $1 AND id = $2 AND expires_at > $3",
                &[&owner, &id, &now_ms],
            )
            .await?;
        Ok(row.map(|r| ResponseRow {
            owner: r.get(0),
            id: r.get(1),
            response: r.get(2),
            items: r.get(3),
            created_at_ms: r.get(4),
            expires_at_ms: r.get(5),
        }))
    }

    pub(crate) async fn delete_response_(&self, owner: &str, id: &str) -> R<bool> {
        let removed = self
            .conn()
            .await?
            .execute(
                "DELETE FROM stored_responses WHERE owner = $1 AND id = $2",
                &[&owner, &id],
            )
            .await?;
        Ok(removed > 0)
    }
}
