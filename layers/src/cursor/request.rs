//! [`ChatRequest`] -> `StreamUnifiedChatRequestWithTools` (cursor-protocol.md §2.2, §7.3/§7.6).
//!
//! - The system prompt goes into `explicit_context`; user turns are HUMAN, assistant turns AI,
//!   each with a fresh bubble id and a matching entry in `full_conversation_headers_only`.
//! - Tools are stateless: every client tool goes up as an MCP tool definition, and a tool call
//!   of an earlier turn comes back with its result in the next turn's history
//!   (`ConversationMessage.tool_results`), keyed by the very id Cursor gave it.
//! - Thinking: a client that asks for thinking gets `thinking_level = HIGH`.

use std::collections::HashMap;

use prost::Message as _;

use super::proto::{
    self, conversation_message::MessageType, stream_unified_chat_request::ThinkingLevel,
    stream_unified_chat_request::UnifiedMode, stream_unified_chat_request_with_tools::Request,
    ClientSideToolV2, ClientSideToolV2Call, ClientSideToolV2Result, ConversationMessage,
    ConversationMessageHeader, CurrentFileInfo, CursorRange, ExplicitContext, McpParams, McpResult,
    ModelDetails, StreamUnifiedChatRequest, StreamUnifiedChatRequestWithTools, ToolResult,
};
use crate::chat::{ChatRequest, ContentBlock, Role, ThinkingRequest};
use crate::error::GatewayError;

/// The `server_name` Cursor's MCP tool definitions carry for client tools.
pub const MCP_SERVER_NAME: &str = "custom";

/// What a request is sent with besides the canonical request.
#[derive(Debug, Clone)]
pub struct BuildContext<'a> {
    /// Cursor's model id.
    pub model: &'a str,
    /// A fresh conversation id (UUID v4).
    pub conversation_id: String,
}

/// The encoded request message (protobuf bytes, not yet in an envelope).
pub fn build_request(
    request: &ChatRequest,
    ctx: &BuildContext<'_>,
) -> Result<Vec<u8>, GatewayError> {
    if request.messages.is_empty() {
        return Err(GatewayError::invalid_request("the request has no messages"));
    }
    let calls = tool_calls_by_id(request);
    let mut conversation = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        let kind = match message.role {
            Role::User => MessageType::Human,
            Role::Assistant => MessageType::Ai,
        };
        let mut text = String::new();
        let mut tool_results = Vec::new();
        for block in &message.content {
            match block {
                ContentBlock::Text(t) => push_text(&mut text, t),
                ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => tool_results.push(tool_result(tool_use_id, content, *is_error, &calls)),
                // Cursor's history carries no earlier thinking or calls as text: calls come back
                // with their results; images are not supported on this path.
                ContentBlock::ToolUse { .. } | ContentBlock::Thinking { .. } => {}
                ContentBlock::Image(_) => {
                    return Err(GatewayError::invalid_request(
                        "images are not supported for models served by a Cursor account",
                    ))
                }
            }
        }
        conversation.push(ConversationMessage {
            text,
            r#type: kind as i32,
            bubble_id: uuid::Uuid::new_v4().to_string(),
            tool_results,
            unified_mode: (kind == MessageType::Human).then_some(mode(request) as i32),
            ..ConversationMessage::default()
        });
    }
    let headers = conversation
        .iter()
        .map(|m| ConversationMessageHeader {
            bubble_id: m.bubble_id.clone(),
            server_bubble_id: None,
            r#type: m.r#type,
        })
        .collect();
    let agentic = !request.tools.is_empty();
    let mcp_tools = request
        .tools
        .iter()
        .map(|tool| proto::mcp_params::Tool {
            name: tool.name.clone(),
            description: tool.description.clone(),
            parameters: tool.input_schema.to_string(),
            server_name: MCP_SERVER_NAME.to_owned(),
        })
        .collect();
    let thinking = match request.thinking {
        ThinkingRequest::Budget(_) => ThinkingLevel::High,
        ThinkingRequest::Default | ThinkingRequest::Disabled => ThinkingLevel::Unspecified,
    };
    let chat = StreamUnifiedChatRequest {
        conversation,
        allow_long_file_scan: Some(true),
        explicit_context: Some(ExplicitContext {
            context: request.system.clone().unwrap_or_default(),
        }),
        can_handle_filenames_after_language_ids: Some(true),
        model_details: Some(ModelDetails {
            model_name: Some(ctx.model.to_owned()),
            azure_state: Some(proto::AzureState {}),
            max_mode: None,
        }),
        use_web: Some(String::new()),
        should_cache: Some(true),
        current_file: Some(CurrentFileInfo {
            relative_workspace_path: "cursor\\aisettings".to_owned(),
            cursor_position: Some(proto::CursorPosition::default()),
            selection: Some(CursorRange {
                start_position: Some(proto::CursorPosition::default()),
                end_position: Some(proto::CursorPosition::default()),
            }),
            total_number_of_lines: 1,
            contents_start_at_line: 1,
            ..CurrentFileInfo::default()
        }),
        use_new_compression_scheme: Some(true),
        conversation_id: ctx.conversation_id.clone(),
        is_agentic: agentic,
        supported_tools: if agentic {
            vec![ClientSideToolV2::ReadSemsearchFiles as i32]
        } else {
            Vec::new()
        },
        full_conversation_headers_only: headers,
        mcp_tools,
        number_of_times_shown_fallback_model_warning: Some(0),
        unified_mode: Some(mode(request) as i32),
        should_disable_tools: Some(!agentic),
        thinking_level: Some(thinking as i32),
        uses_rules: Some(false),
        mode_uses_auto_apply: Some(true),
        unified_mode_name: Some(if agentic { "Agent" } else { "Ask" }.to_owned()),
        ..StreamUnifiedChatRequest::default()
    };
    Ok(StreamUnifiedChatRequestWithTools {
        request: Some(Request::StreamUnifiedChatRequest(chat)),
    }
    .encode_to_vec())
}

fn mode(request: &ChatRequest) -> UnifiedMode {
    if request.tools.is_empty() {
        UnifiedMode::Chat
    } else {
        UnifiedMode::Agent
    }
}

fn push_text(text: &mut String, more: &str) {
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(more);
}

/// The assistant's earlier tool calls by id, so a result can carry its call along.
fn tool_calls_by_id(request: &ChatRequest) -> HashMap<&str, (&str, String)> {
    let mut calls = HashMap::new();
    for message in &request.messages {
        for block in &message.content {
            if let ContentBlock::ToolUse { id, name, input } = block {
                calls.insert(id.as_str(), (name.as_str(), input.to_string()));
            }
        }
    }
    calls
}

fn tool_result(
    id: &str,
    content: &[ContentBlock],
    is_error: bool,
    calls: &HashMap<&str, (&str, String)>,
) -> ToolResult {
    let mut text = String::new();
    for block in content {
        if let ContentBlock::Text(t) = block {
            push_text(&mut text, t);
        }
    }
    if is_error {
        text = format!("Error: {text}");
    }
    let (name, args) = calls
        .get(id)
        .map(|(n, a)| ((*n).to_owned(), a.clone()))
        .unwrap_or_default();
    // `<id>\nmc_<model call id>` ids carry the model call id too ([OMNI]); split it back out.
    let (call_id, model_call_id) = match id.split_once("\nmc_") {
        Some((call, model)) => (call.to_owned(), Some(model.to_owned())),
        None => (id.to_owned(), None),
    };
    let mcp = McpParams {
        tools: vec![proto::mcp_params::Tool {
            name: name.clone(),
            description: String::new(),
            parameters: args.clone(),
            server_name: MCP_SERVER_NAME.to_owned(),
        }],
    };
    ToolResult {
        tool_call_id: call_id.clone(),
        tool_name: name.clone(),
        tool_index: 0,
        raw_args: args.clone(),
        result: Some(ClientSideToolV2Result {
            tool: ClientSideToolV2::Mcp as i32,
            mcp_result: Some(McpResult {
                selected_tool: name.clone(),
                result: text,
            }),
            tool_call_id: call_id.clone(),
            model_call_id: model_call_id.clone(),
            tool_index: Some(0),
        }),
        tool_call: Some(ClientSideToolV2Call {
            tool: ClientSideToolV2::Mcp as i32,
            tool_call_id: call_id,
            name: format!("mcp_custom_{name}"),
            raw_args: args,
            mcp_params: Some(mcp),
            ..ClientSideToolV2Call::default()
        }),
        model_call_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Dialect, Message, Tool};

    fn decode(bytes: &[u8]) -> StreamUnifiedChatRequest {
        match StreamUnifiedChatRequestWithTools::decode(bytes)
            .unwrap()
            .request
        {
            Some(Request::StreamUnifiedChatRequest(chat)) => chat,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn ctx() -> BuildContext<'static> {
        BuildContext {
            model: "claude-4.5-sonnet",
            conversation_id: "00000000-0000-4000-8000-000000000002".into(),
        }
    }

    #[test]
    fn plain_chat_follows_the_proxy_template() {
        let mut request = ChatRequest::user_text(Dialect::OpenAi, "x", "hi");
        request.system = Some("You are terse.".into());
        let chat = decode(&build_request(&request, &ctx()).unwrap());
        assert_eq!(chat.conversation.len(), 1);
        assert_eq!(chat.conversation[0].text, "hi");
        assert_eq!(chat.conversation[0].r#type, MessageType::Human as i32);
        assert_eq!(chat.explicit_context.unwrap().context, "You are terse.");
        assert_eq!(
            chat.model_details.unwrap().model_name.as_deref(),
            Some("claude-4.5-sonnet")
        );
        assert_eq!(chat.full_conversation_headers_only.len(), 1);
        assert_eq!(
            chat.full_conversation_headers_only[0].bubble_id,
            chat.conversation[0].bubble_id
        );
        assert_eq!(chat.unified_mode, Some(UnifiedMode::Chat as i32));
        assert_eq!(chat.unified_mode_name.as_deref(), Some("Ask"));
        assert!(chat.mcp_tools.is_empty());
        assert_eq!(chat.conversation_id, ctx().conversation_id);
    }

    #[test]
    fn tools_go_up_as_mcp_tools_and_results_come_back_with_the_original_id() {
        let id = "toolu_01\nmc_model-7";
        let mut request = ChatRequest::user_text(Dialect::Anthropic, "x", "weather?");
        request.tools = vec![Tool {
            name: "get_weather".into(),
            description: "Weather by city".into(),
            input_schema: serde_json::json!({"type":"object"}),
        }];
        request.messages.push(Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: id.into(),
                name: "get_weather".into(),
                input: serde_json::json!({"city":"SF"}),
            }],
        });
        request.messages.push(Message {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: id.into(),
                content: vec![ContentBlock::Text("18C".into())],
                is_error: false,
            }],
        });
        let chat = decode(&build_request(&request, &ctx()).unwrap());
        assert_eq!(chat.mcp_tools.len(), 1);
        assert_eq!(chat.mcp_tools[0].name, "get_weather");
        assert_eq!(chat.mcp_tools[0].server_name, "custom");
        assert!(chat.is_agentic);
        assert_eq!(chat.unified_mode, Some(UnifiedMode::Agent as i32));
        let result = &chat.conversation[2].tool_results[0];
        assert_eq!(result.tool_call_id, "toolu_01");
        assert_eq!(result.model_call_id.as_deref(), Some("model-7"));
        let inner = result.result.as_ref().unwrap();
        assert_eq!(inner.mcp_result.as_ref().unwrap().result, "18C");
        assert_eq!(
            result.tool_call.as_ref().unwrap().raw_args,
            r#"{"city":"SF"}"#
        );
    }

    #[test]
    fn thinking_asks_for_the_high_level_and_images_are_refused() {
        let mut request = ChatRequest::user_text(Dialect::OpenAi, "x", "think");
        request.thinking = ThinkingRequest::Budget(2048);
        let chat = decode(&build_request(&request, &ctx()).unwrap());
        assert_eq!(chat.thinking_level, Some(ThinkingLevel::High as i32));
        request.messages[0]
            .content
            .push(ContentBlock::Image(crate::chat::Image {
                media_type: "image/png".into(),
                data: "AA==".into(),
            }));
        assert!(build_request(&request, &ctx()).is_err());
    }
}
