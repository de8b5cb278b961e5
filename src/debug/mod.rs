//! Debug capture (`DEBUG_MODE`): what a request looked like at every boundary, written as one
//! JSON-lines file per request under `DEBUG_DIR`, with secrets redacted before anything is
//! written, and the directory kept under `DEBUG_MAX_BYTES` and `DEBUG_MAX_AGE` (oldest first).
//!
//! The layers collect the bytes (see `kiro_layers::capture`); [`DebugWriter`] decides what to
//! keep, then a background thread renders, redacts and writes, so the request path only pays
//! for a non-blocking channel send. `kiro-gateway debug list` and `debug show <id>` read the
//! files back ([`store`]).
//!
//! A capture file holds, one JSON object per line: `request` (id, path, headers with credentials
//! replaced, caller, statuses, timings), `client_request`, `kiro_request`, one `upstream_frame`
//! per event-stream frame (event type and decoded JSON payload) or `upstream_body` for an error
//! answer, `client_response` (the bytes sent to the client) and `error` lines.

pub mod mode;
pub mod redact;
pub mod render;
pub mod store;
pub mod writer;

pub use mode::DebugMode;
pub use writer::{DebugSettings, DebugWriter};
