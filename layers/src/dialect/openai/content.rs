//! The `content` of OpenAI messages: a string, or typed parts (text, images, tool results).

use serde_json::{Map, Value};

use super::fields::{excerpt, invalid, take_bool, take_string, wrong_type};
use crate::chat::{ContentBlock, Image};
use crate::error::GatewayError;

/// Which message kind a content array belongs to: decides which part types are allowed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PartsOf {
    User,
    Assistant,
    ToolResult,
}

/// A `content` field: null, a string, or an array of typed parts.
pub(super) fn parse_parts(
    content: Value,
    path: &str,
    owner: PartsOf,
) -> Result<Vec<ContentBlock>, GatewayError> {
    let parts = match content {
        Value::Null => return Ok(Vec::new()),
        Value::String(text) if text.is_empty() => return Ok(Vec::new()),
        Value::String(text) => return Ok(vec![ContentBlock::Text(text)]),
        Value::Array(parts) => parts,
        other => {
            return Err(wrong_type(
                path,
                "a string or an array of content parts",
                &other,
            ))
        }
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (index, part) in parts.into_iter().enumerate() {
        let part_path = format!("{path}[{index}]");
        let Value::Object(mut part) = part else {
            return Err(wrong_type(&part_path, "an object", &part));
        };
        let kind =
            take_string(&mut part, "type", &format!("{part_path}.type"))?.ok_or_else(|| {
                invalid(
                    format!("`{part_path}.type` is required."),
                    format!("{part_path}.type"),
                )
            })?;
        match (kind.as_str(), owner) {
            ("text" | "input_text", _) => {
                let text = take_string(&mut part, "text", &format!("{part_path}.text"))?
                    .ok_or_else(|| {
                        invalid(format!("`{part_path}.text` is required."), format!("{part_path}.text"))
                    })?;
                if !text.is_empty() {
                    blocks.push(ContentBlock::Text(text));
                }
            }
            ("refusal", PartsOf::Assistant) => {
                if let Some(text) = take_string(&mut part, "refusal", &format!("{part_path}.refusal"))? {
                    blocks.push(ContentBlock::Text(text));
                }
            }
            ("image_url", PartsOf::User | PartsOf::ToolResult) => {
                blocks.push(ContentBlock::Image(parse_image_part(part, &part_path)?));
            }
            // Anthropic-style results some clients put inside user content (§2.3).
            ("tool_result", PartsOf::User) => {
                let id_path = format!("{part_path}.tool_use_id");
                let tool_use_id = take_string(&mut part, "tool_use_id", &id_path)?
                    .ok_or_else(|| invalid(format!("`{id_path}` is required."), id_path.clone()))?;
                let is_error =
                    take_bool(&mut part, "is_error", &format!("{part_path}.is_error"))?.unwrap_or(false);
                let content = parse_parts(
                    part.remove("content").unwrap_or(Value::Null),
                    &format!("{part_path}.content"),
                    PartsOf::ToolResult,
                )?;
                blocks.push(ContentBlock::ToolResult { tool_use_id, content, is_error });
            }
            (other, _) => {
                return Err(invalid(
                    format!(
                        "`{part_path}.type` `{}` is not supported here; the gateway accepts text{} parts.",
                        excerpt(other),
                        if owner == PartsOf::Assistant { "" } else { " and image_url" }
                    ),
                    format!("{part_path}.type"),
                ))
            }
        }
    }
    Ok(blocks)
}

/// An `image_url` part. Only inline `data:` URLs are accepted: the gateway never fetches URLs.
fn parse_image_part(mut part: Map<String, Value>, path: &str) -> Result<Image, GatewayError> {
    let url_path = format!("{path}.image_url");
    let url = match part.remove("image_url") {
        Some(Value::String(url)) => url,
        Some(Value::Object(mut image)) => {
            take_string(&mut image, "url", &format!("{url_path}.url"))?.ok_or_else(|| {
                invalid(
                    format!("`{url_path}.url` is required."),
                    format!("{url_path}.url"),
                )
            })?
        }
        None | Some(Value::Null) => {
            return Err(invalid(format!("`{url_path}` is required."), url_path))
        }
        Some(other) => return Err(wrong_type(&url_path, "an object with `url`", &other)),
    };
    parse_data_url(url, &format!("{url_path}.url"))
}

/// `data:image/png;base64,AAAA` -> media type and the raw base64.
pub(crate) fn parse_data_url(mut url: String, path: &str) -> Result<Image, GatewayError> {
    if has_prefix_ignore_case(&url, "http://") || has_prefix_ignore_case(&url, "https://") {
        return Err(invalid(
            format!(
                "`{path}`: the gateway does not fetch image URLs; send the image inline as a base64 data URL (`data:image/png;base64,...`)."
            ),
            path,
        ));
    }
    let malformed = || {
        invalid(
            format!("`{path}` must be a base64 data URL such as `data:image/png;base64,...`."),
            path,
        )
    };
    if !has_prefix_ignore_case(&url, "data:") {
        return Err(malformed());
    }
    let comma = url.find(',').ok_or_else(malformed)?;
    let header = &url[5..comma];
    let Some(media_type) = header
        .strip_suffix(";base64")
        .map(|media| media.split(';').next().unwrap_or_default())
    else {
        return Err(malformed());
    };
    if !media_type.to_ascii_lowercase().starts_with("image/") || comma + 1 == url.len() {
        return Err(malformed());
    }
    let media_type = media_type.to_ascii_lowercase();
    // Keep the (possibly megabytes of) base64 in the same allocation.
    url.drain(..=comma);
    Ok(Image {
        media_type,
        data: url,
    })
}

fn has_prefix_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Text-only content (system and developer messages): a string or text parts, joined by `\n`.
pub(super) fn parse_text_only(content: Value, path: &str) -> Result<String, GatewayError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(text) => Ok(text),
        Value::Array(_) => {
            let blocks = parse_parts(content, path, PartsOf::Assistant)?;
            let texts: Vec<String> = blocks
                .into_iter()
                .filter_map(|block| match block {
                    ContentBlock::Text(text) => Some(text),
                    _ => None,
                })
                .collect();
            Ok(texts.join("\n"))
        }
        other => Err(wrong_type(
            path,
            "a string or an array of text parts",
            &other,
        )),
    }
}
