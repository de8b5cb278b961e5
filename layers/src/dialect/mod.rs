//! Client dialects: each turns its API's request JSON into a [`crate::chat::ChatRequest`] and a
//! [`crate::chat::EventStream`] back into that API's SSE or JSON answer.

pub mod json;
pub mod openai;
