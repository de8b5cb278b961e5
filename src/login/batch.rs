//! Batch import: many refresh tokens or credential files at once. Each is read, de-duplicated
//! (by refresh token, against the stored accounts and the earlier entries), verified with one
//! refresh and stored; the answer has one result per entry, in order. One bad entry never
//! stops the others.

use std::collections::HashMap;

use kiro_layers::kiro::auth::TokenSet;
use kiro_layers::store::AuthKind;
use kiro_layers::GatewayError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::account::{verify, Context};
use crate::tenancy::accounts::{new_account, AccountSource};
use crate::tenancy::keys::Caller;

/// Entries per call at most (each costs one refresh upstream).
pub const MAX_ENTRIES: usize = 500;

/// The body of `POST /admin/accounts/import`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Text with one entry per line: a refresh token, or a credentials file's JSON on one line.
    #[serde(default)]
    pub text: Option<String>,
    /// Credentials files (Kiro IDE / AWS SSO JSON objects), or arrays of them (a Kiro Account
    /// Manager export).
    #[serde(default)]
    pub files: Vec<Value>,
    /// Names are `<prefix> <n>` (default `import`).
    #[serde(default)]
    pub name_prefix: Option<String>,
    /// Leases at once, for every imported account.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Stored.
    Added,
    /// The same refresh token is already stored or came earlier in this import.
    Duplicate,
    /// Unreadable or refused by its first refresh: `error` says why.
    Failed,
}

/// One result line.
#[derive(Debug, Clone, Serialize)]
pub struct LineResult {
    /// 1-based position among the entries (text lines first, then files).
    pub line: usize,
    /// What happened.
    pub outcome: Outcome,
    /// The stored account's id (`added`) or the existing one (`duplicate` of a stored account).
    pub account_id: Option<i64>,
    /// The account's name (`added`).
    pub name: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

enum Entry {
    Token(String),
    File(Value),
}

fn entries(request: &ImportRequest) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in request.text.as_deref().unwrap_or_default().lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(value) if value.is_object() => out.push(Entry::File(value)),
            _ => out.push(Entry::Token(line.to_owned())),
        }
    }
    for file in &request.files {
        match file {
            Value::Array(items) => out.extend(items.iter().cloned().map(Entry::File)),
            Value::Object(map) if map.get("accounts").is_some_and(Value::is_array) => {
                // Kiro Account Manager's nested export: {version, accounts: [{credentials}]}.
                for item in map["accounts"].as_array().into_iter().flatten() {
                    out.push(Entry::File(
                        item.get("credentials").cloned().unwrap_or(item.clone()),
                    ));
                }
            }
            other => out.push(Entry::File(other.clone())),
        }
    }
    out
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Only the fields a credentials file's loader reads (a KAM entry also has `email`, ...).
/// `clientIdHash` is left out on purpose: it names a registration file in the gateway host's
/// own `~/.aws/sso/cache`, which an upload must not make the gateway read.
fn credentials_only(file: Value) -> Value {
    const KNOWN: [&str; 9] = [
        "refreshToken",
        "accessToken",
        "expiresAt",
        "profileArn",
        "region",
        "clientId",
        "clientSecret",
        "authMethod",
        "provider",
    ];
    match file {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| KNOWN.contains(&k.as_str()))
                .collect(),
        ),
        other => other,
    }
}

/// Imports every entry of `request`; see the module docs.
pub async fn import(
    ctx: &Context,
    caller: &Caller,
    request: ImportRequest,
) -> Result<Vec<LineResult>, GatewayError> {
    let prefix = request
        .name_prefix
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or("import")
        .to_owned();
    crate::store::validate::name("`name_prefix`", &prefix)?;
    let entries = entries(&request);
    if entries.is_empty() {
        return Err(GatewayError::invalid_request(
            "Nothing to import: give `text` (one refresh token or credentials JSON per line) or `files`.",
        ));
    }
    if entries.len() > MAX_ENTRIES {
        return Err(GatewayError::invalid_request(format!(
            "{} entries: import at most {MAX_ENTRIES} at once.",
            entries.len()
        )));
    }
    let stored = ctx.tenancy.store.list_accounts().await?;
    // Refresh-token hash to the account holding it (`None` while an earlier entry of this
    // import is still unproven, or after it failed).
    let mut known: HashMap<[u8; 32], Option<i64>> = stored
        .iter()
        .map(|a| (token_hash(&a.refresh_token), Some(a.id)))
        .collect();
    let batch = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let mut results = Vec::with_capacity(entries.len());
    let mut added = 0;
    for (index, entry) in entries.into_iter().enumerate() {
        let line = index + 1;
        let name = format!("{prefix} {batch}-{line}");
        let source = match entry {
            Entry::Token(token) => AccountSource {
                name: name.clone(),
                refresh_token: Some(token),
                ..AccountSource::default()
            },
            Entry::File(file) => AccountSource {
                name: name.clone(),
                creds: Some(credentials_only(file)),
                ..AccountSource::default()
            },
        };
        let failed = |error: String| LineResult {
            line,
            outcome: Outcome::Failed,
            account_id: None,
            name: None,
            error: Some(error),
        };
        let mut account = match new_account(source).await {
            Ok(account) => account,
            Err(error) => {
                results.push(failed(error.message().to_owned()));
                continue;
            }
        };
        let hash = token_hash(&account.refresh_token);
        if let Some(existing) = known.get(&hash) {
            results.push(LineResult {
                line,
                outcome: Outcome::Duplicate,
                account_id: *existing,
                name: None,
                error: None,
            });
            continue;
        }
        known.insert(hash, None);
        let tokens = TokenSet {
            refresh_token: account.refresh_token.clone(),
            client_id: account.client_id.clone(),
            client_secret: account.client_secret.clone(),
            sso_region: Some(account.sso_region.clone()),
            profile_arn: account.profile_arn.clone(),
            ..TokenSet::default()
        };
        let verified = match verify(ctx, tokens).await {
            Ok(verified) => verified,
            Err(error) => {
                results.push(failed(error.message().to_owned()));
                continue;
            }
        };
        account.refresh_token = verified.refresh_token;
        if account.profile_arn.is_none() {
            account.profile_arn = verified.profile_arn;
        }
        account.max_concurrency = request.max_concurrency;
        let method = if account.auth_kind == AuthKind::Oidc {
            "oidc"
        } else {
            "desktop"
        };
        match ctx.tenancy.store.create_account(account).await {
            Ok(row) => {
                // The rotated token is what a later duplicate would carry.
                known.insert(hash, Some(row.id));
                known.insert(token_hash(&row.refresh_token), Some(row.id));
                ctx.tenancy
                    .audit(
                        caller,
                        "import",
                        "account",
                        row.id,
                        json!({ "name": row.name, "auth_kind": method, "line": line }),
                    )
                    .await;
                added += 1;
                results.push(LineResult {
                    line,
                    outcome: Outcome::Added,
                    account_id: Some(row.id),
                    name: Some(row.name),
                    error: None,
                });
            }
            Err(error) => results.push(failed(GatewayError::from(error).message().to_owned())),
        }
    }
    if added > 0 {
        ctx.tenancy.pool_changed().await;
    }
    Ok(results)
}
