//! The model catalog from Kiro's `ListAvailableModels` (kiro-protocol.md §4.1), per credential.
//!
//! Each credential is asked which models it may use; the answers are merged (union by id, the
//! larger limits win) and swapped into the [`ModelRegistry`] with each model's context window and
//! output limit from `tokenLimits`. The fetch runs in the background, never on the start-up path,
//! and repeats every TTL. When no credential gets an answer (the runtime host does not serve the
//! operation) the registry keeps what it has: the static list of §4.2, or the last good answer.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use kiro_layers::kiro::catalog::CatalogRefresher;
//! use kiro_layers::models::ModelRegistry;
//! use kiro_layers::pool::CredentialProvider;
//!
//! # async fn demo(credentials: Vec<Arc<dyn CredentialProvider>>) {
//! let registry = ModelRegistry::with_defaults();
//! let handle = CatalogRefresher::new(registry.clone(), credentials, reqwest::Client::new())
//!     .with_ttl(Duration::from_secs(3600))
//!     .spawn();
//! // ... serve with `registry`; dropping `handle` stops the refreshes.
//! # drop(handle);
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::headers::kiro_headers;
use crate::models::{fallback_models, ModelRegistry, DEFAULT_CONTEXT_WINDOW, DEFAULT_MAX_OUTPUT};
use crate::pool::CredentialProvider;
use crate::traits::{Credential, ModelInfo};

/// How long a fetched catalog is used before it is fetched again (`MODEL_CACHE_TTL`).
pub const DEFAULT_MODEL_CACHE_TTL: Duration = Duration::from_secs(3600);
/// Limit on one `ListAvailableModels` call (kiro-gateway uses 30 s at start-up).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The URL of `ListAvailableModels` for `credential`: `origin=AI_EDITOR`, plus the profile ARN
/// when the credential has one.
pub fn list_models_url(credential: &Credential) -> String {
    let mut url = format!(
        "{}/ListAvailableModels?origin=AI_EDITOR",
        credential.api_base.trim_end_matches('/')
    );
    if let Some(arn) = credential.profile_arn.as_deref().filter(|a| !a.is_empty()) {
        url.push_str("&profileArn=");
        url.push_str(&percent_encode(arn));
    }
    url
}

/// Query-string encoding for an ARN (`:` and `/` are the only specials that occur).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListBody {
    #[serde(default)]
    models: Vec<ListedModel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedModel {
    model_id: String,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    token_limits: Option<TokenLimits>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TokenLimits {
    #[serde(default)]
    max_input_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
}

/// Parses a `ListAvailableModels` body into models with their limits. A model without
/// `tokenLimits` gets the defaults of §4.5 (200 000 in, 64 000 out); the display name comes from
/// the static list when it knows the id.
pub fn parse_list_models(body: &[u8]) -> Result<Vec<ModelInfo>, String> {
    let parsed: ListBody = serde_json::from_slice(body)
        .map_err(|e| format!("ListAvailableModels answer is not the expected JSON: {e}"))?;
    let known: HashMap<String, String> = fallback_models()
        .into_iter()
        .map(|m| (m.id, m.display_name))
        .collect();
    let models = parsed
        .models
        .into_iter()
        .filter(|m| !m.model_id.trim().is_empty())
        .map(|m| {
            let limits = m.token_limits.unwrap_or_default();
            let display_name = known
                .get(&m.model_id)
                .cloned()
                .or(m.model_name)
                .unwrap_or_else(|| m.model_id.clone());
            ModelInfo {
                display_name,
                context_window: limits
                    .max_input_tokens
                    .filter(|&n| n > 0)
                    .unwrap_or(DEFAULT_CONTEXT_WINDOW),
                max_output_tokens: limits
                    .max_output_tokens
                    .filter(|&n| n > 0)
                    .unwrap_or(DEFAULT_MAX_OUTPUT),
                kinds: vec![crate::traits::AccountKind::KIRO],
                upstream_ids: Vec::new(),
                id: m.model_id,
            }
        })
        .collect();
    Ok(models)
}

/// Unions per-credential lists: every id once, in first-seen order, with the largest window and
/// output limit any credential reported (accounts on different plans may see different limits).
pub fn merge_model_lists(lists: impl IntoIterator<Item = Vec<ModelInfo>>) -> Vec<ModelInfo> {
    let mut merged: Vec<ModelInfo> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for model in lists.into_iter().flatten() {
        match index.get(&model.id) {
            Some(&i) => {
                let existing = &mut merged[i];
                existing.context_window = existing.context_window.max(model.context_window);
                existing.max_output_tokens =
                    existing.max_output_tokens.max(model.max_output_tokens);
            }
            None => {
                index.insert(model.id.clone(), merged.len());
                merged.push(model);
            }
        }
    }
    merged
}

/// Why one credential's fetch failed.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    /// The host answered with this status (the runtime host answers 400: it does not serve
    /// the operation).
    Status(u16),
    /// No answer (connect error, timeout) or an unreadable body.
    Transport(String),
    /// The credential could not produce a token.
    Credential(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Status(status) => write!(f, "the host answered {status}"),
            FetchError::Transport(msg) => write!(f, "no usable answer: {msg}"),
            FetchError::Credential(msg) => write!(f, "no access token: {msg}"),
        }
    }
}

/// Fetches one credential's models.
pub async fn fetch_models(
    http: &reqwest::Client,
    credential: &Credential,
) -> Result<Vec<ModelInfo>, FetchError> {
    let response = http
        .get(list_models_url(credential))
        .headers(kiro_headers(credential, false, true))
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| FetchError::Transport(e.without_url().to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| FetchError::Transport(e.without_url().to_string()))?;
    parse_list_models(&body).map_err(FetchError::Transport)
}

/// Where the registry's current list came from.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogSource {
    /// The static list of §4.2 (nothing fetched yet, or no credential got an answer).
    Fallback,
    /// `ListAvailableModels` answered for at least one credential.
    Upstream {
        /// How many credentials answered.
        credentials: usize,
        /// Distinct models after the merge.
        models: usize,
    },
}

/// What the background refresher has done so far.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogStatus {
    /// Where the list in use came from.
    pub source: CatalogSource,
    /// Completed refresh rounds (successful or not).
    pub rounds: u64,
    /// When the list in use was fetched (for `Upstream`).
    pub fetched_at: Option<SystemTime>,
    /// The failures of the last round, by account id.
    pub last_errors: Vec<(String, FetchError)>,
}

/// Fetches the catalog for every credential and keeps a [`ModelRegistry`] up to date.
#[derive(Clone)]
pub struct CatalogRefresher {
    registry: ModelRegistry,
    credentials: Vec<Arc<dyn CredentialProvider>>,
    http: reqwest::Client,
    ttl: Duration,
}

impl CatalogRefresher {
    /// Refreshes `registry` from `credentials` through `http`, every [`DEFAULT_MODEL_CACHE_TTL`].
    pub fn new(
        registry: ModelRegistry,
        credentials: Vec<Arc<dyn CredentialProvider>>,
        http: reqwest::Client,
    ) -> Self {
        CatalogRefresher {
            registry,
            credentials,
            http,
            ttl: DEFAULT_MODEL_CACHE_TTL,
        }
    }

    /// Sets the time between refreshes (at least one second).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// One round: asks every credential, merges the answers and swaps them into the registry.
    /// Returns the models and the failures; when nothing answered the registry is left alone.
    pub async fn refresh_once(&self) -> (Option<Vec<ModelInfo>>, Vec<(String, FetchError)>) {
        let fetches = self.credentials.iter().map(|provider| async move {
            let account = provider.account_id().to_owned();
            let result = match provider.current().await {
                Ok(credential) => fetch_models(&self.http, &credential).await,
                Err(e) => Err(FetchError::Credential(e.message().to_owned())),
            };
            (account, result)
        });
        let results = futures_util::future::join_all(fetches).await;
        let mut lists = Vec::new();
        let mut errors = Vec::new();
        for (account, result) in results {
            match result {
                Ok(models) if !models.is_empty() => lists.push(models),
                Ok(_) => errors.push((account, FetchError::Transport("empty model list".into()))),
                Err(e) => errors.push((account, e)),
            }
        }
        if lists.is_empty() {
            return (None, errors);
        }
        let merged = merge_model_lists(lists);
        self.registry.replace_models(merged.clone());
        (Some(merged), errors)
    }

    /// Starts refreshing on a background task: at once, then every TTL. Start-up does not wait
    /// for it. Dropping the returned handle stops the task.
    pub fn spawn(self) -> CatalogHandle {
        let (status_tx, status_rx) = watch::channel(CatalogStatus {
            source: CatalogSource::Fallback,
            rounds: 0,
            fetched_at: None,
            last_errors: Vec::new(),
        });
        let task = tokio::spawn(async move {
            loop {
                self.round(&status_tx).await;
                tokio::time::sleep(self.ttl).await;
            }
        });
        CatalogHandle {
            status: status_rx,
            task,
        }
    }

    async fn round(&self, status: &watch::Sender<CatalogStatus>) {
        let (models, errors) = self.refresh_once().await;
        for (account, error) in &errors {
            // The runtime host does not serve the operation: expected, not alarming.
            tracing::info!(account = %account, "ListAvailableModels: {error}");
        }
        status.send_modify(|s| {
            s.rounds += 1;
            if let Some(models) = &models {
                s.source = CatalogSource::Upstream {
                    credentials: self.credentials.len() - errors.len(),
                    models: models.len(),
                };
                s.fetched_at = Some(SystemTime::now());
            }
            s.last_errors = errors;
        });
        match (&models, &status.borrow().source) {
            (Some(models), _) => {
                tracing::info!(
                    models = models.len(),
                    "model catalog from ListAvailableModels"
                )
            }
            (None, CatalogSource::Fallback) => {
                tracing::info!("ListAvailableModels not available; using the built-in model list")
            }
            (None, CatalogSource::Upstream { .. }) => {
                tracing::info!("ListAvailableModels failed; keeping the last fetched model list")
            }
        }
    }
}

/// The running refresher. Dropping it stops the refreshes (the registry keeps its list).
#[derive(Debug)]
pub struct CatalogHandle {
    status: watch::Receiver<CatalogStatus>,
    task: JoinHandle<()>,
}

impl CatalogHandle {
    /// What has happened so far.
    pub fn status(&self) -> CatalogStatus {
        self.status.borrow().clone()
    }

    /// Waits until at least `rounds` refresh rounds have completed.
    pub async fn wait_for_rounds(&self, rounds: u64) {
        let mut status = self.status.clone();
        // Errs only when the task is gone, and then no more rounds will come.
        let _ = status.wait_for(|s| s.rounds >= rounds).await;
    }
}

impl Drop for CatalogHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::ModelCatalog;

    const CAPTURED: &str = r#"{"defaultModel":{"modelId":"auto"},"models":[
        {"description":"auto","modelId":"auto","modelName":"auto","rateMultiplier":1.0,
         "tokenLimits":{"maxInputTokens":1000000,"maxOutputTokens":64000}},
        {"modelId":"claude-opus-4.7","modelName":"claude-opus-4.7",
         "tokenLimits":{"maxInputTokens":1000000,"maxOutputTokens":128000}},
        {"modelId":"deepseek-3.2","modelName":"deepseek-3.2",
         "tokenLimits":{"maxInputTokens":164000,"maxOutputTokens":64000}},
        {"modelId":"brand-new","modelName":"Brand New"}]}"#;

    #[test]
    fn parses_the_captured_shape_with_limits() {
        let models = parse_list_models(CAPTURED.as_bytes()).unwrap();
        assert_eq!(models.len(), 4);
        let opus = models.iter().find(|m| m.id == "claude-opus-4.7").unwrap();
        assert_eq!(opus.context_window, 1_000_000);
        assert_eq!(opus.max_output_tokens, 128_000);
        assert_eq!(opus.display_name, "Claude Opus 4.7");
        let new = models.iter().find(|m| m.id == "brand-new").unwrap();
        assert_eq!(new.display_name, "Brand New");
        assert_eq!(new.context_window, DEFAULT_CONTEXT_WINDOW);
        assert!(parse_list_models(b"<html>").is_err());
    }

    #[test]
    fn merge_keeps_each_id_once_with_the_larger_limits() {
        let a = parse_list_models(CAPTURED.as_bytes()).unwrap();
        let mut b = a.clone();
        b[2].context_window = 200_000;
        b.push(ModelInfo {
            id: "glm-5".into(),
            display_name: "GLM-5".into(),
            context_window: 200_000,
            max_output_tokens: 32_000,
            kinds: vec![crate::traits::AccountKind::KIRO],
            upstream_ids: Vec::new(),
        });
        let merged = merge_model_lists([a, b]);
        assert_eq!(merged.len(), 5);
        assert_eq!(merged[2].id, "deepseek-3.2");
        assert_eq!(merged[2].context_window, 200_000);
    }

    #[test]
    fn url_carries_origin_and_encoded_profile() {
        let credential = Credential {
            account_id: "a".into(),
            access_token: "t".into(),
            profile_arn: Some("arn:aws:codewhisperer:us-east-1:1:profile/X".into()),
            api_base: "http://127.0.0.1:9/".into(),
            fingerprint: String::new(),
            external_idp: false,
            kind: crate::traits::AccountKind::KIRO,
            client_key: None,
        };
        assert_eq!(
            list_models_url(&credential),
            "http://127.0.0.1:9/ListAvailableModels?origin=AI_EDITOR\
             &profileArn=arn%3Aaws%3Acodewhisperer%3Aus-east-1%3A1%3Aprofile%2FX"
        );
    }

    #[tokio::test]
    async fn nothing_answering_keeps_the_fallback() {
        let registry = ModelRegistry::with_defaults();
        let refresher = CatalogRefresher::new(registry.clone(), Vec::new(), reqwest::Client::new());
        let (models, errors) = refresher.refresh_once().await;
        assert!(models.is_none() && errors.is_empty());
        assert_eq!(
            registry.resolve("deepseek-3.2").unwrap().context_window,
            128_000
        );
    }
}
