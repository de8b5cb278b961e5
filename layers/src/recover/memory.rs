//! Remembers tool calls the upstream cut, so the next turn can tell the model (§6).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::chat::{ChatRequest, ContentBlock};

/// Put in front of the result of a tool call that was cut.
pub const TOOL_TRUNCATION_NOTICE: &str = "[API Limitation] Your tool call was truncated by the upstream API due to output size limits, so the tool received incomplete arguments. Repeating the exact same operation will be truncated again. Consider adapting your approach: split the work into smaller calls (for example, write a large file in several parts).";

/// Calls remembered at most; the oldest are forgotten first.
const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
struct Inner {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

/// Ids of tool calls that were cut, shared by all requests of a gateway. One-shot: an id is
/// forgotten once its result has carried the notice.
#[derive(Debug, Clone, Default)]
pub struct TruncationMemory(Arc<Mutex<Inner>>);

impl TruncationMemory {
    /// Remembers a cut call.
    pub fn remember(&self, id: &str) {
        let Ok(mut inner) = self.0.lock() else { return };
        if inner.ids.insert(id.to_owned()) {
            inner.order.push_back(id.to_owned());
        }
        while inner.order.len() > CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.ids.remove(&old);
            }
        }
    }

    /// True if `id` is remembered.
    pub fn contains(&self, id: &str) -> bool {
        self.0.lock().map(|i| i.ids.contains(id)).unwrap_or(false)
    }

    /// Prefixes the results of remembered calls in `request` with the notice; returns how many.
    pub fn annotate(&self, request: &mut ChatRequest) -> usize {
        let Ok(mut inner) = self.0.lock() else {
            return 0;
        };
        if inner.ids.is_empty() {
            return 0;
        }
        let mut count = 0;
        for message in &mut request.messages {
            for block in &mut message.content {
                if let ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    ..
                } = block
                {
                    if inner.ids.remove(tool_use_id.as_str()) {
                        content.insert(
                            0,
                            ContentBlock::Text(format!(
                                "{TOOL_TRUNCATION_NOTICE}\n\n---\n\nOriginal tool result:\n"
                            )),
                        );
                        count += 1;
                    }
                }
            }
        }
        if count > 0 {
            let ids = &inner.ids;
            let kept: VecDeque<String> = inner
                .order
                .iter()
                .filter(|id| ids.contains(*id))
                .cloned()
                .collect();
            inner.order = kept;
        }
        count
    }
}
