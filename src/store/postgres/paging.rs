//! PostgreSQL: the paged listings (users, keys, audit log, transfers), filtered, ordered,
//! counted and sliced by the database.

use kiro_layers::store::*;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::tenancy::{all, key_row, user_row, KEY_COLS, USER_COLS};
use super::{PgStore, R};

impl PgStore {
    /// `COUNT(*)` of `from_where` and one page of `select ... from_where order`.
    async fn paged<T>(
        &self,
        select: &str,
        from_where: &str,
        order: &str,
        params: &[&(dyn ToSql + Sync)],
        page: PageRequest,
        map: impl Fn(&Row) -> R<T>,
    ) -> R<Paged<T>> {
        let conn = self.conn().await?;
        let total: i64 = conn
            .query_one(&format!("SELECT COUNT(*) {from_where}"), params)
            .await?
            .try_get(0)?;
        let n = params.len();
        let sql = format!(
            "SELECT {select} {from_where} ORDER BY {order} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let limit = i64::from(page.capped_limit());
        let offset = page.sql_offset();
        let mut all_params: Vec<&(dyn ToSql + Sync)> = params.to_vec();
        all_params.push(&limit);
        all_params.push(&offset);
        Ok(Paged {
            items: all(&*conn, &sql, &all_params, map).await?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    pub(crate) async fn page_users_(&self, q: UserQuery, page: PageRequest) -> R<UserPage> {
        let order = match q.sort {
            UserSort::Id => "id",
            UserSort::Name => "name COLLATE \"C\", id",
            UserSort::QuotaUsed => "quota_used DESC, id",
        };
        let search = q
            .search
            .as_deref()
            .map(|s| format!("%{}%", like_literal(s)));
        self.paged(
            USER_COLS,
            "FROM users WHERE deleted_at IS NULL AND ($1::bigint IS NULL OR agent_id = $1) \
             AND ($2::text IS NULL OR name ILIKE $2 ESCAPE '\\')",
            order,
            &[&q.agent_id, &search],
            page,
            user_row,
        )
        .await
    }

    pub(crate) async fn page_api_keys_(&self, owner: KeyOwner, page: PageRequest) -> R<KeyPage> {
        let (filter, id) = match owner {
            KeyOwner::All => ("$1::bigint IS NULL", None),
            KeyOwner::User(id) => ("k.user_id = $1", Some(id)),
            KeyOwner::Agent(id) => ("k.agent_id = $1", Some(id)),
        };
        self.paged(
            KEY_COLS,
            &format!("FROM api_keys k WHERE {filter}"),
            "k.id",
            &[&id],
            page,
            key_row,
        )
        .await
    }

    pub(crate) async fn page_audit_(&self, q: AuditQuery, page: PageRequest) -> R<AuditPage> {
        let prefix = q.action.as_deref().map(|a| format!("{}%", like_literal(a)));
        self.paged(
            "id, actor, action, object_type, object_id, detail, created_at",
            "FROM audit_log WHERE ($1::text IS NULL OR action LIKE $1 ESCAPE '\\')",
            "id DESC",
            &[&prefix],
            page,
            |r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    object_type: r.try_get(3)?,
                    object_id: r.try_get(4)?,
                    detail: r.try_get(5)?,
                    created_at: r.try_get(6)?,
                })
            },
        )
        .await
    }

    pub(crate) async fn page_transfers_(
        &self,
        agent: Option<i64>,
        page: PageRequest,
    ) -> R<TransferPage> {
        self.paged(
            "id, agent_id, user_id, amount, agent_balance_after, created_at",
            "FROM quota_transfers WHERE $1::bigint IS NULL OR agent_id = $1",
            "id DESC",
            &[&agent],
            page,
            |r| {
                Ok(TransferRow {
                    id: r.try_get(0)?,
                    agent_id: r.try_get(1)?,
                    user_id: r.try_get(2)?,
                    amount: r.try_get(3)?,
                    agent_balance_after: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                })
            },
        )
        .await
    }
}
