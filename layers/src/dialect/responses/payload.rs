//! What a call item carries, read out of the arguments JSON Kiro streamed, and the failure a
//! broken stream reports: the small translations [`super::writer`] needs at the end of an item.

use serde_json::Value;

use super::output::{ResponseError, ShellAction};
use super::TextFormat;
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

/// Checks an answer against `text.format`: Kiro has no structured output, so the instruction the
/// request carries is all that steers the model, and this is what keeps a wrong answer from
/// being reported as a completed one. `Err` says what is wrong.
pub(super) fn check_json(text: &str, format: &TextFormat) -> Result<(), String> {
    let body = strip_fence(text).unwrap_or_else(|| text.trim().to_owned());
    let value: Value = serde_json::from_str(&body)
        .map_err(|err| format!("the answer is not valid JSON ({err})"))?;
    match format {
        TextFormat::Text => Ok(()),
        TextFormat::JsonObject if value.is_object() => Ok(()),
        TextFormat::JsonObject => Err("the answer is JSON but not an object".to_owned()),
        TextFormat::JsonSchema { schema, .. } => matches_schema(&value, schema, "$"),
    }
}

/// The part of JSON Schema that says what shape a value has: `type`, `enum`, `required`,
/// `properties`, `additionalProperties: false` and `items`. Other keywords are not checked.
fn matches_schema(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    if let Some(kind) = schema.get("type") {
        let kinds: Vec<&str> = match kind {
            Value::String(kind) => vec![kind.as_str()],
            Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let fits = |kind: &str| match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => true,
        };
        if !kinds.is_empty() && !kinds.iter().any(|kind| fits(kind)) {
            return Err(format!("{path} should be {}", kinds.join(" or ")));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            return Err(format!("{path} is not one of the allowed values"));
        }
    }
    if let Value::Object(object) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(key) {
                    return Err(format!("{path}.{key} is missing"));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, item) in object {
            match properties.and_then(|properties| properties.get(key)) {
                Some(property) => matches_schema(item, property, &format!("{path}.{key}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{path}.{key} is not allowed"))
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            matches_schema(item, item_schema, &format!("{path}[{index}]"))?;
        }
    }
    Ok(())
}
