//! The three compression levels. Each works oldest message first and stops as soon as the
//! estimates fit; the caller then confirms with an exact measurement.

use serde_json::Value;

use super::measure::Measure;
use super::{old_range, Budget, CompressConfig, CompressionReport};
use crate::chat::{ChatRequest, ContentBlock, Message, Role};

/// Start of the note that stands in for dropped turns (recognised when compressing again).
const DROPPED_NOTE: &str = "[Context note: the gateway removed";

/// Runs the levels in order until the request fits. True when it does.
pub(super) fn run_levels(
    request: &mut ChatRequest,
    budget: &Budget,
    config: &CompressConfig,
    measure: &mut Measure,
    report: &mut CompressionReport,
) -> bool {
    for level in 1..=3u8 {
        // A level is repeated when the exact measurement recalibrated the byte estimate.
        for _ in 0..3 {
            let (fitted, changed) = match level {
                1 => shorten_tool_payloads(request, budget, config, measure, report),
                2 => drop_reasoning_and_images(request, budget, config, measure, report),
                _ => drop_oldest_turns(request, budget, config, measure, report),
            };
            if changed {
                report.level = report.level.max(level);
            }
            if !fitted {
                break;
            }
            if measure.fits(request, budget) {
                return true;
            }
        }
    }
    false
}

/// `text` with its middle replaced by a marker, keeping `keep` characters at each end; `None`
/// when it is short enough already.
fn shorten_text(text: &str, keep: usize) -> Option<String> {
    let chars = text.chars().count();
    // Shortening must save more than the marker costs.
    if chars <= keep * 2 + 200 {
        return None;
    }
    let head_end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    let tail_start = text
        .char_indices()
        .nth(chars - keep)
        .map_or(text.len(), |(i, _)| i);
    let cut = chars - 2 * keep;
    Some(format!(
        "{}\n[... {cut} characters cut by the gateway to fit the context window ...]\n{}",
        &text[..head_end],
        &text[tail_start..]
    ))
}

fn shorten_value(value: &mut Value, keep: usize) -> bool {
    match value {
        Value::String(text) => match shorten_text(text, keep) {
            Some(short) => {
                *text = short;
                true
            }
            None => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, item| shorten_value(item, keep) | any),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |any, item| shorten_value(item, keep) | any),
        _ => false,
    }
}

/// Level 1: long tool results and long strings inside tool inputs keep their head and tail.
fn shorten_tool_payloads(
    request: &mut ChatRequest,
    budget: &Budget,
    config: &CompressConfig,
    measure: &mut Measure,
    report: &mut CompressionReport,
) -> (bool, bool) {
    let (start, end) = old_range(request, config.keep_recent_messages);
    let mut changed = false;
    for index in start..end {
        if measure.fits_estimate(budget) {
            return (true, changed);
        }
        let mut touched = false;
        for block in &mut request.messages[index].content {
            match block {
                ContentBlock::ToolResult { content, .. } => {
                    for inner in content.iter_mut() {
                        if let ContentBlock::Text(text) = inner {
                            if let Some(short) = shorten_text(text, config.keep_chars) {
                                *text = short;
                                report.shortened_blocks += 1;
                                touched = true;
                            }
                        }
                    }
                }
                ContentBlock::ToolUse { input, .. } => {
                    let shortened = shorten_value(input, config.keep_chars);
                    report.shortened_blocks += usize::from(shortened);
                    touched |= shortened;
                }
                _ => {}
            }
        }
        if touched {
            changed = true;
            measure.update(index, &request.messages[index]);
        }
    }
    (measure.fits_estimate(budget), changed)
}

fn image_marker() -> ContentBlock {
    ContentBlock::Text("[image removed by the gateway to fit the context window]".to_owned())
}

/// Level 2: reasoning blocks go, images leave a marker.
fn drop_reasoning_and_images(
    request: &mut ChatRequest,
    budget: &Budget,
    config: &CompressConfig,
    measure: &mut Measure,
    report: &mut CompressionReport,
) -> (bool, bool) {
    let (start, end) = old_range(request, config.keep_recent_messages);
    let mut changed = false;
    for index in start..end {
        if measure.fits_estimate(budget) {
            return (true, changed);
        }
        let message = &mut request.messages[index];
        let before = message.content.len();
        message
            .content
            .retain(|block| !matches!(block, ContentBlock::Thinking { .. }));
        let mut dropped = before - message.content.len();
        for block in &mut message.content {
            match block {
                ContentBlock::Image(_) => {
                    *block = image_marker();
                    dropped += 1;
                }
                ContentBlock::ToolResult { content, .. } => {
                    for inner in content.iter_mut() {
                        if matches!(inner, ContentBlock::Image(_)) {
                            *inner = image_marker();
                            dropped += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        if dropped > 0 {
            report.dropped_blocks += dropped;
            changed = true;
            measure.update(index, &request.messages[index]);
        }
    }
    (measure.fits_estimate(budget), changed)
}

/// For each cut point `k` in `start..=end`: may messages `start..k` be dropped without parting a
/// tool call from its result?
fn valid_cuts(messages: &[Message], start: usize, end: usize) -> Vec<bool> {
    let mut calls = std::collections::HashMap::new();
    // blocked[k - start] > 0 when some pair straddles cut point k.
    let mut blocked = vec![0i64; end - start + 2];
    let mut blocked_from = usize::MAX;
    for (index, message) in messages.iter().enumerate() {
        for block in &message.content {
            match block {
                ContentBlock::ToolUse { id, .. } => {
                    calls.insert(id.as_str(), index);
                }
                ContentBlock::ToolResult { tool_use_id, .. } => {
                    let Some(&call) = calls.get(tool_use_id.as_str()) else {
                        continue;
                    };
                    if call >= start {
                        // Cuts in (call, index] would keep the result and drop the call.
                        let from = (call + 1).max(start);
                        let to = index.min(end);
                        if from <= to {
                            blocked[from - start] += 1;
                            blocked[to - start + 1] -= 1;
                        }
                    } else if index >= start {
                        // A call before the droppable range answered inside it: cuts past the
                        // result would drop the result and keep the call.
                        blocked_from = blocked_from.min(index + 1);
                    }
                }
                _ => {}
            }
        }
    }
    let mut running = 0;
    (start..=end)
        .map(|k| {
            running += blocked[k - start];
            running == 0 && k < blocked_from
        })
        .collect()
}

fn dropped_note(count: usize) -> Message {
    Message {
        role: Role::User,
        content: vec![ContentBlock::Text(format!(
            "{DROPPED_NOTE} {count} earlier messages of this conversation to fit the model's \
             context window.]"
        ))],
    }
}

/// Level 3: drops the oldest turns after the first user message, as few as needed.
fn drop_oldest_turns(
    request: &mut ChatRequest,
    budget: &Budget,
    config: &CompressConfig,
    measure: &mut Measure,
    report: &mut CompressionReport,
) -> (bool, bool) {
    let (start, end) = old_range(request, config.keep_recent_messages);
    if start >= end {
        return (measure.fits_estimate(budget), false);
    }
    let earlier_note = match request.messages[start].content.first() {
        Some(ContentBlock::Text(text)) => text.starts_with(DROPPED_NOTE),
        _ => false,
    };
    let valid = valid_cuts(&request.messages, start, end);
    let note = dropped_note(report.dropped_messages + end - start);
    let note_tokens = crate::tokens::estimate_message_tokens(&note);
    let note_bytes = super::measure::message_bytes(&note);
    let (mut tokens, mut bytes) = (measure.tokens(), measure.bytes());
    let mut chosen = None;
    for k in start + 1..=end {
        let (t, b) = measure.message(k - 1);
        tokens -= t;
        bytes = bytes.saturating_sub(b);
        if valid[k - start]
            && tokens + note_tokens <= budget.max_tokens
            && bytes + note_bytes <= budget.max_bytes
        {
            chosen = Some(k);
            break;
        }
    }
    let Some(cut) = chosen else {
        return (false, false);
    };
    let mut dropped = cut - start;
    if earlier_note {
        dropped -= 1;
    }
    request.messages.drain(start..cut);
    report.dropped_messages += dropped;
    request
        .messages
        .insert(start, dropped_note(report.dropped_messages));
    measure.reset_messages(request);
    (measure.fits_estimate(budget), true)
}
