//! Canonical messages -> the alternating user/assistant turns Kiro accepts (kiro-protocol.md
//! §2.3 steps 5–9 and §2.4).
//!
//! Every pass is linear in the size of the conversation: messages are turned into [`Turn`]s once,
//! merged in one sweep, and tool results are checked against the preceding assistant turn with a
//! small per-turn set.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::Value;

use crate::chat::{ContentBlock, Message, Role};
use crate::error::GatewayError;

use super::images::convert_image;
use super::wire::WireImage;

/// One piece of a turn, in the order the client wrote it.
#[derive(Debug)]
pub(crate) enum Piece<'a> {
    Text(Cow<'a, str>),
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
    ToolResult {
        id: &'a str,
        text: String,
        is_error: bool,
    },
}

/// A turn on its way to the wire.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    pub role: Role,
    pub pieces: Vec<Piece<'a>>,
    pub images: Vec<WireImage<'a>>,
}

impl<'a> Turn<'a> {
    pub fn empty(role: Role) -> Self {
        Turn {
            role,
            pieces: Vec::new(),
            images: Vec::new(),
        }
    }

    /// The text pieces joined with `"\n"`, skipping empty ones.
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            if let Piece::Text(text) = piece {
                if text.is_empty() {
                    continue;
                }
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(text);
            }
        }
        out
    }

    pub fn has_tool_results(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::ToolResult { .. }))
    }
}

/// Text stand-in for a tool call Kiro cannot take as structured content.
pub(crate) fn tool_use_as_text(id: &str, name: &str, input: &Value) -> String {
    format!("[Tool: {name} ({id})]\n{input}")
}

/// Text stand-in for a tool result Kiro cannot take as structured content.
pub(crate) fn tool_result_as_text(id: &str, text: &str) -> String {
    format!("[Tool Result ({id})]\n{text}")
}

/// Converts, merges and aligns the conversation. The result starts with a user turn, alternates
/// strictly, and every structured tool result answers a tool call of the assistant turn right
/// before it. `with_tools` is false when the request offers no tools: then every tool call and
/// result becomes text, since Kiro rejects tool content without tool definitions.
pub(crate) fn build_turns(
    messages: &[Message],
    with_tools: bool,
) -> Result<Vec<Turn<'_>>, GatewayError> {
    let mut turns: Vec<Turn<'_>> = Vec::with_capacity(messages.len() + 1);
    for (index, message) in messages.iter().enumerate() {
        let turn = convert_message(index, message, with_tools)?;
        // Merging adjacent same-role turns is what makes the conversation alternate; it keeps
        // tool results of consecutive user messages together (losing them was [IS#41]).
        match turns.last_mut() {
            Some(last) if last.role == turn.role => {
                last.pieces.extend(turn.pieces);
                last.images.extend(turn.images);
            }
            _ => turns.push(turn),
        }
    }
    if turns.first().is_some_and(|t| t.role == Role::Assistant) {
        turns.insert(0, Turn::empty(Role::User));
    }
    if with_tools {
        pair_tool_results(&mut turns);
    }
    Ok(turns)
}

fn convert_message(
    index: usize,
    message: &Message,
    with_tools: bool,
) -> Result<Turn<'_>, GatewayError> {
    let mut turn = Turn::empty(message.role);
    let is_user = message.role == Role::User;
    for (block_index, block) in message.content.iter().enumerate() {
        match block {
            ContentBlock::Text(text) => turn.pieces.push(Piece::Text(Cow::Borrowed(text))),
            ContentBlock::Image(image) => {
                let field = || format!("messages[{index}].content[{block_index}]");
                if is_user {
                    turn.images.push(convert_image(image, &field)?);
                } else {
                    // Kiro's assistant messages have no image slot.
                    tracing::debug!(field = %field(), "image in an assistant turn dropped");
                }
            }
            ContentBlock::ToolUse { id, name, input } => {
                if with_tools && !is_user && !id.is_empty() {
                    turn.pieces.push(Piece::ToolUse { id, name, input });
                } else {
                    let text = tool_use_as_text(id, name, input);
                    turn.pieces.push(Piece::Text(Cow::Owned(text)));
                }
            }
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let mut text = String::new();
                for (inner_index, inner) in content.iter().enumerate() {
                    match inner {
                        ContentBlock::Text(part) if !part.is_empty() => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(part);
                        }
                        // Screenshots returned by tools (MCP) travel as the user turn's images.
                        ContentBlock::Image(image) if is_user => {
                            let field = || {
                                format!(
                                    "messages[{index}].content[{block_index}].content[{inner_index}]"
                                )
                            };
                            turn.images.push(convert_image(image, &field)?);
                        }
                        _ => {}
                    }
                }
                if text.is_empty() {
                    text.push_str("(empty result)");
                }
                if with_tools && is_user && !tool_use_id.is_empty() {
                    turn.pieces.push(Piece::ToolResult {
                        id: tool_use_id,
                        text,
                        is_error: *is_error,
                    });
                } else {
                    let text = tool_result_as_text(tool_use_id, &text);
                    turn.pieces.push(Piece::Text(Cow::Owned(text)));
                }
            }
            // Kiro has no place for replayed reasoning (§2.3 step 1).
            ContentBlock::Thinking { .. } => {}
        }
    }
    Ok(turn)
}

/// Keeps a structured tool result only when the assistant turn right before it made that call
/// (and only once per call); everything else becomes text. Kiro answers a mismatch with
/// `TOOL_USE_RESULT_MISMATCH`. Duplicate call ids inside one assistant turn become text too.
fn pair_tool_results<'a>(turns: &mut [Turn<'a>]) {
    let mut open_calls: HashSet<&'a str> = HashSet::new();
    for turn in turns.iter_mut() {
        match turn.role {
            Role::Assistant => {
                open_calls.clear();
                for piece in &mut turn.pieces {
                    if let Piece::ToolUse { id, name, input } = piece {
                        if !open_calls.insert(*id) {
                            *piece = Piece::Text(Cow::Owned(tool_use_as_text(id, name, input)));
                        }
                    }
                }
            }
            Role::User => {
                for piece in &mut turn.pieces {
                    if let Piece::ToolResult { id, text, .. } = piece {
                        if !open_calls.remove(*id) {
                            let text = tool_result_as_text(id, text);
                            *piece = Piece::Text(Cow::Owned(text));
                        }
                    }
                }
                open_calls.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(role: Role, content: Vec<ContentBlock>) -> Message {
        Message { role, content }
    }

    fn call(id: &str) -> ContentBlock {
        ContentBlock::ToolUse {
            id: id.to_owned(),
            name: "f".to_owned(),
            input: json!({}),
        }
    }

    fn result(id: &str) -> ContentBlock {
        ContentBlock::ToolResult {
            tool_use_id: id.to_owned(),
            content: vec![ContentBlock::Text("r".to_owned())],
            is_error: false,
        }
    }

    fn kinds(turn: &Turn<'_>) -> Vec<&'static str> {
        turn.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(_) => "text",
                Piece::ToolUse { .. } => "use",
                Piece::ToolResult { .. } => "result",
            })
            .collect()
    }

    #[test]
    fn a_call_is_answered_at_most_once_and_duplicate_calls_become_text() {
        let messages = vec![
            msg(Role::User, vec![ContentBlock::Text("q".to_owned())]),
            msg(Role::Assistant, vec![call("a"), call("a"), call("b")]),
            msg(Role::User, vec![result("a"), result("a"), result("b")]),
        ];
        let turns = build_turns(&messages, true).unwrap();
        assert_eq!(kinds(&turns[1]), ["use", "text", "use"]);
        assert_eq!(kinds(&turns[2]), ["result", "text", "result"]);
    }

    #[test]
    fn leading_tool_result_is_an_orphan_and_assistant_start_gets_a_user_turn() {
        let messages = vec![msg(Role::User, vec![result("x")])];
        let turns = build_turns(&messages, true).unwrap();
        assert_eq!(kinds(&turns[0]), ["text"]);
        assert_eq!(turns[0].joined_text(), "[Tool Result (x)]\nr");

        let messages = vec![msg(Role::Assistant, vec![call("a")])];
        let turns = build_turns(&messages, true).unwrap();
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0].role, Role::User);
        assert!(turns[0].pieces.is_empty());
    }
}
