//! Which Kiro credentials the gateway uses, built from configuration (§1.1 of the protocol
//! notes): a kiro-cli database beats a JSON credentials file, which beats `REFRESH_TOKEN`.

pub mod kiro_cli;

use std::path::PathBuf;
use std::sync::Arc;

use kiro_layers::kiro::auth::{
    is_region_name, CredentialStore, Endpoints, JsonFileStore, MemoryStore, RefreshingCredential,
    TokenSet,
};

pub use kiro_cli::KiroCliStore;

/// The credential part of the configuration (kiro-gateway variable names in brackets).
#[derive(Clone)]
pub struct CredentialSettings {
    /// Raw Kiro Desktop refresh token (`REFRESH_TOKEN`).
    pub refresh_token: Option<String>,
    /// `profileArn` override (`PROFILE_ARN`); beats the stored one.
    pub profile_arn: Option<String>,
    /// Default region for refresh URLs when a source names none (`KIRO_REGION`).
    pub region: String,
    /// API region override (`KIRO_API_REGION`).
    pub api_region: Option<String>,
    /// JSON credentials file (`KIRO_CREDS_FILE`).
    pub creds_file: Option<PathBuf>,
    /// kiro-cli SQLite database (`KIRO_CLI_DB_FILE`).
    pub cli_db_file: Option<PathBuf>,
    /// Never write refreshed tokens into the kiro-cli database (`SQLITE_READONLY`).
    pub sqlite_readonly: bool,
    /// Upstream URL templates.
    pub endpoints: Endpoints,
}

impl Default for CredentialSettings {
    fn default() -> Self {
        CredentialSettings {
            refresh_token: None,
            profile_arn: None,
            region: "us-east-1".to_string(),
            api_region: None,
            creds_file: None,
            cli_db_file: None,
            sqlite_readonly: false,
            endpoints: Endpoints::default(),
        }
    }
}

impl std::fmt::Debug for CredentialSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSettings")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("profile_arn", &self.profile_arn)
            .field("region", &self.region)
            .field("api_region", &self.api_region)
            .field("creds_file", &self.creds_file)
            .field("cli_db_file", &self.cli_db_file)
            .field("sqlite_readonly", &self.sqlite_readonly)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// Builds the configured credentials. Only the highest-priority source is used (kiro-cli
/// database > JSON file > `REFRESH_TOKEN`); a configured file that does not exist is an error
/// naming the path; nothing configured gives an empty list (the gateway still starts and
/// answers 503 until an account is added).
///
/// Nothing is read or refreshed here beyond checking that files exist: the first request loads
/// the tokens, so a slow auth service does not delay start-up.
pub fn load_configured(
    settings: &CredentialSettings,
    http: reqwest::Client,
    fingerprint: String,
) -> Result<Vec<Arc<RefreshingCredential>>, String> {
    if !is_region_name(&settings.region) {
        return Err(format!(
            "KIRO_REGION `{}` is not a region name such as us-east-1",
            settings.region
        ));
    }
    if let Some(api_region) = settings.api_region.as_deref().filter(|r| !r.is_empty()) {
        if !is_region_name(api_region) {
            return Err(format!(
                "KIRO_API_REGION `{api_region}` is not a region name such as eu-central-1"
            ));
        }
    }
    let non_empty = |path: &Option<PathBuf>| path.clone().filter(|p| !p.as_os_str().is_empty());
    let (account_id, store): (&str, Arc<dyn CredentialStore>) = if let Some(db) =
        non_empty(&settings.cli_db_file)
    {
        if !db.is_file() {
            return Err(format!(
                    "KIRO_CLI_DB_FILE is set to {}, but that file does not exist (run `kiro-cli login`, or fix the path)",
                    db.display()
                ));
        }
        (
            "kiro-cli",
            Arc::new(KiroCliStore::new(db, settings.sqlite_readonly)),
        )
    } else if let Some(file) = non_empty(&settings.creds_file) {
        if !file.is_file() {
            return Err(format!(
                    "KIRO_CREDS_FILE is set to {}, but that file does not exist (log in with the Kiro IDE, or fix the path)",
                    file.display()
                ));
        }
        ("creds-file", Arc::new(JsonFileStore::new(file)))
    } else if let Some(token) = settings
        .refresh_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let tokens = TokenSet {
            refresh_token: token.to_string(),
            profile_arn: settings.profile_arn.clone(),
            ..TokenSet::default()
        };
        ("refresh-token", Arc::new(MemoryStore::new(tokens)))
    } else {
        return Ok(Vec::new());
    };
    tracing::info!(account = account_id, source = %store.describe(), "Kiro credential configured");
    Ok(vec![Arc::new(RefreshingCredential::new(
        account_id.to_string(),
        store,
        settings.endpoints.clone(),
        settings.region.clone(),
        settings.api_region.clone(),
        settings.profile_arn.clone(),
        http,
        fingerprint,
    ))])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CredentialSettings {
        CredentialSettings::default()
    }

    #[test]
    fn nothing_configured_is_empty() {
        let loaded = load_configured(&settings(), reqwest::Client::new(), "fp".into()).unwrap();
        assert!(loaded.is_empty());
    }

    #[test]
    fn missing_files_name_the_path() {
        let mut s = settings();
        s.creds_file = Some("/nope/kiro-auth-token.json".into());
        let err = load_configured(&s, reqwest::Client::new(), "fp".into()).unwrap_err();
        assert!(err.contains("/nope/kiro-auth-token.json") && err.contains("KIRO_CREDS_FILE"));
        s.cli_db_file = Some("/nope/data.sqlite3".into());
        let err = load_configured(&s, reqwest::Client::new(), "fp".into()).unwrap_err();
        assert!(err.contains("/nope/data.sqlite3") && err.contains("KIRO_CLI_DB_FILE"));
    }

    #[test]
    fn cli_db_beats_json_file_beats_refresh_token() {
        let dir = std::env::temp_dir().join(format!("kiro-creds-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("creds.json");
        std::fs::write(&json, r#"{"refreshToken":"r"}"#).unwrap();
        let db = dir.join("data.sqlite3");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE auth_kv (key TEXT PRIMARY KEY, value TEXT);")
            .unwrap();

        let mut s = settings();
        s.refresh_token = Some("env-token".into());
        let only_env = load_configured(&s, reqwest::Client::new(), "fp".into()).unwrap();
        assert!(only_env[0].describe_store().contains("REFRESH_TOKEN"));
        s.creds_file = Some(json.clone());
        let with_json = load_configured(&s, reqwest::Client::new(), "fp".into()).unwrap();
        assert!(with_json[0]
            .describe_store()
            .contains(json.to_str().unwrap()));
        s.cli_db_file = Some(db.clone());
        let with_db = load_configured(&s, reqwest::Client::new(), "fp".into()).unwrap();
        assert_eq!(with_db.len(), 1);
        assert!(with_db[0].describe_store().contains("kiro-cli database"));
    }

    #[test]
    fn bad_regions_are_refused() {
        let mut s = settings();
        s.region = "us-east-1.evil.com/".into();
        assert!(load_configured(&s, reqwest::Client::new(), "fp".into())
            .unwrap_err()
            .contains("KIRO_REGION"));
        let mut s = settings();
        s.api_region = Some("nowhere".into());
        assert!(load_configured(&s, reqwest::Client::new(), "fp".into())
            .unwrap_err()
            .contains("KIRO_API_REGION"));
    }

    #[test]
    fn settings_debug_hides_the_refresh_token() {
        let mut s = settings();
        s.refresh_token = Some("SUPER-SECRET-REFRESH".into());
        assert!(!format!("{s:?}").contains("SUPER-SECRET-REFRESH"));
    }
}
