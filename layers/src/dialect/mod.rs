//! Client dialects: request JSON -> [`crate::ChatRequest`], [`crate::ChatEvent`]s -> SSE or JSON.

pub mod anthropic;
pub mod json;
pub mod openai;
pub mod responses;
