//! Turning what an admin hands over (a refresh token, the content of a JSON credentials file, a
//! kiro-cli SQLite file by path or upload) into a [`NewAccount`], by loading it through the
//! same credential stores the single-account gateway uses.

use std::path::PathBuf;

use base64::Engine;
use kiro_layers::kiro::auth::{CredentialStore, JsonFileStore, TokenSet};
use kiro_layers::store::{AuthKind, NewAccount};
use kiro_layers::GatewayError;
use serde::Deserialize;

use crate::credentials::KiroCliStore;
use crate::store::validate;

/// Where a new account's login comes from; exactly one source must be given.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AccountSource {
    /// Label shown to the admin (required; for a Cursor account read from state.vscdb, an empty
    /// name means its email).
    pub name: String,
    /// `kiro` (the default) or `cursor` (implied by any Cursor field below).
    #[serde(default)]
    pub kind: Option<String>,
    /// A Kiro desktop refresh token, or a Cursor account's refresh token (with
    /// `session_token`).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Cursor: the IDE's session token (`cursorAuth/accessToken`), bare or as `<userId>::<jwt>`
    /// / `<userId>%3A%3A<jwt>`; a cursor.com browser cookie token is upgraded to a session token.
    #[serde(default, alias = "web_cookie")]
    pub session_token: Option<String>,
    /// Cursor: the IDE's state.vscdb on the gateway's machine.
    #[serde(default)]
    pub state_vscdb_path: Option<PathBuf>,
    /// Cursor: the IDE's state.vscdb, uploaded as base64.
    #[serde(default)]
    pub state_vscdb_base64: Option<String>,
    /// The content of a Kiro IDE / AWS SSO JSON credentials file.
    #[serde(default)]
    pub creds: Option<serde_json::Value>,
    /// A kiro-cli SQLite database on the gateway's machine.
    #[serde(default)]
    pub cli_db_path: Option<PathBuf>,
    /// A kiro-cli SQLite database, uploaded as base64.
    #[serde(default)]
    pub cli_db_base64: Option<String>,
    /// `profileArn` to use.
    #[serde(default)]
    pub profile_arn: Option<String>,
    /// Login region (default us-east-1).
    #[serde(default)]
    pub region: Option<String>,
    /// API region when it differs.
    #[serde(default)]
    pub api_region: Option<String>,
    /// Leases this account may have out at once.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

impl std::fmt::Debug for AccountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A temporary file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn write(bytes: &[u8], extension: &str) -> Result<Self, GatewayError> {
        let path = std::env::temp_dir().join(format!(
            "kiro-gateway-import-{}.{extension}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, bytes).map_err(|e| {
            GatewayError::internal(format!("could not write a temporary file: {e}"))
        })?;
        Ok(TempFile(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn load_tokens(source: &AccountSource) -> Result<TokenSet, GatewayError> {
    let given = [
        source.refresh_token.is_some(),
        source.creds.is_some(),
        source.cli_db_path.is_some(),
        source.cli_db_base64.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(GatewayError::invalid_request(
            "Give exactly one of `refresh_token`, `creds`, `cli_db_path` or `cli_db_base64`.",
        ));
    }
    if let Some(token) = &source.refresh_token {
        if token.trim().is_empty() {
            return Err(GatewayError::invalid_request("`refresh_token` is empty."));
        }
        return Ok(TokenSet {
            refresh_token: token.trim().to_owned(),
            ..TokenSet::default()
        });
    }
    if let Some(creds) = &source.creds {
        if !creds.is_object() {
            return Err(GatewayError::invalid_request(
                "`creds` must be the JSON object of a credentials file.",
            ));
        }
        let file = TempFile::write(creds.to_string().as_bytes(), "json")?;
        return JsonFileStore::new(&file.0).load().await;
    }
    if let Some(encoded) = &source.cli_db_base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| GatewayError::invalid_request("`cli_db_base64` is not valid base64."))?;
        let file = TempFile::write(&bytes, "sqlite3")?;
        return KiroCliStore::new(&file.0, true).load().await;
    }
    match &source.cli_db_path {
        Some(path) => KiroCliStore::new(path, true).load().await,
        None => Err(GatewayError::invalid_request("No credential source given.")),
    }
}

/// Loads and checks the login `source` describes.
pub async fn new_account(source: AccountSource) -> Result<NewAccount, GatewayError> {
    // Checked before the credentials are read, so a bad name never touches a file.
    let name = source.name.trim().to_owned();
    validate::name("`name`", &name)?;
    for (field, region) in [
        ("`region`", &source.region),
        ("`api_region`", &source.api_region),
    ] {
        if let Some(region) = region {
            validate::region(field, region)?;
        }
    }
    if let Some(arn) = &source.profile_arn {
        validate::profile_arn(arn)?;
    }
    let tokens = load_tokens(&source).await.map_err(|e| {
        if e.is_client_error() {
            e
        } else {
            GatewayError::invalid_request(format!(
                "Could not read the credentials: {}",
                e.message()
            ))
        }
    })?;
    let auth_kind = match tokens.auth_kind() {
        kiro_layers::kiro::auth::AuthKind::AwsSsoOidc => AuthKind::Oidc,
        _ => AuthKind::Desktop,
    };
    let region = source
        .region
        .or(tokens.sso_region.clone())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let api_region = source
        .api_region
        .or(tokens.api_region.clone())
        .unwrap_or_else(|| region.clone());
    Ok(NewAccount {
        name,
        kind: kiro_layers::traits::AccountKind::KIRO,
        auth_kind,
        refresh_token: tokens.refresh_token,
        access_token: None,
        machine_id: None,
        client_key: None,
        client_id: tokens.client_id,
        client_secret: tokens.client_secret,
        profile_arn: source.profile_arn.or(tokens.profile_arn),
        sso_region: region,
        api_region,
        max_concurrency: source.max_concurrency,
    })
}
