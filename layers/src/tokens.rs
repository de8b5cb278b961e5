//! Token estimates for usage reporting when Kiro reports no counts.

/// Estimates the tokens of a text. About four bytes of English per token; CJK and other
/// non-ASCII scripts run closer to one token per character, so those count one each.
pub fn estimate_text_tokens(text: &str) -> u64 {
    let mut ascii = 0u64;
    let mut other = 0u64;
    for c in text.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    ascii.div_ceil(4) + other
}


/// Estimates the prompt tokens of a whole request: system, messages, tools. Images count a flat
/// amount each, tool calls their name and arguments.
pub fn estimate_request_tokens(request: &crate::chat::ChatRequest) -> u64 {
    use crate::chat::ContentBlock;
    fn block_tokens(block: &ContentBlock) -> u64 {
        match block {
            ContentBlock::Text(text) => estimate_text_tokens(text),
            ContentBlock::Image(_) => IMAGE_TOKENS,
            ContentBlock::ToolUse { name, input, .. } => {
                estimate_text_tokens(name) + estimate_text_tokens(&input.to_string()) + 4
            }
            ContentBlock::ToolResult { content, .. } => {
                content.iter().map(block_tokens).sum::<u64>() + 4
            }
            ContentBlock::Thinking { text, .. } => estimate_text_tokens(text),
        }
    }
    let system = request.system.as_deref().map_or(0, estimate_text_tokens);
    let messages: u64 = request
        .messages
        .iter()
        .map(|m| 4 + m.content.iter().map(block_tokens).sum::<u64>())
        .sum();
    let tools: u64 = request
        .tools
        .iter()
        .map(|t| {
            estimate_text_tokens(&t.name)
                + estimate_text_tokens(&t.description)
                + estimate_text_tokens(&t.input_schema.to_string())
        })
        .sum();
    system + messages + tools + 3
}

/// Flat token cost of one image.
pub const IMAGE_TOKENS: u64 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_text() {
        assert_eq!(estimate_text_tokens(""), 0);
        assert_eq!(estimate_text_tokens("abcd"), 1);
        assert_eq!(estimate_text_tokens("abcde"), 2);
        assert_eq!(estimate_text_tokens("格格"), 2);
    }
}
