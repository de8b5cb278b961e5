//! The canonical, dialect-neutral types that flow between the layers.
//!
//! A client request (OpenAI or Anthropic JSON) is parsed once into a [`ChatRequest`]; the upstream
//! answer is decoded once into a stream of [`ChatEvent`]s. Every layer between the two boundaries
//! works on these types only, so no stage re-parses bytes.

use std::pin::Pin;

use bytestring::ByteString;
use futures_util::Stream;
use serde_json::Value;

use crate::error::GatewayError;

/// Which client API a request came in through; decides the shape of every answer and error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// `POST /v1/chat/completions`
    OpenAi,
    /// `POST /v1/messages`
    Anthropic,
    /// `POST /v1/responses` (OpenAI Responses; errors share Chat Completions' shape)
    Responses,
}

/// Who is speaking in a conversation turn. System text is not a turn: it lives in
/// [`ChatRequest::system`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The human (or the agent feeding tool results back).
    User,
    /// The model.
    Assistant,
}

/// One conversation turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Speaker.
    pub role: Role,
    /// Ordered content blocks; text, images, tool calls and tool results.
    pub content: Vec<ContentBlock>,
}

/// An image given inline as base64 (URLs are rejected at the dialect boundary: the gateway never
/// fetches them).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// MIME type such as `image/png`.
    pub media_type: String,
    /// Raw base64 (no `data:` prefix).
    pub data: String,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlock {
    /// Plain text.
    Text(String),
    /// An inline image.
    Image(Image),
    /// A tool call made by the assistant. `input` is the arguments object.
    ToolUse {
        /// Client-visible call id (`call_...` / `toolu_...`).
        id: String,
        /// Tool name as the client knows it.
        name: String,
        /// Arguments object.
        input: Value,
    },
    /// The result of a tool call, sent back by the client.
    ToolResult {
        /// The id of the call this answers.
        tool_use_id: String,
        /// Text and image blocks of the result.
        content: Vec<ContentBlock>,
        /// The tool failed (Anthropic `is_error`).
        is_error: bool,
    },
    /// Reasoning sent back in history; Kiro has no place for it, converters drop or inline it.
    Thinking {
        /// The reasoning text.
        text: String,
        /// Opaque signature, if the client sent one.
        signature: Option<String>,
    },
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Tool name as the client knows it (may exceed Kiro's 64-character limit).
    pub name: String,
    /// Human-readable description.
    pub description: String,
    /// JSON schema of the arguments.
    pub input_schema: Value,
}

/// What the client asked for about reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThinkingRequest {
    /// Not said: the gateway's configured default applies.
    #[default]
    Default,
    /// Explicitly off.
    Disabled,
    /// On, with this budget in tokens.
    Budget(u32),
}

/// A chat request in canonical form.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The client's dialect.
    pub dialect: Dialect,
    /// The model name exactly as the client sent it (echoed back in answers).
    pub model: String,
    /// System prompt (OpenAI `system`/`developer` messages, Anthropic `system`), joined.
    pub system: Option<String>,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Tools offered to the model.
    pub tools: Vec<Tool>,
    /// Stream the answer as SSE.
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// Output limit the gateway enforces itself (Kiro has none).
    pub max_tokens: Option<u32>,
    /// Stop sequences the gateway enforces itself.
    pub stop_sequences: Vec<String>,
    /// Reasoning request.
    pub thinking: ThinkingRequest,
    /// Opaque end-user id (`user` / `metadata.user_id`), for records only.
    pub end_user: Option<String>,
}

impl ChatRequest {
    /// A minimal request: one user text turn. Handy in tests, benches and examples.
    pub fn user_text(dialect: Dialect, model: &str, text: &str) -> Self {
        ChatRequest {
            dialect,
            model: model.to_owned(),
            system: None,
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentBlock::Text(text.to_owned())],
            }],
            tools: Vec::new(),
            stream: false,
            include_usage: false,
            max_tokens: None,
            stop_sequences: Vec::new(),
            thinking: ThinkingRequest::Default,
            end_user: None,
        }
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Natural end of turn.
    EndTurn,
    /// The model called tools and waits for results.
    ToolUse,
    /// Output limit reached, or the upstream cut the answer.
    MaxTokens,
    /// A client stop sequence matched.
    StopSequence,
    /// Upstream content filter.
    ContentFiltered,
}

/// Token and credit figures reported by the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TokenUsage {
    /// Input tokens not served from cache.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write_input_tokens: u64,
}

/// One event of an answer, decoded once from the upstream frames.
///
/// Text is carried as [`ByteString`] so a delta can point into the frame buffer it came from
/// instead of being copied.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// Visible answer text.
    TextDelta(ByteString),
    /// Reasoning text (native `reasoningContentEvent`, or parsed out of `<thinking>` tags).
    ReasoningDelta(ByteString),
    /// Signature that closes a reasoning block, if the upstream sent one.
    ReasoningSignature(ByteString),
    /// A tool call begins. Fragments and the stop for the same `id` follow.
    ToolUseStart {
        /// `toolUseId`.
        id: ByteString,
        /// Tool name (as sent upstream; the request builder maps shortened names back).
        name: ByteString,
    },
    /// A fragment of the tool call's arguments JSON; concatenated in order they form the object.
    ToolUseInput {
        /// `toolUseId`.
        id: ByteString,
        /// The fragment.
        fragment: ByteString,
    },
    /// The tool call is complete.
    ToolUseStop {
        /// `toolUseId`.
        id: ByteString,
    },
    /// `contextUsageEvent`: share of the model's context window used by this exchange.
    ContextUsage {
        /// Percentage, 0..=100.
        percent: f64,
    },
    /// `meteringEvent`: credits charged for the request.
    Metering {
        /// Credits.
        credits: f64,
    },
    /// `metadataEvent`: real token counts.
    TokenUsage(TokenUsage),
    /// Which client stop sequence ended the answer; comes just before `Stop(StopSequence)`.
    /// Anthropic answers name it in `stop_sequence`; OpenAI answers have no such field.
    StopSequenceMatched(ByteString),
    /// The upstream (or a layer) decided why the answer stopped.
    Stop(StopReason),
}

/// The typed answer stream every inner layer produces. Errors after the first event are in-band.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, GatewayError>> + Send>>;

/// What a dialect encoder needs to know about the answer besides the events.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMeta {
    /// Response id (`chatcmpl-...` / `msg_...`).
    pub id: String,
    /// The model name the client asked for (echoed back).
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// Local estimate of the prompt's tokens (used when Kiro reports no counts).
    pub input_tokens_estimate: u64,
    /// The resolved model's context window (turns `contextUsagePercentage` into tokens).
    pub context_window: u64,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
}

/// Accumulates what the upstream says about usage while events stream past, and turns it into
/// honest token counts at the end: real counts when Kiro sent them, else derived from the
/// context-usage percentage and the model's window, else the local estimate. Never inflated.
#[derive(Debug, Clone, Default)]
pub struct UsageTally {
    reported: Option<TokenUsage>,
    context_percent: Option<f64>,
    credits: f64,
    output_estimate: u64,
}

impl UsageTally {
    /// Takes one event into account.
    pub fn observe(&mut self, event: &ChatEvent) {
        match event {
            ChatEvent::TextDelta(text) | ChatEvent::ReasoningDelta(text) => {
                self.output_estimate += crate::tokens::estimate_text_tokens(text);
            }
            ChatEvent::ToolUseInput { fragment, .. } => {
                self.output_estimate += crate::tokens::estimate_text_tokens(fragment);
            }
            ChatEvent::ToolUseStart { name, .. } => {
                self.output_estimate += crate::tokens::estimate_text_tokens(name);
            }
            ChatEvent::TokenUsage(usage) => self.reported = Some(*usage),
            ChatEvent::ContextUsage { percent } => self.context_percent = Some(*percent),
            ChatEvent::Metering { credits } => self.credits += credits,
            ChatEvent::ReasoningSignature(_)
            | ChatEvent::ToolUseStop { .. }
            | ChatEvent::StopSequenceMatched(_)
            | ChatEvent::Stop(_) => {}
        }
    }

    /// Credits charged so far (`meteringEvent`).
    pub fn credits(&self) -> f64 {
        self.credits
    }

    /// True once the upstream sent its end-of-answer accounting (context usage or metering).
    pub fn saw_completion_signal(&self) -> bool {
        self.context_percent.is_some() || self.reported.is_some()
    }

    /// True when [`UsageTally::usage`] can only give the gateway's own estimate: the upstream
    /// reported no token counts and no context share to derive the input from.
    pub fn estimated(&self, context_window: u64) -> bool {
        self.reported.is_none()
            && !self
                .context_percent
                .is_some_and(|percent| percent > 0.0 && context_window > 0)
    }

    /// The best token counts available.
    pub fn usage(&self, input_tokens_estimate: u64, context_window: u64) -> TokenUsage {
        if let Some(reported) = self.reported {
            return reported;
        }
        let output_tokens = self.output_estimate;
        let input_tokens = match self.context_percent {
            Some(percent) if percent > 0.0 && context_window > 0 => {
                let total = (percent / 100.0 * context_window as f64) as u64;
                // A percentage below what the output alone needs says nothing about the input.
                if total > output_tokens {
                    total - output_tokens
                } else {
                    input_tokens_estimate
                }
            }
            _ => input_tokens_estimate,
        };
        TokenUsage {
            input_tokens,
            output_tokens,
            cache_read_input_tokens: 0,
            cache_write_input_tokens: 0,
        }
    }
}
