//! Tool-call arguments the fake invents from a tool's JSON schema: every property filled with
//! a plausible sample (the first enum value, "Paris", 42, true, ...).

use serde_json::{json, Map, Value};

/// Arguments for a tool call, following the schema: sample strings, numbers, booleans.
pub(crate) fn sample_arguments(schema: &Value) -> Value {
    sample_value(schema, "")
}

fn sample_value(schema: &Value, key: &str) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|values| values.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.as_str(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("string"),
        _ if schema["properties"].is_object() => "object",
        _ => "string",
    };
    match kind {
        "object" => {
            let mut object = Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    object.insert(name.clone(), sample_value(property, name));
                }
            }
            Value::Object(object)
        }
        "array" => json!([sample_value(&schema["items"], key)]),
        "integer" => json!(42),
        "number" => json!(3.5),
        "boolean" => json!(true),
        _ => json!(sample_string(key)),
    }
}

fn sample_string(key: &str) -> &'static str {
    let key = key.to_ascii_lowercase();
    if key.contains("path") || key.contains("file") {
        "/tmp/example.txt"
    } else if key.contains("command") || key.contains("cmd") {
        "echo hello"
    } else if key.contains("url") {
        "https://example.com"
    } else if key.contains("query") {
        "weather in Paris"
    } else {
        "Paris"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_gets_a_value_of_its_type() {
        let schema = json!({"type": "object", "properties": {
            "city": {"type": "string"}, "file_path": {"type": "string"},
            "count": {"type": "integer"}, "ratio": {"type": ["number", "null"]},
            "verbose": {"type": "boolean"}, "mode": {"enum": ["fast", "slow"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "nested": {"properties": {"query": {"type": "string"}}}}});
        assert_eq!(
            sample_arguments(&schema),
            json!({"city": "Paris", "file_path": "/tmp/example.txt", "count": 42, "ratio": 3.5,
                "verbose": true, "mode": "fast", "tags": ["Paris"],
                "nested": {"query": "weather in Paris"}})
        );
    }

    #[test]
    fn an_empty_schema_gives_an_empty_object() {
        assert_eq!(sample_arguments(&json!({"type": "object"})), json!({}));
    }
}
