//! Input checks shared by both backends and the management APIs, so a bad value fails with the
//! same message everywhere and before anything is written.

use kiro_layers::store::{NewAccount, NewApiKey, Price, StoreError, StoreResult};

use super::crypto::PUBLIC_ID_LEN;

/// Longest name or model name, in characters.
pub const MAX_NAME: usize = 100;

/// Longest free text (audit actor and action), in characters.
const MAX_TEXT: usize = 200;

/// Punctuation a name may contain besides letters, digits and spaces.
pub const NAME_PUNCTUATION: &str = "._-@+:/()";

/// Punctuation a model name may contain besides ASCII letters and digits.
pub const MODEL_PUNCTUATION: &str = "._-[]:/";

/// A name of a user, agent, key or account: 1 to [`MAX_NAME`] characters, each a letter or digit
/// of any script, a space, or one of [`NAME_PUNCTUATION`]; no leading or trailing space and no
/// `--`. Everything else is refused, SQL metacharacters (quotes, `;`, `\`, `--`, `%`) included:
/// every query binds its parameters, but names also end up in logs, spreadsheets and other
/// people's tools, and none of them needs those characters.
pub fn name(what: &str, value: &str) -> StoreResult<()> {
    restricted(
        what,
        value,
        "letters, digits, spaces and",
        NAME_PUNCTUATION,
        |c| c.is_alphanumeric() || c == ' ',
    )
}

/// A model name (alias, combo, combo member, priced model, allowed model): 1 to [`MAX_NAME`]
/// ASCII letters, digits and [`MODEL_PUNCTUATION`] (`claude-sonnet-4.5`,
/// `claude-opus-4-6[1m]`, `anthropic/claude-3.5:beta`), no `--`.
pub fn model_name(what: &str, value: &str) -> StoreResult<()> {
    restricted(
        what,
        value,
        "ASCII letters, digits and",
        MODEL_PUNCTUATION,
        |c| c.is_ascii_alphanumeric(),
    )
}

/// An AWS region such as `us-east-1` (the rule the credential refresher applies: regions end up
/// in host names).
pub fn region(what: &str, value: &str) -> StoreResult<()> {
    if !kiro_layers::kiro::auth::is_region_name(value) {
        return Err(StoreError::Invalid(format!(
            "{what} must be an AWS region such as us-east-1 (lowercase letters and digits \
             separated by `-`)"
        )));
    }
    Ok(())
}

/// A profile ARN: `arn:` then ASCII letters, digits and `:/._-`, at most 256 characters.
pub fn profile_arn(value: &str) -> StoreResult<()> {
    let ok = value.starts_with("arn:")
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/._-".contains(&b));
    if !ok {
        return Err(StoreError::Invalid(
            "profile_arn must look like arn:aws:codewhisperer:us-east-1:123456789012:profile/ABC \
             (ASCII letters, digits and `:/._-`, at most 256 characters)"
                .into(),
        ));
    }
    Ok(())
}

fn restricted(
    what: &str,
    value: &str,
    classes: &str,
    punctuation: &str,
    class: impl Fn(char) -> bool,
) -> StoreResult<()> {
    let rule = || {
        format!(
            "{what} may contain only {classes} `{punctuation}` (1 to {MAX_NAME} characters, \
             no `--`, no leading or trailing space)"
        )
    };
    let count = value.chars().count();
    if value.trim().is_empty() || count > MAX_NAME {
        return Err(StoreError::Invalid(format!(
            "{}; got {count} characters",
            rule()
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|&c| !(class(c) || punctuation.contains(c)))
    {
        return Err(StoreError::Invalid(format!(
            "{}; {} is not allowed",
            rule(),
            shown(bad)
        )));
    }
    if value.contains("--") {
        return Err(StoreError::Invalid(format!(
            "{}; `--` is not allowed",
            rule()
        )));
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err(StoreError::Invalid(format!(
            "{}; it starts or ends with a space",
            rule()
        )));
    }
    Ok(())
}

/// A refused character as the message shows it: printable ones quoted, others by code point.
fn shown(c: char) -> String {
    if c.is_control() || c.is_whitespace() || c == '`' {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("`{c}`")
    }
}

/// Free text that is not a name (audit actor and action): not blank, at most 200 characters,
/// no control characters.
pub fn text(what: &str, value: &str) -> StoreResult<()> {
    if value.trim().is_empty() {
        return Err(StoreError::Invalid(format!("{what} must not be empty")));
    }
    if value.chars().count() > MAX_TEXT {
        return Err(StoreError::Invalid(format!(
            "{what} must be at most {MAX_TEXT} characters"
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
    if account.kind == kiro_layers::traits::AccountKind::CURSOR {
        return cursor_account(account);
    }
    if account.refresh_token.trim().is_empty() {
        return Err(StoreError::Invalid(
            "refresh token must not be empty".into(),
        ));
    }
    let secrets = [
        ("refresh token", Some(&account.refresh_token)),
        ("client_id", account.client_id.as_ref()),
        ("client_secret", account.client_secret.as_ref()),
    ];
    for (what, value) in secrets {
        if value.is_some_and(|v| v.chars().any(char::is_control)) {
            return Err(StoreError::Invalid(format!(
                "{what} must not contain control characters"
            )));
        }
    }
    if let Some(arn) = &account.profile_arn {
        profile_arn(arn)?;
    }
    region("sso_region", &account.sso_region)?;
    region("api_region", &account.api_region)
}

/// A Cursor account: a session token (a JWT), an optional refresh token, and the stable machine
/// id and client key its headers carry (64 lower-case hex each); no regions.
fn cursor_account(account: &NewAccount) -> StoreResult<()> {
    session_token(account.access_token.as_deref().unwrap_or(""))?;
    if account.refresh_token.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "refresh token must not contain control characters".into(),
        ));
    }
    for (what, value) in [
        ("machine_id", &account.machine_id),
        ("client_key", &account.client_key),
    ] {
        let ok = value.as_deref().is_some_and(|v| {
            v.len() == 64 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if !ok {
            return Err(StoreError::Invalid(format!(
                "{what} of a Cursor account must be 64 lower-case hex characters"
            )));
        }
    }
    Ok(())
}

/// A Cursor session token: a JWT (three dot-separated parts) of printable ASCII, at most 8 KiB.
pub fn session_token(token: &str) -> StoreResult<()> {
    let ok = token.len() <= 8192
        && token.split('.').count() == 3
        && token.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(StoreError::Invalid(
            "a Cursor session token must be a JWT (three dot-separated parts)".into(),
        ));
    }
    Ok(())
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
        model_name("allowed model", model)?;
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
    members
        .iter()
        .try_for_each(|m| model_name("combo member", m))
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

/// A usage row. Its text must not contain NUL, which PostgreSQL cannot store in `text`
/// ([`crate::store::usage_writer::usage_row`] already replaces control characters).
pub fn usage_row(row: &kiro_layers::store::UsageRow) -> StoreResult<()> {
    if row.request_id.is_empty() {
        return Err(StoreError::Invalid(
            "usage request_id must not be empty".into(),
        ));
    }
    let texts = [
        ("request_id", Some(&row.request_id)),
        ("requested_model", Some(&row.requested_model)),
        ("resolved_model", Some(&row.resolved_model)),
        ("account_id", row.account_id.as_ref()),
        ("account_kind", row.account_kind.as_ref()),
    ];
    for (what, value) in texts {
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(StoreError::Invalid(format!(
                "usage {what} must not contain NUL"
            )));
        }
    }
    amount("charged", row.charged)
}

/// A name looked up to delete it: one with NUL cannot exist (PostgreSQL refuses NUL in text
/// rather than finding nothing), so it is not found without asking the database.
pub fn lookup_name(what: &str, name: &str) -> StoreResult<()> {
    if name.contains('\0') {
        return Err(StoreError::NotFound(format!(
            "{what} `{}`",
            name.escape_default()
        )));
    }
    Ok(())
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
    text("audit actor", &entry.actor)?;
    text("audit action", &entry.action)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: StoreResult<()>) -> String {
        match result {
            Err(StoreError::Invalid(message)) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn names_allow_letters_of_any_script_and_a_little_punctuation() {
        for ok in [
            "alice",
            "Zoë O.Brien-Smith (ops)",
            "bob+ci@example.com",
            "team/eu:prod_1",
            "東京チーム",
            "Ünïcödé 42",
        ] {
            name("user name", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn names_refuse_sql_metacharacters_and_say_what_is_allowed() {
        for (bad, shown) in [
            ("Robert'); DROP TABLE users;--", "`'`"),
            ("a\"b", "`\"`"),
            ("semi;colon", "`;`"),
            ("back\\slash", "`\\`"),
            ("50%_off", "`%`"),
            ("tab\there", "U+0009"),
            ("nul\0byte", "U+0000"),
            ("emoji ✓", "`✓`"),
            ("<b>x</b>", "`<`"),
        ] {
            let message = refused(name("user name", bad));
            assert!(
                message.starts_with("user name may contain only"),
                "{message}"
            );
            assert!(message.contains("`._-@+:/()`"), "{message}");
            assert!(
                message.ends_with(&format!("{shown} is not allowed")),
                "{message}"
            );
        }
        assert!(refused(name("n", "dash--dash")).contains("`--` is not allowed"));
        assert!(refused(name("n", " padded")).contains("space"));
        assert!(refused(name("n", "")).contains("got 0 characters"));
        assert!(refused(name("n", &"x".repeat(101))).contains("got 101 characters"));
        name("n", &"é".repeat(100)).unwrap();
    }

    #[test]
    fn model_names_are_ascii_with_brackets() {
        for ok in [
            "claude-sonnet-4.5",
            "claude-opus-4-6[1m]",
            "CLAUDE_SONNET_4_5_20250929_V1_0",
            "anthropic/claude-3.5:beta",
            "auto",
        ] {
            model_name("model", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["claude sonnet", "mödel", "x'y", "a;b", "a--b", "(x)", "a@b"] {
            let message = refused(model_name("`model`", bad));
            assert!(message.contains("`._-[]:/`"), "{message}");
        }
    }

    #[test]
    fn regions_and_arns_are_shaped_like_aws_ones() {
        region("r", "us-east-1").unwrap();
        for bad in ["evil.com/#", "us-east", "US-EAST-1", "us-east-1;", ""] {
            refused(region("r", bad));
        }
        profile_arn("arn:aws:codewhisperer:us-east-1:123456789012:profile/ABC").unwrap();
        refused(profile_arn("arn:aws:x' OR 1=1"));
        refused(profile_arn("profile/ABC"));
    }
}
