//! Paged listings of the long tables (users, keys, audit log, transfers): the database does
//! the filtering, ordering, counting and slicing, so a console page reads one page of rows
//! however long the table is.

use super::{ApiKeyRow, AuditRow, KeyOwner, TransferRow, UserRow};

/// Which slice of a listing: `limit` rows after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows skipped.
    pub offset: u64,
    /// Rows wanted (at most [`PageRequest::MAX_LIMIT`]).
    pub limit: u32,
}

impl PageRequest {
    /// The largest page a store returns.
    pub const MAX_LIMIT: u32 = 1000;

    /// Page `page` (1-based) of `size` rows.
    pub fn nth(page: u64, size: u32) -> Self {
        PageRequest {
            offset: page.saturating_sub(1).saturating_mul(u64::from(size)),
            limit: size,
        }
    }

    /// The limit, capped.
    pub fn capped_limit(&self) -> u32 {
        self.limit.min(Self::MAX_LIMIT)
    }

    /// The offset as a signed SQL value.
    pub fn sql_offset(&self) -> i64 {
        i64::try_from(self.offset).unwrap_or(i64::MAX)
    }
}

/// One page of a listing and how many rows match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Rows matching the filter, over all pages.
    pub total: u64,
}

impl<T> Paged<T> {
    /// Slices an already filtered and ordered list (stores without paged SQL).
    pub fn of(all: Vec<T>, page: PageRequest) -> Self {
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
            .take(page.capped_limit() as usize)
            .collect();
        Paged { items, total }
    }
}

/// How a user listing is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSort {
    /// Oldest first (by id).
    #[default]
    Id,
    /// By name (byte order), then id.
    Name,
    /// Most quota used first, then id.
    QuotaUsed,
}

impl UserSort {
    /// Parses `id`, `name` or `quota_used`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "id" => Some(UserSort::Id),
            "name" => Some(UserSort::Name),
            "quota_used" => Some(UserSort::QuotaUsed),
            _ => None,
        }
    }

    /// The name [`UserSort::parse`] takes.
    pub fn as_str(self) -> &'static str {
        match self {
            UserSort::Id => "id",
            UserSort::Name => "name",
            UserSort::QuotaUsed => "quota_used",
        }
    }
}

/// Which users to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Only this agent's users.
    pub agent_id: Option<i64>,
    /// Only names containing this text (ASCII letters match either case).
    pub search: Option<String>,
    /// The order.
    pub sort: UserSort,
}

impl UserQuery {
    /// Whether `user` matches (the in-memory form of the query).
    pub fn matches(&self, user: &UserRow) -> bool {
        self.agent_id.is_none_or(|a| user.agent_id == Some(a))
            && self.search.as_deref().is_none_or(|s| {
                user.name
                    .to_ascii_lowercase()
                    .contains(&s.to_ascii_lowercase())
            })
    }

    /// Orders `users` as the query says (the in-memory form).
    pub fn sort(&self, users: &mut [UserRow]) {
        match self.sort {
            UserSort::Id => users.sort_by_key(|u| u.id),
            UserSort::Name => users.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id))),
            UserSort::QuotaUsed => {
                users.sort_by(|a, b| b.quota_used.cmp(&a.quota_used).then(a.id.cmp(&b.id)))
            }
        }
    }
}

/// Which audit entries to list (always newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries whose action starts with this text (`user.`, `account.create`).
    pub action: Option<String>,
}

impl AuditQuery {
    /// Whether `entry` matches.
    pub fn matches(&self, entry: &AuditRow) -> bool {
        self.action
            .as_deref()
            .is_none_or(|a| entry.action.starts_with(a))
    }
}

/// Which keys to list (oldest first).
pub type KeyQuery = KeyOwner;

/// Which transfers to list (newest first): one agent's, or all.
pub type TransferQuery = Option<i64>;

/// Rows of the paged listings, named for the trait's signatures.
pub type UserPage = Paged<UserRow>;
/// A page of keys.
pub type KeyPage = Paged<ApiKeyRow>;
/// A page of audit entries.
pub type AuditPage = Paged<AuditRow>;
/// A page of transfers.
pub type TransferPage = Paged<TransferRow>;

/// SQL `LIKE` pattern text for a literal: `\`, `%` and `_` escaped with `\`.
pub fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_slices() {
        assert_eq!(PageRequest::nth(3, 50).offset, 100);
        assert_eq!(PageRequest::nth(0, 50).offset, 0);
        let p = Paged::of((0..120).collect(), PageRequest::nth(3, 50));
        assert_eq!((p.items.len(), p.total, p.items[0]), (20, 120, 100));
        assert_eq!(like_literal(r"a%b_c\d"), r"a\%b\_c\\d");
        assert_eq!(UserSort::parse("quota_used"), Some(UserSort::QuotaUsed));
        assert_eq!(UserSort::parse("x"), None);
    }
}
