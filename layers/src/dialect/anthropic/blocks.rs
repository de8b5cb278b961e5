//! The content-block state machine shared by the SSE encoder and the non-streaming collector:
//! it decides when a block opens and closes and which index it gets, so both outputs always
//! agree.

use base64::Engine as _;
use bytestring::ByteString;
use rand::RngCore;

use crate::chat::{ChatEvent, StopReason, UsageTally};

/// A block that begins.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BlockStart<'a> {
    Thinking,
    Text,
    ToolUse { id: &'a str, name: &'a str },
}

/// A piece of the open block.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BlockDelta<'a> {
    Thinking(&'a str),
    Signature(&'a str),
    Text(&'a str),
    InputJson(&'a str),
}

/// Receives the block operations in Anthropic's order.
pub(crate) trait BlockSink {
    fn start(&mut self, index: usize, block: BlockStart<'_>);
    fn delta(&mut self, index: usize, delta: BlockDelta<'_>);
    fn stop(&mut self, index: usize);
}

#[derive(Debug)]
enum OpenBlock {
    Thinking {
        index: usize,
        signature: Option<ByteString>,
    },
    Text {
        index: usize,
    },
    ToolUse {
        index: usize,
        id: ByteString,
    },
}

/// Turns [`ChatEvent`]s into block operations and remembers what the final `message_delta` needs.
#[derive(Debug, Default)]
pub(crate) struct BlockTracker {
    open: Option<OpenBlock>,
    next_index: usize,
    stop: Option<StopReason>,
    stop_sequence: Option<ByteString>,
    saw_tool_use: bool,
    pub(crate) tally: UsageTally,
}

impl BlockTracker {
    pub(crate) fn apply(&mut self, event: &ChatEvent, sink: &mut impl BlockSink) {
        self.tally.observe(event);
        match event {
            ChatEvent::TextDelta(text) if !text.is_empty() => {
                let index = match self.open {
                    Some(OpenBlock::Text { index }) => index,
                    _ => {
                        let index = self.open_block(sink, BlockStart::Text);
                        self.open = Some(OpenBlock::Text { index });
                        index
                    }
                };
                sink.delta(index, BlockDelta::Text(text));
            }
            ChatEvent::ReasoningDelta(text) if !text.is_empty() => {
                let index = match self.open {
                    Some(OpenBlock::Thinking { index, .. }) => index,
                    _ => {
                        let index = self.open_block(sink, BlockStart::Thinking);
                        self.open = Some(OpenBlock::Thinking {
                            index,
                            signature: None,
                        });
                        index
                    }
                };
                sink.delta(index, BlockDelta::Thinking(text));
            }
            ChatEvent::ReasoningSignature(value) => match &mut self.open {
                Some(OpenBlock::Thinking { signature, .. }) => *signature = Some(value.clone()),
                _ => tracing::debug!("reasoning signature outside a thinking block dropped"),
            },
            ChatEvent::ToolUseStart { id, name } => {
                let index = self.open_block(sink, BlockStart::ToolUse { id, name });
                self.open = Some(OpenBlock::ToolUse {
                    index,
                    id: id.clone(),
                });
                self.saw_tool_use = true;
            }
            ChatEvent::ToolUseInput { id, fragment } => match &self.open {
                Some(OpenBlock::ToolUse { index, id: open_id }) if open_id == id => {
                    if !fragment.is_empty() {
                        sink.delta(*index, BlockDelta::InputJson(fragment));
                    }
                }
                _ => tracing::warn!("tool input for a tool call that is not open dropped"),
            },
            ChatEvent::ToolUseStop { id } => {
                if matches!(&self.open, Some(OpenBlock::ToolUse { id: open_id, .. }) if open_id == id)
                {
                    self.close_block(sink);
                }
            }
            ChatEvent::Stop(reason) => self.stop = Some(*reason),
            ChatEvent::StopSequenceMatched(sequence) => self.stop_sequence = Some(sequence.clone()),
            ChatEvent::TextDelta(_)
            | ChatEvent::ReasoningDelta(_)
            | ChatEvent::ContextUsage { .. }
            | ChatEvent::Metering { .. }
            | ChatEvent::TokenUsage(_) => {}
        }
    }

    /// Closes the last block; returns the Anthropic `stop_reason`.
    pub(crate) fn finish(&mut self, sink: &mut impl BlockSink) -> &'static str {
        self.close_block(sink);
        let reason = match self.stop {
            // Clients run tools only on `tool_use`; a natural end after a tool call is one.
            None | Some(StopReason::EndTurn) if self.saw_tool_use => StopReason::ToolUse,
            None => StopReason::EndTurn,
            Some(reason) => reason,
        };
        stop_reason_name(reason)
    }

    fn open_block(&mut self, sink: &mut impl BlockSink, block: BlockStart<'_>) -> usize {
        self.close_block(sink);
        let index = self.next_index;
        self.next_index += 1;
        sink.start(index, block);
        index
    }

    fn close_block(&mut self, sink: &mut impl BlockSink) {
        match self.open.take() {
            Some(OpenBlock::Thinking { index, signature }) => {
                let signature = signature
                    .map(|s| s.to_string())
                    .unwrap_or_else(placeholder_signature);
                sink.delta(index, BlockDelta::Signature(&signature));
                sink.stop(index);
            }
            Some(OpenBlock::Text { index }) | Some(OpenBlock::ToolUse { index, .. }) => {
                sink.stop(index)
            }
            None => {}
        }
    }

    /// The stop sequence that ended the answer, when one did.
    pub(crate) fn stop_sequence(&self) -> Option<&str> {
        match self.stop {
            Some(StopReason::StopSequence) => self.stop_sequence.as_deref(),
            _ => None,
        }
    }
}

/// Anthropic's name for a stop reason.
pub(crate) fn stop_reason_name(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn => "end_turn",
        StopReason::ToolUse => "tool_use",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ContentFiltered => "refusal",
    }
}

/// An opaque signature for reasoning the upstream did not sign. Clients only store it and send
/// it back; the gateway drops thinking from history, so it never needs to verify it.
fn placeholder_signature() -> String {
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
