//! Cursor's model catalog: `POST /aiserver.v1.AiService/AvailableModels`, a unary Connect call
//! (raw protobuf, no envelope) whose body `18 01` (field 3 = true) is what the 2.0.77 IDE sends.
//! The names are Cursor's own ids; they change every few months, so they are fetched, never
//! hard-coded, and kept fresh by a [`CatalogKeeper`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::sync::watch;

use super::headers::{chat_headers, CursorConfig, MODELS_PATH};
use super::proto::{AvailableModelsRequest, AvailableModelsResponse};
use crate::error::GatewayError;
use crate::kiro::catalog::merge_model_lists;
use crate::models::ModelRegistry;
use crate::pool::CredentialProvider;
use crate::traits::{AccountKind, Credential, ModelInfo};

/// Context window assumed when Cursor gives none.
const DEFAULT_CONTEXT: u64 = 200_000;
/// Output limit assumed (Cursor gives none).
const DEFAULT_OUTPUT: u64 = 32_000;

/// Fetches the models `credential`'s account may use.
pub async fn fetch_models(
    http: &reqwest::Client,
    config: &CursorConfig,
    credential: &Credential,
) -> Result<Vec<ModelInfo>, GatewayError> {
    let mut headers = chat_headers(config, credential);
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/proto"),
    );
    headers.remove("connect-accept-encoding");
    let body = AvailableModelsRequest {
        exclude_max_named_models: true,
        ..Default::default()
    }
    .encode_to_vec();
    let url = format!("{}{MODELS_PATH}", credential.api_base.trim_end_matches('/'));
    let response = http
        .post(&url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            GatewayError::upstream_stream(format!("Could not list Cursor's models: {e}"))
        })?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| {
        GatewayError::upstream_stream(format!("Could not read Cursor's models: {e}"))
    })?;
    if !status.is_success() {
        return Err(GatewayError::upstream(
            http::StatusCode::BAD_GATEWAY,
            format!("Cursor's AvailableModels answered HTTP {status}"),
        ));
    }
    let answer = AvailableModelsResponse::decode(bytes).map_err(|e| {
        GatewayError::upstream_stream(format!("Cursor's model list does not decode: {e}"))
    })?;
    Ok(to_models(answer))
}

/// The first wait after a failed fetch; it doubles with each failure, up to the TTL.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// Keeps Cursor's models in a [`ModelRegistry`]: fetched as soon as a Cursor account joins, again
/// every TTL (Cursor adds and retires models every few months), and retried sooner after a
/// failure, so one failed fetch at start-up does not leave Cursor's models unknown until a
/// restart. Every Cursor account is asked and the answers merged; when none answers, the
/// registry keeps its last good list. Cheap to clone; the task stops when the last clone drops.
#[derive(Clone)]
pub struct CatalogKeeper {
    accounts: Arc<watch::Sender<Vec<Arc<dyn CredentialProvider>>>>,
}

impl CatalogKeeper {
    /// Starts the background task; it waits for [`CatalogKeeper::set_accounts`].
    pub fn spawn(
        registry: ModelRegistry,
        config: CursorConfig,
        http: reqwest::Client,
        ttl: Duration,
    ) -> Self {
        let (sender, receiver) = watch::channel(Vec::new());
        let ttl = ttl.max(Duration::from_secs(1));
        tokio::spawn(keep(receiver, registry, config, http, ttl));
        CatalogKeeper {
            accounts: Arc::new(sender),
        }
    }

    /// The Cursor accounts to ask (others are ignored). A different set starts a fetch at once;
    /// the same set again changes nothing.
    pub fn set_accounts(&self, accounts: Vec<Arc<dyn CredentialProvider>>) {
        let accounts: Vec<_> = accounts
            .into_iter()
            .filter(|a| a.kind() == AccountKind::CURSOR)
            .collect();
        self.accounts.send_if_modified(|current| {
            if ids(current) == ids(&accounts) {
                return false;
            }
            *current = accounts;
            true
        });
    }
}

fn ids(accounts: &[Arc<dyn CredentialProvider>]) -> BTreeSet<String> {
    accounts.iter().map(|a| a.account_id().to_owned()).collect()
}

async fn keep(
    mut accounts: watch::Receiver<Vec<Arc<dyn CredentialProvider>>>,
    registry: ModelRegistry,
    config: CursorConfig,
    http: reqwest::Client,
    ttl: Duration,
) {
    let mut retry = FIRST_RETRY;
    loop {
        let asked = accounts.borrow_and_update().clone();
        let wait = if asked.is_empty() {
            None
        } else {
            match fetch_all(&http, &config, &asked).await {
                Ok(models) => {
                    tracing::info!(count = models.len(), "Cursor models loaded");
                    registry.replace_models_of(AccountKind::CURSOR, models);
                    retry = FIRST_RETRY;
                    Some(ttl)
                }
                Err(message) => {
                    let wait = retry.min(ttl);
                    tracing::warn!(
                        retry_in_seconds = wait.as_secs(),
                        "Cursor's models are unknown: {message}"
                    );
                    retry = (retry * 2).min(ttl);
                    Some(wait)
                }
            }
        };
        let changed = async {
            match wait {
                Some(wait) => tokio::time::timeout(wait, accounts.changed())
                    .await
                    .unwrap_or(Ok(())),
                None => accounts.changed().await,
            }
        };
        // Err: every keeper handle is gone.
        if changed.await.is_err() {
            return;
        }
    }
}

/// Asks every account; the merged answers, or a failure when none answered.
async fn fetch_all(
    http: &reqwest::Client,
    config: &CursorConfig,
    accounts: &[Arc<dyn CredentialProvider>],
) -> Result<Vec<ModelInfo>, String> {
    let fetches = accounts.iter().map(|account| async move {
        let credential = account.current().await?;
        fetch_models(http, config, &credential).await
    });
    let mut lists = Vec::new();
    let mut failure = None;
    for result in futures_util::future::join_all(fetches).await {
        match result {
            Ok(list) if !list.is_empty() => lists.push(list),
            Ok(_) => failure = Some("Cursor listed no models".to_owned()),
            Err(error) => failure = Some(error.message().to_owned()),
        }
    }
    match (lists.is_empty(), failure) {
        (true, Some(failure)) => Err(failure),
        _ => Ok(merge_model_lists(lists)),
    }
}

/// The catalog entries of an `AvailableModels` answer (the detailed list, else the names).
pub fn to_models(answer: AvailableModelsResponse) -> Vec<ModelInfo> {
    let entry = |name: String, display: Option<String>, context: Option<i32>| ModelInfo {
        display_name: display
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| name.clone()),
        id: public_name(&name),
        upstream_ids: if public_name(&name) == name {
            Vec::new()
        } else {
            vec![(AccountKind::CURSOR, name.clone())]
        },
        context_window: context
            .filter(|&c| c > 0)
            .map_or(DEFAULT_CONTEXT, |c| c as u64),
        max_output_tokens: DEFAULT_OUTPUT,
        kinds: vec![AccountKind::CURSOR],
    };
    if answer.models.is_empty() {
        return answer
            .model_names
            .into_iter()
            .map(|n| entry(n, None, None))
            .collect();
    }
    answer
        .models
        .into_iter()
        .map(|m| entry(m.name, m.client_display_name, m.context_token_limit))
        .collect()
}

/// The gateway's public name for a Cursor model id. Cursor spells Claude 4 and later
/// version-first (`claude-4.5-sonnet`, `claude-4.6-opus-high-thinking`); the gateway's names put
/// the family first (`claude-sonnet-4.5`, `claude-opus-4.6-high-thinking`), as Kiro's do, so a
/// model both kinds serve is listed once and round-robins across both. The Cursor spelling still
/// resolves (the catalog keeps it as the Cursor id), and the request to Cursor carries it. Other
/// names (`gpt-5.4-medium`, `default`, older Claudes) are Cursor's own and kept.
pub fn public_name(cursor_name: &str) -> String {
    let lowered = cursor_name.trim().to_ascii_lowercase();
    let parts: Vec<&str> = lowered.split('-').collect();
    let major = |v: &str| -> Option<u32> {
        let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
        (digits(major) && digits(minor)).then(|| major.parse().ok())?
    };
    match parts.as_slice() {
        ["claude", version, family, rest @ ..]
            if matches!(*family, "sonnet" | "opus" | "haiku")
                && major(version).is_some_and(|m| m >= 4) =>
        {
            let mut name = format!("claude-{family}-{version}");
            for part in rest {
                name.push('-');
                name.push_str(part);
            }
            name
        }
        _ => lowered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelRegistry;
    use crate::traits::ModelCatalog;

    #[test]
    fn claude_names_put_the_family_first_and_others_are_kept() {
        for (cursor, public) in [
            ("claude-4.5-sonnet", "claude-sonnet-4.5"),
            ("claude-4-sonnet-thinking", "claude-sonnet-4-thinking"),
            (
                "claude-4.6-opus-high-thinking",
                "claude-opus-4.6-high-thinking",
            ),
            ("Claude-4.5-Haiku", "claude-haiku-4.5"),
            ("claude-3.5-sonnet", "claude-3.5-sonnet"),
            ("claude-sonnet-4.5", "claude-sonnet-4.5"),
            ("gpt-5.4-medium", "gpt-5.4-medium"),
            ("default", "default"),
            ("claude-x.5-sonnet", "claude-x.5-sonnet"),
        ] {
            assert_eq!(public_name(cursor), public, "{cursor}");
        }
    }

    #[test]
    fn a_name_both_kinds_serve_gives_each_kind_its_own_id_and_both_spellings_resolve() {
        let registry = ModelRegistry::with_defaults();
        let answer = AvailableModelsResponse {
            model_names: vec![
                "claude-4.5-sonnet".into(),
                "claude-4.5-sonnet-thinking".into(),
                "gpt-5.4-medium".into(),
            ],
            models: Vec::new(),
        };
        registry.replace_models_of(AccountKind::CURSOR, to_models(answer));
        for asked in [
            "claude-sonnet-4.5",
            "claude-4.5-sonnet",
            "claude-sonnet-4-5-20250929",
        ] {
            let resolved = registry.resolve(asked).unwrap();
            assert_eq!(resolved.kiro_id, "claude-sonnet-4.5", "{asked}");
            assert_eq!(
                resolved.kinds,
                [AccountKind::KIRO, AccountKind::CURSOR],
                "{asked}"
            );
            assert_eq!(
                resolved.upstream_id(&AccountKind::KIRO),
                "claude-sonnet-4.5"
            );
            assert_eq!(
                resolved.upstream_id(&AccountKind::CURSOR),
                "claude-4.5-sonnet"
            );
        }
        // Cursor's thinking variant: its own public name, and its Cursor spelling is not
        // shortened to the plain model by normalisation.
        let thinking = registry.resolve("claude-4.5-sonnet-thinking").unwrap();
        assert_eq!(thinking.kiro_id, "claude-sonnet-4.5-thinking");
        assert_eq!(thinking.kinds, [AccountKind::CURSOR]);
        assert_eq!(
            thinking.upstream_id(&AccountKind::CURSOR),
            "claude-4.5-sonnet-thinking"
        );
        let listed: Vec<String> = registry.list().into_iter().map(|m| m.id).collect();
        assert_eq!(
            listed
                .iter()
                .filter(|id| *id == "claude-sonnet-4.5")
                .count(),
            1
        );
        assert!(
            !listed.contains(&"claude-4.5-sonnet".to_owned()),
            "{listed:?}"
        );
    }
}
