//! The JSON shapes of a `generateAssistantResponse` body (kiro-protocol.md §2.2), as serde
//! structs that borrow from the canonical request where they can, so building a body copies the
//! big strings (history text, image base64) at most once.

use serde::Serialize;
use serde_json::Value;

/// The whole body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Body<'a> {
    pub conversation_state: ConversationState<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_arn: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConversationState<'a> {
    pub chat_trigger_type: &'static str,
    pub conversation_id: &'a str,
    pub current_message: CurrentMessage<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CurrentMessage<'a> {
    pub user_input_message: UserInputMessage<'a>,
}

/// Externally tagged on purpose: Kiro wants `{"userInputMessage": {...}}` /
/// `{"assistantResponseMessage": {...}}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum HistoryEntry<'a> {
    UserInputMessage(UserInputMessage<'a>),
    AssistantResponseMessage(AssistantResponseMessage<'a>),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserInputMessage<'a> {
    pub content: String,
    pub model_id: &'a str,
    pub origin: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<WireImage<'a>>,
    #[serde(skip_serializing_if = "UserInputMessageContext::is_empty")]
    pub user_input_message_context: UserInputMessageContext<'a>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserInputMessageContext<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolEntry<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_results: Vec<WireToolResult<'a>>,
}

impl UserInputMessageContext<'_> {
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.tool_results.is_empty()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AssistantResponseMessage<'a> {
    pub content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_uses: Vec<WireToolUse<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct WireImage<'a> {
    pub format: &'static str,
    pub source: ImageSource<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ImageSource<'a> {
    pub bytes: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolEntry<'a> {
    pub tool_specification: ToolSpecification<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolSpecification<'a> {
    pub name: &'a str,
    pub description: String,
    pub input_schema: InputSchema,
}

#[derive(Debug, Serialize)]
pub(crate) struct InputSchema {
    pub json: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireToolResult<'a> {
    pub content: [ToolResultText; 1],
    pub status: &'static str,
    pub tool_use_id: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct ToolResultText {
    pub text: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireToolUse<'a> {
    pub name: &'a str,
    pub input: std::borrow::Cow<'a, Value>,
    pub tool_use_id: &'a str,
}
