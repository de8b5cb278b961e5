//! Cheap, incremental size estimates of a request: tokens by [`crate::tokens`], Kiro body bytes
//! by a per-block estimate calibrated against the real request builder when it matters.

use crate::chat::{ChatRequest, ContentBlock, Message};
use crate::kiro::request::{build_request, BuildOptions};
use crate::tokens::{estimate_fixed_tokens, estimate_message_tokens};

/// Bytes the builder adds around each history entry (role wrapper, `modelId`, `origin`).
const MESSAGE_OVERHEAD: usize = 120;
/// Bytes around each tool call, tool result or image.
const BLOCK_OVERHEAD: usize = 72;
/// Bytes of the envelope (conversation state, ids, current message wrapper).
const REQUEST_OVERHEAD: usize = 400;

/// Per-message size estimates of one request, kept current while it is shrunk.
#[derive(Debug, Clone)]
pub struct Measure {
    model_id: String,
    fixed_tokens: u64,
    fixed_bytes: usize,
    message_tokens: Vec<u64>,
    message_bytes: Vec<usize>,
    /// Real body bytes per estimated byte, once measured.
    scale: f64,
}

/// Length of `text` as a JSON string literal.
fn json_string_len(text: &str) -> usize {
    2 + text.len()
        + text
            .bytes()
            .filter(|b| matches!(b, b'"' | b'\\' | b'\n' | b'\r' | b'\t'))
            .count()
        + 5 * text
            .bytes()
            .filter(|b| *b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t'))
            .count()
}

fn block_bytes(block: &ContentBlock) -> usize {
    match block {
        ContentBlock::Text(text) => json_string_len(text),
        ContentBlock::Image(image) => image.data.len() + BLOCK_OVERHEAD,
        ContentBlock::ToolUse { id, name, input } => {
            // The builder sends the arguments object as JSON; its compact size is its string form.
            input.to_string().len() + id.len() + name.len() + BLOCK_OVERHEAD
        }
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            ..
        } => tool_use_id.len() + BLOCK_OVERHEAD + content.iter().map(block_bytes).sum::<usize>(),
        ContentBlock::Thinking { text, .. } => json_string_len(text),
    }
}

/// Estimated body bytes of one message.
pub(super) fn message_bytes(message: &Message) -> usize {
    MESSAGE_OVERHEAD + message.content.iter().map(block_bytes).sum::<usize>()
}

impl Measure {
    /// Estimates `request` as sent to `model_id`.
    pub fn new(request: &ChatRequest, model_id: &str) -> Self {
        let tools_bytes: usize = request
            .tools
            .iter()
            .map(|t| {
                json_string_len(&t.name)
                    + json_string_len(&t.description)
                    + t.input_schema.to_string().len()
                    + BLOCK_OVERHEAD
            })
            .sum();
        Measure {
            model_id: model_id.to_owned(),
            fixed_tokens: estimate_fixed_tokens(request),
            fixed_bytes: REQUEST_OVERHEAD
                + request.system.as_deref().map_or(0, json_string_len)
                + tools_bytes,
            message_tokens: request
                .messages
                .iter()
                .map(estimate_message_tokens)
                .collect(),
            message_bytes: request.messages.iter().map(message_bytes).collect(),
            scale: 1.0,
        }
    }

    /// Estimated prompt tokens.
    pub fn tokens(&self) -> u64 {
        self.fixed_tokens + self.message_tokens.iter().sum::<u64>()
    }

    /// Estimated body bytes (calibrated once measured).
    pub fn bytes(&self) -> usize {
        let raw = self.fixed_bytes + self.message_bytes.iter().sum::<usize>();
        (raw as f64 * self.scale).ceil() as usize
    }

    /// Estimated tokens and bytes of message `index`.
    pub(super) fn message(&self, index: usize) -> (u64, usize) {
        let tokens = self.message_tokens.get(index).copied().unwrap_or(0);
        let bytes = self.message_bytes.get(index).copied().unwrap_or(0);
        (tokens, (bytes as f64 * self.scale).ceil() as usize)
    }

    /// Re-estimates message `index` after it changed.
    pub(super) fn update(&mut self, index: usize, message: &Message) {
        if let Some(slot) = self.message_tokens.get_mut(index) {
            *slot = estimate_message_tokens(message);
        }
        if let Some(slot) = self.message_bytes.get_mut(index) {
            *slot = message_bytes(message);
        }
    }

    /// Re-estimates every message (after messages were removed or inserted).
    pub(super) fn reset_messages(&mut self, request: &ChatRequest) {
        self.message_tokens = request
            .messages
            .iter()
            .map(estimate_message_tokens)
            .collect();
        self.message_bytes = request.messages.iter().map(message_bytes).collect();
    }

    /// True when the estimates fit.
    pub(super) fn fits_estimate(&self, budget: &super::Budget) -> bool {
        self.tokens() <= budget.max_tokens && self.bytes() <= budget.max_bytes
    }

    /// True when `request` fits; near the byte limit the body is built to measure it exactly
    /// and the estimate is calibrated with the result.
    pub fn fits(&mut self, request: &ChatRequest, budget: &super::Budget) -> bool {
        if self.tokens() > budget.max_tokens {
            return false;
        }
        let estimate = self.bytes();
        // Far below the limit the estimate is good enough; building costs a copy of the body.
        if estimate * 10 < budget.max_bytes * 7 {
            return true;
        }
        let Ok(built) = build_request(request, &self.model_id, None, &BuildOptions::default())
        else {
            // The builder refuses the request for another reason; the size is not the problem.
            return estimate <= budget.max_bytes;
        };
        let raw = (self.fixed_bytes + self.message_bytes.iter().sum::<usize>()).max(1);
        self.scale = built.body.len() as f64 / raw as f64;
        built.body.len() <= budget.max_bytes
    }
}
