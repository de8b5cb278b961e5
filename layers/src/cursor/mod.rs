//! The Cursor upstream (a Cursor Pro account, the IDE's chat call
//! `aiserver.v1.ChatService/StreamUnifiedChatWithTools`): Connect envelope codec, protobuf
//! messages generated from `layers/proto/cursor_aiserver.proto`, end-of-stream errors, and the
//! decoding of answer frames into canonical events. See `docs/cursor.md` for what is known
//! about the protocol, what drifts, and how to update the settings when Cursor starts refusing.

pub mod auth;
pub mod catalog;
pub mod end_stream;
pub mod envelope;
pub mod events;
pub mod headers;
pub mod proto;
pub mod request;
pub mod service;

#[cfg(test)]
mod capture_tests;
