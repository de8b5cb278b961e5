//! What a call item carries, read out of the arguments JSON Kiro streamed, and the failure a
//! broken stream reports: the small translations [`super::writer`] needs at the end of an item.

use serde_json::Value;

use super::output::{ResponseError, ShellAction};
use crate::error::GatewayError;

/// Arguments as a function call item carries them: at least `{}` so they parse.
pub(super) fn complete_arguments(arguments: &str) -> String {
    if arguments.trim().is_empty() {
        "{}".to_owned()
    } else {
        arguments.to_owned()
    }
}

/// A freeform call's raw input, out of the `{"input": ...}` object it was offered to Kiro as.
/// Arguments that are not that object are passed on as they are: better than losing them.
pub(super) fn freeform_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(mut object)) => match object.remove("input") {
            Some(Value::String(input)) => input,
            Some(other) => other.to_string(),
            None if object.len() == 1 => match object.into_iter().next() {
                Some((_, Value::String(input))) => input,
                Some((_, other)) => other.to_string(),
                None => String::new(),
            },
            None => arguments.to_owned(),
        },
        Ok(Value::String(input)) => input,
        _ => arguments.to_owned(),
    }
}

pub(super) fn shell_action(arguments: &str) -> ShellAction {
    let parsed: Value = serde_json::from_str(arguments).unwrap_or(Value::Null);
    let command = match parsed.get("command") {
        Some(Value::Array(argv)) => argv
            .iter()
            .map(|arg| arg.as_str().map_or_else(|| arg.to_string(), str::to_owned))
            .collect(),
        Some(Value::String(line)) => vec!["bash".to_owned(), "-lc".to_owned(), line.clone()],
        _ => Vec::new(),
    };
    ShellAction {
        kind: "exec",
        command,
        timeout_ms: parsed.get("timeout_ms").and_then(Value::as_u64),
        working_directory: parsed
            .get("working_directory")
            .and_then(Value::as_str)
            .map(str::to_owned),
        env: serde_json::Map::new(),
        user: None,
    }
}

/// The `response.error` of a failure, with the codes Codex acts on (responses-api.md §4.2).
pub(super) fn failure_of(error: &GatewayError) -> ResponseError {
    if error.is_context_length_exceeded() {
        ResponseError {
            code: "context_length_exceeded",
            message: error.message().to_owned(),
        }
    } else if error.is_rate_limited() {
        // Codex reads the delay out of "try again in N s".
        let seconds = error
            .retry_after()
            .map_or(1, |after| after.as_secs().max(1));
        ResponseError {
            code: "rate_limit_exceeded",
            message: format!("{} Please try again in {seconds}s.", error.message()),
        }
    } else {
        ResponseError {
            code: "server_error",
            message: error.message().to_owned(),
        }
    }
}

/// The JSON inside a ```` ```json ... ``` ```` fence, if the whole text is one.
pub(super) fn strip_fence(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let body = trimmed.strip_prefix("```")?.strip_suffix("```")?;
    let body = body.strip_prefix("json").unwrap_or(body);
    let body = body.trim();
    serde_json::from_str::<Value>(body).ok()?;
    Some(body.to_owned())
}
