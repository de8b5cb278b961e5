//! Typed access to JSON fields that names the offending field path in every error.

use serde_json::{Map, Value};

use crate::error::GatewayError;

/// Removes `key`: absent or null is `None`, a string is taken, anything else is a 400.
pub(crate) fn take_string(
    object: &mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, GatewayError> {
    match object.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(wrong_type(path, "a string", &other)),
    }
}

/// Removes `key`: absent or null is `None`, a boolean is taken, anything else is a 400.
pub(crate) fn take_bool(
    object: &mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<bool>, GatewayError> {
    match object.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(flag)),
        Some(other) => Err(wrong_type(path, "a boolean", &other)),
    }
}

/// Removes `key`: absent or null is `None`, a non-negative integer is taken, anything else is a 400.
pub(crate) fn take_u64(
    object: &mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<u64>, GatewayError> {
    match object.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => match number.as_u64() {
            Some(number) => Ok(Some(number)),
            None => Err(invalid(
                format!("`{path}` must be a non-negative integer; got {number}."),
                path,
            )),
        },
        Some(other) => Err(wrong_type(path, "an integer", &other)),
    }
}

/// A 400 whose OpenAI `param` is the field path.
pub(crate) fn invalid(message: impl Into<String>, param: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message).with_param(param)
}

/// A 400 saying what `path` should have been and what it was.
pub(crate) fn wrong_type(path: &str, expected: &str, got: &Value) -> GatewayError {
    invalid(
        format!("`{path}` must be {expected}, got {}.", type_name(got)),
        path,
    )
}

/// The JSON type of `value`, with its article, for messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most the first 40 characters of a client-supplied value, for echoing it in an error
/// message without copying a huge string back.
pub(crate) fn excerpt(value: &str) -> String {
    const LIMIT: usize = 40;
    match value.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}
