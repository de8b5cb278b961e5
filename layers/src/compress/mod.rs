//! Context compression: makes an oversized conversation fit the model's context window and
//! Kiro's payload limit before it is sent, instead of letting Kiro refuse it with a cryptic
//! "Improperly formed request." (kiro-protocol.md §2.4).
//!
//! [`compress`] shrinks a [`ChatRequest`] in levels, cheapest first, and stops as soon as the
//! request fits:
//! 1. shorten old tool results and tool inputs (head and tail kept, the cut marked),
//! 2. drop old reasoning blocks and images (images leave a marker),
//! 3. drop the oldest turns, keeping the system prompt, the first user message, the most recent
//!    turns and every tool call together with its result.
//!
//! "Old" means everything between the first user message and the protected recent turns; those
//! two are never touched. The same input always gives the same output. [`CompressLayer`] runs it
//! after model resolution and reports what it did in the `x-kiro-compression` response header.

mod layer;
mod measure;
mod shrink;

pub use layer::{Compress, CompressLayer, COMPRESSION_HEADER};
pub use measure::Measure;

use crate::chat::{ChatRequest, Role};
use crate::error::GatewayError;

/// Settings of context compression (`CONTEXT_COMPRESSION`, `CONTEXT_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressConfig {
    /// Shrink oversized requests; when off they are refused with a context-length error.
    pub enabled: bool,
    /// Tokens of the context window kept free for the answer.
    pub answer_reserve_tokens: u64,
    /// Largest Kiro body, in bytes of compact JSON (`KIRO_MAX_PAYLOAD_BYTES`).
    pub max_payload_bytes: usize,
    /// Bytes of the payload budget left for what later stages add (thinking instructions,
    /// profileArn): the request is shrunk to `max_payload_bytes - payload_margin_bytes`.
    pub payload_margin_bytes: usize,
    /// Most recent messages never touched.
    pub keep_recent_messages: usize,
    /// Characters kept at each end of a shortened tool result or tool input string.
    pub keep_chars: usize,
}

impl Default for CompressConfig {
    fn default() -> Self {
        CompressConfig {
            enabled: true,
            answer_reserve_tokens: 8_192,
            max_payload_bytes: 600_000,
            payload_margin_bytes: 16_384,
            keep_recent_messages: 6,
            keep_chars: 1_000,
        }
    }
}

/// How much a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Estimated prompt tokens (see [`crate::tokens`]).
    pub max_tokens: u64,
    /// Bytes of the Kiro body.
    pub max_bytes: usize,
}

/// What compression did to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompressionReport {
    /// The highest level that was needed (1, 2 or 3).
    pub level: u8,
    /// Estimated tokens before.
    pub tokens_before: u64,
    /// Estimated tokens after.
    pub tokens_after: u64,
    /// Estimated body bytes before.
    pub bytes_before: usize,
    /// Estimated body bytes after.
    pub bytes_after: usize,
    /// Tool results and inputs shortened (level 1).
    pub shortened_blocks: usize,
    /// Reasoning blocks and images dropped (level 2).
    pub dropped_blocks: usize,
    /// Messages dropped (level 3).
    pub dropped_messages: usize,
}

impl CompressionReport {
    /// Estimated tokens removed.
    pub fn removed_tokens(&self) -> u64 {
        self.tokens_before.saturating_sub(self.tokens_after)
    }

    /// The value of the `x-kiro-compression` header.
    pub fn header_value(&self) -> String {
        format!(
            "level={} removed_tokens={} tokens_before={} tokens_after={} shortened={} dropped_blocks={} dropped_messages={}",
            self.level,
            self.removed_tokens(),
            self.tokens_before,
            self.tokens_after,
            self.shortened_blocks,
            self.dropped_blocks,
            self.dropped_messages
        )
    }
}

/// Index range of the messages compression may change: after the first user message, before
/// the protected recent ones.
fn old_range(request: &ChatRequest, keep_recent: usize) -> (usize, usize) {
    let first_user = request
        .messages
        .iter()
        .position(|m| m.role == Role::User)
        .unwrap_or(0);
    let start = first_user + 1;
    let end = request.messages.len().saturating_sub(keep_recent.max(1));
    (start, end.max(start))
}

/// Shrinks `request` until it fits `budget`. Returns `None` when it already fit, the report when
/// it was changed, and a context-length error when even the last level cannot make it fit.
pub fn compress(
    request: &mut ChatRequest,
    budget: &Budget,
    config: &CompressConfig,
    model_id: &str,
) -> Result<Option<CompressionReport>, GatewayError> {
    let mut measure = Measure::new(request, model_id);
    if measure.fits(request, budget) {
        return Ok(None);
    }
    let mut report = CompressionReport {
        tokens_before: measure.tokens(),
        bytes_before: measure.bytes(),
        ..CompressionReport::default()
    };
    let fitted = shrink::run_levels(request, budget, config, &mut measure, &mut report);
    report.tokens_after = measure.tokens();
    report.bytes_after = measure.bytes();
    if fitted {
        Ok(Some(report))
    } else {
        Err(too_long(&report, budget))
    }
}

/// Checks `request` without changing it: the context-length error when it does not fit.
pub fn check_fits(
    request: &ChatRequest,
    budget: &Budget,
    model_id: &str,
) -> Result<(), GatewayError> {
    let mut measure = Measure::new(request, model_id);
    if measure.fits(request, budget) {
        return Ok(());
    }
    let report = CompressionReport {
        tokens_before: measure.tokens(),
        tokens_after: measure.tokens(),
        bytes_before: measure.bytes(),
        bytes_after: measure.bytes(),
        ..CompressionReport::default()
    };
    Err(too_long(&report, budget))
}

fn too_long(report: &CompressionReport, budget: &Budget) -> GatewayError {
    let shrunk = if report.level > 0 {
        " even after compressing the conversation as far as allowed (the first user message and the most recent turns are kept)"
    } else {
        ""
    };
    GatewayError::context_length_exceeded(format!(
        "This request is too long for the model: about {} tokens ({} bytes upstream){shrunk}, \
         but at most {} tokens and {} bytes fit after reserving room for the answer. Shorten or \
         compact the conversation, or pick a model with a larger context window.",
        report.tokens_after, report.bytes_after, budget.max_tokens, budget.max_bytes
    ))
}

#[cfg(test)]
mod tests;
