//! A JSON credentials file (`KIRO_CREDS_FILE`): the Kiro IDE's `kiro-auth-token.json` or an AWS
//! SSO cache file. Refreshed tokens are merged back into the file, keeping every other field, and
//! written atomically (temp file + rename) so a crash never leaves half a file.

use std::path::{Path, PathBuf};

use chrono::SecondsFormat;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::{parse_timestamp, CredentialStore, TokenSet};
use crate::error::GatewayError;

/// A credential kept in a JSON file with camelCase fields (`refreshToken`, `accessToken`,
/// `profileArn`, `region`, `expiresAt`, `clientId`, `clientSecret`, `clientIdHash`).
pub struct JsonFileStore {
    path: PathBuf,
    sso_cache_dir: PathBuf,
}

impl JsonFileStore {
    /// A store for the file at `path`; `clientIdHash` registrations are looked up in
    /// `~/.aws/sso/cache`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let home = std::env::var_os("HOME")
            .or_else(|| std::env::var_os("USERPROFILE"))
            .map(PathBuf::from)
            .unwrap_or_default();
        JsonFileStore {
            path: path.into(),
            sso_cache_dir: home.join(".aws").join("sso").join("cache"),
        }
    }

    /// Looks up `{clientIdHash}.json` device registrations in `dir` instead of `~/.aws/sso/cache`.
    pub fn with_sso_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sso_cache_dir = dir.into();
        self
    }

    /// The credentials file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_object(path: &Path) -> Result<Map<String, Value>, GatewayError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            GatewayError::internal(format!(
                "cannot read the Kiro credentials file {}: {err}",
                path.display()
            ))
        })?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(GatewayError::internal(format!(
                "the Kiro credentials file {} does not hold a JSON object",
                path.display()
            ))),
            Err(err) => Err(GatewayError::internal(format!(
                "the Kiro credentials file {} is not valid JSON (line {}, column {})",
                path.display(),
                err.line(),
                err.column()
            ))),
        }
    }

    fn load_blocking(path: &Path, sso_cache_dir: &Path) -> Result<TokenSet, GatewayError> {
        let object = Self::read_object(path)?;
        let refresh_token = text_field(&object, "refreshToken").ok_or_else(|| {
            GatewayError::internal(format!(
                "the Kiro credentials file {} has no refreshToken; log in again with the Kiro IDE",
                path.display()
            ))
        })?;
        let mut tokens = TokenSet {
            access_token: text_field(&object, "accessToken"),
            refresh_token,
            expires_at: text_field(&object, "expiresAt").and_then(|t| parse_timestamp(&t)),
            profile_arn: text_field(&object, "profileArn"),
            client_id: text_field(&object, "clientId"),
            client_secret: text_field(&object, "clientSecret"),
            sso_region: text_field(&object, "region"),
            api_region: None,
        };
        if let Some(hash) = text_field(&object, "clientIdHash") {
            load_registration(&mut tokens, &hash, sso_cache_dir);
        }
        Ok(tokens)
    }

    fn save_blocking(path: &Path, tokens: &TokenSet) -> Result<(), GatewayError> {
        // Read-merge-write: the IDE keeps fields we do not know (authMethod, provider, …).
        let mut object = Self::read_object(path)?;
        if let Some(access) = &tokens.access_token {
            object.insert("accessToken".into(), Value::String(access.clone()));
        }
        object.insert(
            "refreshToken".into(),
            Value::String(tokens.refresh_token.clone()),
        );
        if let Some(expires_at) = tokens.expires_at {
            object.insert(
                "expiresAt".into(),
                Value::String(expires_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            );
        }
        if let Some(arn) = &tokens.profile_arn {
            object.insert("profileArn".into(), Value::String(arn.clone()));
        }
        let text = serde_json::to_string_pretty(&Value::Object(object))
            .map_err(|err| GatewayError::internal(format!("cannot encode credentials: {err}")))?;
        write_atomically(path, text.as_bytes())
    }
}

impl CredentialStore for JsonFileStore {
    fn describe(&self) -> String {
        format!("JSON file {}", self.path.display())
    }

    fn load(&self) -> BoxFuture<'_, Result<TokenSet, GatewayError>> {
        let path = self.path.clone();
        let cache = self.sso_cache_dir.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || Self::load_blocking(&path, &cache))
                .await
                .map_err(|err| GatewayError::internal(format!("credential loader failed: {err}")))?
        })
    }

    fn save(&self, tokens: &TokenSet) -> BoxFuture<'_, Result<(), GatewayError>> {
        let path = self.path.clone();
        let tokens = tokens.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || Self::save_blocking(&path, &tokens))
                .await
                .map_err(|err| GatewayError::internal(format!("credential writer failed: {err}")))?
        })
    }
}

fn text_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

/// Fills client id/secret from the device registration `{dir}/{hash}.json`; a missing or broken
/// registration leaves the credential on the desktop flow (with a warning).
fn load_registration(tokens: &mut TokenSet, hash: &str, dir: &Path) {
    // The hash becomes a file name: refuse anything that could leave the cache folder.
    if hash.is_empty()
        || !hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        tracing::warn!(hash, "clientIdHash is not a plain file name; ignoring it");
        return;
    }
    let path = dir.join(format!("{hash}.json"));
    match JsonFileStore::read_object(&path) {
        Ok(registration) => {
            if tokens.client_id.is_none() {
                tokens.client_id = text_field(&registration, "clientId");
            }
            if tokens.client_secret.is_none() {
                tokens.client_secret = text_field(&registration, "clientSecret");
            }
        }
        Err(err) => tracing::warn!(
            registration = %path.display(),
            error = %err.message(),
            "device registration for clientIdHash not loaded; OIDC refresh will not be possible"
        ),
    }
}

/// Writes `bytes` to a temp file next to `path` (same permissions) and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), GatewayError> {
    use std::io::Write;

    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credentials.json".into());
    let temp = dir.join(format!(
        ".{file_name}.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let fail = |what: &str, err: std::io::Error| {
        GatewayError::internal(format!("cannot {what} {}: {err}", path.display()))
    };
    let result = (|| {
        let mut file =
            std::fs::File::create(&temp).map_err(|e| fail("write a temp file next to", e))?;
        if let Ok(meta) = std::fs::metadata(path) {
            // Keep the original mode (credential files are usually 0600).
            let _ = std::fs::set_permissions(&temp, meta.permissions());
        }
        file.write_all(bytes).map_err(|e| fail("write", e))?;
        file.sync_all().map_err(|e| fail("flush", e))?;
        std::fs::rename(&temp, path).map_err(|e| fail("replace", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiro-json-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn loads_the_kiro_ide_file() {
        let dir = temp_dir();
        let path = dir.join("kiro-auth-token.json");
        std::fs::write(
            &path,
            json!({
                "accessToken": "acc", "refreshToken": "ref",
                "expiresAt": "2026-05-24T09:04:22.000Z",
                "profileArn": "arn:aws:codewhisperer:us-east-1:1:profile/X",
                "region": "us-east-1", "authMethod": "social", "provider": "Google"
            })
            .to_string(),
        )
        .unwrap();
        let tokens = JsonFileStore::new(&path).load().await.unwrap();
        assert_eq!(tokens.refresh_token, "ref");
        assert_eq!(tokens.access_token.as_deref(), Some("acc"));
        assert_eq!(
            tokens.expires_at,
            Some(Utc.with_ymd_and_hms(2026, 5, 24, 9, 4, 22).unwrap())
        );
        assert_eq!(tokens.sso_region.as_deref(), Some("us-east-1"));
        assert_eq!(tokens.auth_kind(), super::super::AuthKind::KiroDesktop);
    }

    #[tokio::test]
    async fn client_id_hash_pulls_the_registration() {
        let dir = temp_dir();
        let cache = dir.join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(
            cache.join("abc123.json"),
            json!({"clientId": "cid", "clientSecret": "csecret", "expiresAt": "2027-01-01T00:00:00Z"})
                .to_string(),
        )
        .unwrap();
        let path = dir.join("kiro-auth-token.json");
        std::fs::write(
            &path,
            json!({"refreshToken": "ref", "clientIdHash": "abc123", "region": "eu-west-1"})
                .to_string(),
        )
        .unwrap();
        let tokens = JsonFileStore::new(&path)
            .with_sso_cache_dir(&cache)
            .load()
            .await
            .unwrap();
        assert_eq!(tokens.client_id.as_deref(), Some("cid"));
        assert_eq!(tokens.client_secret.as_deref(), Some("csecret"));
        assert_eq!(tokens.auth_kind(), super::super::AuthKind::AwsSsoOidc);
    }

    #[tokio::test]
    async fn write_back_keeps_unknown_fields() {
        let dir = temp_dir();
        let path = dir.join("creds.json");
        std::fs::write(
            &path,
            json!({"refreshToken": "old", "accessToken": "a0", "authMethod": "IdC",
                   "provider": "BuilderId", "nested": {"keep": [1, 2]}})
            .to_string(),
        )
        .unwrap();
        let store = JsonFileStore::new(&path);
        let mut tokens = store.load().await.unwrap();
        tokens.refresh_token = "new".into();
        tokens.access_token = Some("a1".into());
        tokens.expires_at = Some(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap());
        tokens.profile_arn = Some("arn:aws:codewhisperer:us-east-1:1:profile/P".into());
        store.save(&tokens).await.unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n  \""), "indent 2: {text}");
        let saved: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(saved["refreshToken"], "new");
        assert_eq!(saved["accessToken"], "a1");
        assert_eq!(saved["expiresAt"], "2026-06-01T12:00:00.000Z");
        assert_eq!(
            saved["profileArn"],
            "arn:aws:codewhisperer:us-east-1:1:profile/P"
        );
        assert_eq!(saved["authMethod"], "IdC");
        assert_eq!(saved["provider"], "BuilderId");
        assert_eq!(saved["nested"]["keep"], json!([1, 2]));
        // No temp file left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
        // And it loads again.
        assert_eq!(store.load().await.unwrap().refresh_token, "new");
    }

    #[tokio::test]
    async fn missing_file_names_the_path() {
        let store = JsonFileStore::new("/nonexistent/kiro/creds.json");
        let err = store.load().await.unwrap_err();
        assert!(err.message().contains("/nonexistent/kiro/creds.json"));
    }
}
