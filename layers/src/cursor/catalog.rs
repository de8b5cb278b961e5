//! Cursor's model catalog: `POST /aiserver.v1.AiService/AvailableModels`, a unary Connect call
//! (raw protobuf, no envelope) whose body `18 01` (field 3 = true) is what the 2.0.77 IDE sends.
//! The names are Cursor's own ids; they change every few months, so they are fetched, never
//! hard-coded, and cached by the caller.

use prost::Message as _;

use super::headers::{chat_headers, CursorConfig, MODELS_PATH};
use super::proto::{AvailableModelsRequest, AvailableModelsResponse};
use crate::error::GatewayError;
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

/// The catalog entries of an `AvailableModels` answer (the detailed list, else the names).
pub fn to_models(answer: AvailableModelsResponse) -> Vec<ModelInfo> {
    let entry = |name: String, display: Option<String>, context: Option<i32>| ModelInfo {
        display_name: display
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| name.clone()),
        id: name,
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
