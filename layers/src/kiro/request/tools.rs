//! Tools: Kiro-safe names (≤ 64 characters, kiro-protocol.md §2.4 and §10 item 8), descriptions
//! that fit (§2.3 step 2) and JSON schemas without the keys Kiro rejects (§2.3, "sanitation").

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::chat::Tool;
use crate::error::GatewayError;

use super::wire::{InputSchema, ToolEntry, ToolSpecification};

/// Kiro's limit on tool names.
pub const MAX_TOOL_NAME_LEN: usize = 64;
/// Hex digits of the name's hash kept in a shortened name.
const HASH_LEN: usize = 8;

/// Maps tool names between what the client uses and what is sent to Kiro.
///
/// Only names longer than Kiro's 64-character limit are renamed; every other name maps to
/// itself. The map is cheap to clone (shared behind an `Arc`), so the response path can hold it.
#[derive(Debug, Clone, Default)]
pub struct ToolNameMap {
    renamed: Option<Arc<Renames>>,
}

#[derive(Debug, Default)]
struct Renames {
    to_client: HashMap<String, String>,
    to_upstream: HashMap<String, String>,
}

impl ToolNameMap {
    /// The client's name for a tool name Kiro used (unknown names pass through unchanged).
    pub fn to_client<'a>(&'a self, upstream_name: &'a str) -> &'a str {
        self.renamed
            .as_ref()
            .and_then(|r| r.to_client.get(upstream_name))
            .map_or(upstream_name, String::as_str)
    }

    /// The name sent to Kiro for a client's tool name (short names pass through unchanged).
    pub fn to_upstream<'a>(&'a self, client_name: &'a str) -> &'a str {
        self.renamed
            .as_ref()
            .and_then(|r| r.to_upstream.get(client_name))
            .map_or(client_name, String::as_str)
    }

    /// True when no name had to be shortened.
    pub fn is_identity(&self) -> bool {
        self.renamed.is_none()
    }

    /// Builds the map for every name the request will send (tool definitions and history tool
    /// calls). Deterministic: the same long name gets the same short name in every request, so
    /// tool calls the client replays in history match the tools of the next request.
    pub(crate) fn for_names<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Self {
        let mut long: Vec<&str> = names
            .clone()
            .filter(|n| n.len() > MAX_TOOL_NAME_LEN)
            .collect();
        if long.is_empty() {
            return ToolNameMap::default();
        }
        long.sort_unstable();
        long.dedup();
        // Names sent unchanged must not be taken by a shortened one.
        let mut taken: HashSet<String> = names
            .filter(|n| n.len() <= MAX_TOOL_NAME_LEN)
            .map(str::to_owned)
            .collect();
        let mut renames = Renames::default();
        for name in long {
            let short = (0u32..)
                .map(|attempt| shorten(name, attempt))
                .find(|candidate| !taken.contains(candidate))
                .unwrap_or_default(); // the range is unbounded, `find` only ends on a hit
            taken.insert(short.clone());
            renames.to_client.insert(short.clone(), name.to_owned());
            renames.to_upstream.insert(name.to_owned(), short);
        }
        ToolNameMap {
            renamed: Some(Arc::new(renames)),
        }
    }
}

/// A readable prefix of the name, `_`, and 8 hex digits of its SHA-256 (salted with `attempt`
/// only on the astronomically rare collision). At most 64 bytes, hence at most 64 characters.
fn shorten(name: &str, attempt: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    if attempt > 0 {
        hasher.update(attempt.to_be_bytes());
    }
    let digest = hex::encode(hasher.finalize());
    let mut prefix_end = MAX_TOOL_NAME_LEN - 1 - HASH_LEN;
    while !name.is_char_boundary(prefix_end) {
        prefix_end -= 1;
    }
    format!("{}_{}", &name[..prefix_end], &digest[..HASH_LEN])
}

/// The `tools` entries for the current message plus the documentation moved out of them (to be
/// appended to the system prompt), or `None` when nothing was moved.
pub(crate) fn tool_entries<'a>(
    tools: &'a [Tool],
    names: &'a ToolNameMap,
    description_max_len: usize,
) -> Result<(Vec<ToolEntry<'a>>, Option<String>), GatewayError> {
    let mut entries = Vec::with_capacity(tools.len());
    let mut documentation = String::new();
    let mut seen = HashSet::with_capacity(tools.len());
    for (index, tool) in tools.iter().enumerate() {
        if tool.name.trim().is_empty() {
            return Err(GatewayError::invalid_request(format!(
                "tools[{index}] has an empty name; every tool needs a name"
            ))
            .with_param(format!("tools[{index}].name")));
        }
        // Kiro rejects duplicate tool names; the first definition wins, as in most clients.
        if !seen.insert(tool.name.as_str()) {
            tracing::warn!(tool = %tool.name, "duplicate tool definition dropped");
            continue;
        }
        let name = names.to_upstream(&tool.name);
        let description = if tool.description.trim().is_empty() {
            format!("Tool: {name}")
        } else if description_max_len > 0 && exceeds_chars(&tool.description, description_max_len) {
            documentation.push_str("\n\n## Tool: ");
            documentation.push_str(name);
            documentation.push_str("\n\n");
            documentation.push_str(&tool.description);
            format!("[Full documentation in system prompt under '## Tool: {name}']")
        } else {
            tool.description.clone()
        };
        entries.push(ToolEntry {
            tool_specification: ToolSpecification {
                name,
                description,
                input_schema: InputSchema {
                    json: clean_schema(&tool.input_schema),
                },
            },
        });
    }
    let documentation = (!documentation.is_empty()).then(|| {
        format!(
            "# Tool Documentation\n\nFull descriptions of tools whose documentation is too long \
             for the tool definition.{documentation}"
        )
    });
    Ok((entries, documentation))
}

fn exceeds_chars(text: &str, max: usize) -> bool {
    // Bytes bound chars from above: skip the count for the common short description.
    text.len() > max && text.chars().nth(max).is_some()
}

/// The schema without `additionalProperties` and without empty `required` lists, at every level.
/// A missing or non-object schema becomes an empty object schema (Kiro needs an object).
pub(crate) fn clean_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(clean_schema_object(map)),
        _ => serde_json::json!({"type": "object", "properties": {}}),
    }
}

/// Keys whose value maps arbitrary names (property names, definition names) to schemas: the
/// names are data, not keywords, so a property called `additionalProperties` survives.
const NAMED_SCHEMA_MAPS: [&str; 5] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

fn clean_schema_object(map: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(map.len());
    for (key, value) in map {
        match (key.as_str(), value) {
            ("additionalProperties", _) => {}
            ("required", Value::Array(items)) if items.is_empty() => {}
            (named, Value::Object(children)) if NAMED_SCHEMA_MAPS.contains(&named) => {
                let children = children
                    .iter()
                    .map(|(name, child)| (name.clone(), clean_schema_value(child)))
                    .collect();
                out.insert(key.clone(), Value::Object(children));
            }
            _ => {
                out.insert(key.clone(), clean_schema_value(value));
            }
        }
    }
    out
}

/// Recurses through nested schemas (`items`, `anyOf`, `not`, ...) wherever they sit.
fn clean_schema_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(clean_schema_object(map)),
        Value::Array(items) => Value::Array(items.iter().map(clean_schema_value).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_names_map_to_themselves() {
        let map = ToolNameMap::for_names(["read_file", "x"].into_iter());
        assert!(map.is_identity());
        assert_eq!(map.to_upstream("read_file"), "read_file");
        assert_eq!(map.to_client("read_file"), "read_file");
    }

    #[test]
    fn long_names_are_shortened_reversibly_and_deterministically() {
        let long = format!("mcp__plugin_{}", "very_long_server_name_".repeat(5));
        let long2 = format!("{long}_other");
        let names = [long.as_str(), long2.as_str(), "short"];
        let map = ToolNameMap::for_names(names.into_iter());
        let up = map.to_upstream(&long);
        let up2 = map.to_upstream(&long2);
        assert!(up.len() <= 64 && up2.len() <= 64);
        assert_ne!(up, up2);
        assert!(up.starts_with("mcp__plugin_very_long"), "{up}");
        assert_eq!(map.to_client(up), long);
        assert_eq!(map.to_client(up2), long2);
        let again = ToolNameMap::for_names([long.as_str()].into_iter());
        assert_eq!(again.to_upstream(&long), up);
    }

    #[test]
    fn shortened_name_never_takes_an_existing_short_name() {
        let long = "a".repeat(80);
        let collision = shorten(&long, 0);
        let map = ToolNameMap::for_names([long.as_str(), collision.as_str()].into_iter());
        assert_ne!(map.to_upstream(&long), collision);
        assert_eq!(map.to_upstream(&collision), collision);
        assert_eq!(map.to_client(map.to_upstream(&long)), long);
    }

    #[test]
    fn multibyte_names_are_cut_on_a_char_boundary() {
        let long = "é".repeat(60);
        let short = shorten(&long, 0);
        assert!(short.len() <= 64);
        assert!(short.chars().count() <= 64);
    }

    #[test]
    fn schema_cleanup_is_recursive_and_keeps_property_names() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "required": [],
            "properties": {
                "additionalProperties": {"type": "string"},
                "list": {"type": "array", "items": {"type": "object", "additionalProperties": true, "required": []}},
                "choice": {"anyOf": [{"type": "object", "additionalProperties": {"type": "string"}, "required": ["a"]}]}
            }
        });
        assert_eq!(
            clean_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "additionalProperties": {"type": "string"},
                    "list": {"type": "array", "items": {"type": "object"}},
                    "choice": {"anyOf": [{"type": "object", "required": ["a"]}]}
                }
            })
        );
        assert_eq!(
            clean_schema(&Value::Null),
            json!({"type": "object", "properties": {}})
        );
    }
}
