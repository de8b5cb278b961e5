//! The `ListAvailableModels` answer and the captured bodies the `capture:` scenario replays.

use std::path::Path;

use bytes::Bytes;
use kiro_layers::kiro::validate::ValidationRules;
use serde_json::{json, Value};

/// Per-model details from the real 2026-05 `ListAvailableModels` capture:
/// (id, description, rateMultiplier, maxOutputTokens, accepts images).
const CATALOG: [(&str, &str, f64, u64, bool); 13] = [
    (
        "auto",
        "Models chosen by task for optimal usage and consistent quality",
        1.0,
        64_000,
        true,
    ),
    (
        "claude-opus-4.7",
        "Experimental preview of Claude Opus 4.7 model with 1M context window",
        2.2,
        128_000,
        true,
    ),
    (
        "claude-opus-4.6",
        "The Claude Opus 4.6 model",
        2.2,
        64_000,
        true,
    ),
    (
        "claude-sonnet-4.6",
        "The latest Claude Sonnet model with 1M context window",
        1.3,
        64_000,
        true,
    ),
    (
        "claude-opus-4.5",
        "The Claude Opus 4.5 model",
        2.2,
        64_000,
        true,
    ),
    (
        "claude-sonnet-4.5",
        "The Claude Sonnet 4.5 model",
        1.3,
        64_000,
        true,
    ),
    (
        "claude-sonnet-4",
        "Hybrid reasoning and coding for regular use",
        1.3,
        64_000,
        true,
    ),
    (
        "claude-haiku-4.5",
        "The latest Claude Haiku model",
        0.4,
        64_000,
        true,
    ),
    (
        "deepseek-3.2",
        "Experimental preview of DeepSeek V3.2",
        0.25,
        64_000,
        true,
    ),
    (
        "minimax-m2.5",
        "The MiniMax M2.5 model",
        0.25,
        64_000,
        false,
    ),
    (
        "minimax-m2.1",
        "Experimental preview of MiniMax M2.1",
        0.15,
        64_000,
        true,
    ),
    ("glm-5", "The GLM-5 model", 0.5, 64_000, false),
    (
        "qwen3-coder-next",
        "Experimental preview of Qwen3 Coder Next",
        0.05,
        64_000,
        true,
    ),
];

/// The real response shape: `defaultModel` and `models` only (no `nextToken`), one entry per
/// model the validator accepts, with its input window as `maxInputTokens`.
pub(crate) fn list_body(rules: &ValidationRules) -> Value {
    let models: Vec<Value> = rules
        .known_models
        .iter()
        .map(|(id, window)| {
            let known = CATALOG.iter().find(|entry| entry.0 == id);
            let (description, rate, max_output, images) = known
                .map(|e| (e.1.to_owned(), e.2, e.3, e.4))
                .unwrap_or_else(|| (format!("The {id} model"), 1.0, 64_000, true));
            let input_types = if images {
                json!(["TEXT", "IMAGE"])
            } else {
                json!(["TEXT"])
            };
            json!({
                "description": description,
                "modelId": id,
                "modelName": id,
                "promptCaching": {"maximumCacheCheckpointsPerRequest": 4,
                    "minimumTokensPerCacheCheckpoint": 1024, "supportsPromptCaching": true},
                "rateMultiplier": rate,
                "rateUnit": "Credit",
                "supportedInputTypes": input_types,
                "tokenLimits": {"maxInputTokens": window, "maxOutputTokens": max_output},
            })
        })
        .collect();
    let default_id = if rules.context_window("auto").is_some() {
        "auto"
    } else {
        rules.known_models.first().map_or("auto", |(id, _)| id)
    };
    json!({"defaultModel": {"modelId": default_id}, "models": models})
}

/// Reads `<name>.bin` from `dir`, or the one `.bin` file whose name contains `name`
/// (so `t01-text-auto` finds `kiro-cli-q-20260524-t01-text-auto.bin`).
pub(crate) fn load_capture(dir: &Path, name: &str) -> Option<Bytes> {
    if name.is_empty() || name.contains('/') || name.contains("..") {
        return None;
    }
    let exact = dir.join(format!("{name}.bin"));
    let path = if exact.is_file() {
        exact
    } else {
        let mut matches = std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension().is_some_and(|ext| ext == "bin")
                    && path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.contains(name))
            });
        let first = matches.next()?;
        if matches.next().is_some() {
            return None;
        }
        first
    };
    std::fs::read(path).ok().map(Bytes::from)
}
