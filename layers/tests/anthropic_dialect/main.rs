//! The Anthropic Messages dialect as a client sees it: request validation, SSE event order,
//! non-streaming bodies and keep-alive pings.

mod request;
mod response;
