//! The JSON shapes of the answer: output items, the response object, usage and every streaming
//! event. Plain structs (not `json!`) so fields leave in the order OpenAI sends them
//! (responses-api.md §2, §3), which the byte-exact tests check.

use serde::Serialize;
use serde_json::Value;

/// `output_text` content part (`annotations` is required by the SDK, always empty here).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutputText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub annotations: [(); 0],
    pub text: String,
}

impl OutputText {
    pub fn new(text: String) -> Self {
        OutputText {
            kind: "output_text",
            annotations: [],
            text,
        }
    }
}

/// `summary_text` / `reasoning_text` part of a reasoning item.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReasoningText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

/// `message` output item.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MessageItem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub content: Vec<OutputText>,
    pub role: &'static str,
}

/// `function_call` output item.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FunctionCallItem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub arguments: String,
    pub call_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `custom_tool_call` output item (freeform tools such as `apply_patch`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CustomToolCallItem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub call_id: String,
    pub name: String,
    pub input: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The `exec` action of a `local_shell_call`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShellAction {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub command: Vec<String>,
    pub timeout_ms: Option<u64>,
    pub working_directory: Option<String>,
    pub env: serde_json::Map<String, Value>,
    pub user: Option<String>,
}

/// `local_shell_call` output item.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LocalShellCallItem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub call_id: String,
    pub action: ShellAction,
}

/// `reasoning` output item: the text as `summary` when the client asked for summaries, else as
/// raw `content`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReasoningItem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub summary: Vec<ReasoningText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<ReasoningText>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<String>,
}

/// Any output item.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum OutputItem {
    Message(MessageItem),
    FunctionCall(FunctionCallItem),
    CustomToolCall(CustomToolCallItem),
    LocalShellCall(LocalShellCallItem),
    Reasoning(ReasoningItem),
}

/// `usage`, all five fields with non-null details (Codex and the SDK read them).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub input_tokens_details: CachedTokens,
    pub output_tokens: u64,
    pub output_tokens_details: ReasoningTokens,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CachedTokens {
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ReasoningTokens {
    pub reasoning_tokens: u64,
}

/// `error` of a failed response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResponseError {
    pub code: &'static str,
    pub message: String,
}

/// `incomplete_details`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct IncompleteDetails {
    pub reason: &'static str,
}

/// The response object (non-streamed body, and the `response` of lifecycle events).
#[derive(Debug, Clone, Serialize)]
pub struct ResponseObject<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created_at: u64,
    pub status: &'static str,
    pub background: bool,
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<&'a str>,
    pub max_output_tokens: Option<u32>,
    pub model: &'a str,
    pub output: &'a [OutputItem],
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<&'a str>,
    pub reasoning: &'a Value,
    pub service_tier: &'static str,
    pub store: bool,
    pub temperature: f64,
    pub text: &'a Value,
    pub tool_choice: &'a Value,
    pub tools: &'a Value,
    pub top_p: f64,
    pub truncation: &'static str,
    pub usage: Option<Usage>,
    pub user: Option<&'a str>,
    pub metadata: &'a Value,
}

/// `response.created`, `response.in_progress`, `response.completed`, `response.incomplete`,
/// `response.failed`.
#[derive(Serialize)]
pub struct LifecycleEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub response: ResponseObject<'a>,
}

/// `response.output_item.added` / `.done`.
#[derive(Serialize)]
pub struct ItemEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub output_index: usize,
    pub item: &'a OutputItem,
}

/// `response.content_part.added` / `.done`.
#[derive(Serialize)]
pub struct ContentPartEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    pub part: &'a OutputText,
}

/// `response.output_text.delta` (`delta`) / `.done` (`text`), with the `logprobs` list newer
/// SDK models require.
#[derive(Serialize)]
pub struct TextEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    pub logprobs: [(); 0],
}

/// `response.function_call_arguments.delta` (`delta`) / `.done` (`arguments`, `name`), and
/// `response.custom_tool_call_input.delta` (`delta`) / `.done` (`input`).
#[derive(Serialize)]
pub struct CallInputEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

/// `response.reasoning_summary_part.added` / `.done`.
#[derive(Serialize)]
pub struct SummaryPartEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    pub summary_index: usize,
    pub part: &'a ReasoningText,
}

/// `response.reasoning_summary_text.delta` / `.done`.
#[derive(Serialize)]
pub struct SummaryTextEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    pub summary_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
}

/// `response.reasoning_text.delta` / `.done`.
#[derive(Serialize)]
pub struct ReasoningTextEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
}
