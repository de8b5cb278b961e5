//! Input checks shared by both backends, so a bad value fails with the same message everywhere
//! and before anything is written.

use kiro_layers::store::{NewAccount, NewApiKey, Price, StoreError, StoreResult};

use super::crypto::PUBLIC_ID_LEN;

const MAX_NAME: usize = 200;

/// A name: not blank, at most 200 characters, no control characters. Quotes, semicolons and
/// other SQL metacharacters are fine: every query binds parameters.
pub fn name(what: &str, value: &str) -> StoreResult<()> {
    if value.trim().is_empty() {
        return Err(StoreError::Invalid(format!("{what} must not be empty")));
    }
    if value.chars().count() > MAX_NAME {
        return Err(StoreError::Invalid(format!(
            "{what} must be at most {MAX_NAME} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

/// A quota or amount that must not be negative.
pub fn non_negative(what: &str, value: i64) -> StoreResult<()> {
    if value < 0 {
        return Err(StoreError::Invalid(format!(
            "{what} must not be negative (got {value})"
        )));
    }
    Ok(())
}

/// A new account.
pub fn account(account: &NewAccount) -> StoreResult<()> {
    name("account name", &account.name)?;
    if account.refresh_token.trim().is_empty() {
        return Err(StoreError::Invalid(
            "refresh token must not be empty".into(),
        ));
    }
    name("sso_region", &account.sso_region)?;
    name("api_region", &account.api_region)
}

/// A new key.
pub fn api_key(key: &NewApiKey) -> StoreResult<()> {
    name("key name", &key.name)?;
    if key.public_id.len() != PUBLIC_ID_LEN
        || !key.public_id.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(StoreError::Invalid(format!(
            "public_id must be {PUBLIC_ID_LEN} ASCII letters or digits"
        )));
    }
    if key.secret_hash.len() != 32 {
        return Err(StoreError::Invalid("secret_hash must be 32 bytes".into()));
    }
    if let Some(limit) = key.quota_limit {
        amount("quota_limit", limit)?;
    }
    for model in &key.allowed_models {
        name("allowed model", model)?;
    }
    Ok(())
}

/// Combo members: at least one, each a valid name.
pub fn members(members: &[String]) -> StoreResult<()> {
    if members.is_empty() {
        return Err(StoreError::Invalid(
            "a combo needs at least one member model".into(),
        ));
    }
    members.iter().try_for_each(|m| name("combo member", m))
}

/// Prices: none negative.
pub fn price(price: &Price) -> StoreResult<()> {
    non_negative("input_per_m", price.input_per_m)?;
    non_negative("output_per_m", price.output_per_m)?;
    non_negative("cache_read_per_m", price.cache_read_per_m)?;
    non_negative("cache_write_per_m", price.cache_write_per_m)
}

/// The largest amount accepted anywhere: one billion credits. Keeps sums far from `i64`
/// overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000 * kiro_layers::store::MICRO_PER_CREDIT;

/// A quota, limit or charge: 0 ..= [`MAX_AMOUNT`].
pub fn amount(what: &str, value: i64) -> StoreResult<()> {
    non_negative(what, value)?;
    if value > MAX_AMOUNT {
        return Err(StoreError::Invalid(format!(
            "{what} must be at most {MAX_AMOUNT} micro-credits"
        )));
    }
    Ok(())
}

/// An amount added to a quota or balance: may be negative, |value| <= [`MAX_AMOUNT`].
pub fn signed_amount(what: &str, value: i64) -> StoreResult<()> {
    if value.checked_abs().is_none_or(|v| v > MAX_AMOUNT) {
        return Err(StoreError::Invalid(format!(
            "{what} must be between -{MAX_AMOUNT} and {MAX_AMOUNT} micro-credits"
        )));
    }
    Ok(())
}

/// A transfer: 1 ..= [`MAX_AMOUNT`].
pub fn transfer_amount(value: i64) -> StoreResult<()> {
    if value <= 0 {
        return Err(StoreError::Invalid(format!(
            "a transfer amount must be positive (got {value})"
        )));
    }
    amount("transfer amount", value)
}

/// `current + amount`, refused when negative.
pub fn added(what: &str, current: i64, amount: i64) -> StoreResult<i64> {
    match current.checked_add(amount) {
        Some(next) if next >= 0 => Ok(next),
        _ => Err(StoreError::Conflict(format!(
            "{what} has {current} micro-credits; adding {amount} would make it negative"
        ))),
    }
}

/// The error of a transfer larger than the agent's balance.
pub fn insufficient(agent_id: i64, balance: i64, amount: i64) -> StoreError {
    StoreError::Conflict(format!(
        "agent {agent_id} has a balance of {balance} micro-credits, less than the {amount} to transfer"
    ))
}

/// The agent a new key belongs to: a user's key takes the user's agent (and must not name
/// another); an agent key needs an agent.
pub fn key_owner(
    key: &NewApiKey,
    user: Option<&kiro_layers::store::UserRow>,
) -> StoreResult<Option<i64>> {
    let agent = match user {
        Some(user) => {
            if key.agent_id.is_some() && key.agent_id != user.agent_id {
                return Err(StoreError::Invalid(format!(
                    "user {} does not belong to agent {}",
                    user.id,
                    key.agent_id.unwrap_or_default()
                )));
            }
            user.agent_id
        }
        None => key.agent_id,
    };
    if key.kind == kiro_layers::store::KeyKind::Agent && agent.is_none() {
        return Err(StoreError::Invalid("an agent key needs an agent_id".into()));
    }
    Ok(agent)
}

/// Most rows one list call returns.
pub const MAX_LIST: u32 = 1000;

/// A usage row.
pub fn usage_row(row: &kiro_layers::store::UsageRow) -> StoreResult<()> {
    if row.request_id.is_empty() {
        return Err(StoreError::Invalid(
            "usage request_id must not be empty".into(),
        ));
    }
    amount("charged", row.charged)
}

/// What a newly stored usage row charges: its key and user, or (for an agent's own key, no
/// user) the agent's balance.
pub fn charge_for(row: &kiro_layers::store::UsageRow) -> kiro_layers::store::ChargeLine {
    kiro_layers::store::ChargeLine {
        key_id: row.key_id,
        user_id: row.user_id,
        agent_id: if row.user_id.is_none() {
            row.agent_id
        } else {
            None
        },
        amount: row.charged,
    }
}

/// An audit entry.
pub fn audit(entry: &kiro_layers::store::AuditEntry) -> StoreResult<()> {
    name("audit actor", &entry.actor)?;
    name("audit action", &entry.action)
}

/// Charges summed per agent, user and key, each sorted by id. Backends apply them in this
/// order (agents, users, keys) everywhere, so concurrent transactions lock rows in one order
/// and cannot deadlock.
#[derive(Debug, Default)]
pub struct ChargeTotals {
    /// Agent id -> micro-credits to take from the balance.
    pub agents: std::collections::BTreeMap<i64, i64>,
    /// User id -> micro-credits to add to `quota_used`.
    pub users: std::collections::BTreeMap<i64, i64>,
    /// Key id -> micro-credits to add to `quota_used`.
    pub keys: std::collections::BTreeMap<i64, i64>,
}

impl ChargeTotals {
    /// Sums `lines` (zero amounts are skipped).
    pub fn of(lines: &[kiro_layers::store::ChargeLine]) -> Self {
        let mut totals = ChargeTotals::default();
        for line in lines.iter().filter(|l| l.amount != 0) {
            let add = |map: &mut std::collections::BTreeMap<i64, i64>, id: Option<i64>| {
                if let Some(id) = id {
                    let sum = map.entry(id).or_default();
                    *sum = sum.saturating_add(line.amount);
                }
            };
            add(&mut totals.agents, line.agent_id);
            add(&mut totals.users, line.user_id);
            add(&mut totals.keys, line.key_id);
        }
        totals
    }
}
