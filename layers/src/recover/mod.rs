//! `RecoverLayer`: keeps answers going through upstream trouble and reports honestly when it
//! cannot (kiro-protocol.md §6, §7.3).
//!
//! - Before any event reached the client, an attempt that fails (429, 5xx, transport error, an
//!   account refused, or no first event within `FIRST_TOKEN_TIMEOUT`) is dropped and retried
//!   with a new lease, up to `max_attempts`, with exponential backoff and jitter.
//! - A throttled attempt (a 429 from Kiro before any output) does not spend one of those
//!   attempts: it is retried at once, and the pool serves the retry from another account or
//!   from the same one when its throttle rest ends, for as long as `throttle_budget` from the
//!   answer's start allows (the pool waits no later than that either). When the budget is spent,
//!   the client gets the 429 with `Retry-After`.
//! - A stream that is cut (a tool call without its stop, tool arguments that are not JSON, or an
//!   end with neither a stop nor the upstream's end-of-answer accounting) ends with
//!   `Stop(MaxTokens)`: `finish_reason: "length"` / `stop_reason: "max_tokens"`, never a normal
//!   stop.
//! - A cut text answer is continued: a follow-up request (the conversation, the partial answer
//!   and a short instruction) is spliced into the same stream, up to `max_continuations` times.
//! - A cut tool call is remembered by id; when its result comes back in a later request, the
//!   result is prefixed with a notice so the model changes approach instead of repeating.
//! - Errors after output began travel in-band (the encoders turn them into error events).
//!
//! It sits between compression and the token pool, so every attempt leases an account again.

mod attempt;
mod layer;
mod memory;
mod stream;
mod tracker;

pub use layer::{Recover, RecoverLayer};
pub use memory::{TruncationMemory, TOOL_TRUNCATION_NOTICE};

use std::time::Duration;

use http::{Request, Response};
use tower::Service;

use crate::chat::{ChatRequest, EventStream};
use crate::error::GatewayError;

/// The inner service the recover layer calls: cloned for every attempt and continuation, and
/// carried inside the answer stream, so it must be `Clone + Send + 'static` with a `Send`
/// future. Implemented by every such service.
pub trait RetriedService:
    Service<
        Request<ChatRequest>,
        Response = Response<EventStream>,
        Error = GatewayError,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<S> RetriedService for S where
    S: Service<
            Request<ChatRequest>,
            Response = Response<EventStream>,
            Error = GatewayError,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

/// Settings of the recover layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverConfig {
    /// Upstream attempts per answer before the first event (1 = no retries).
    pub max_attempts: u32,
    /// Longest wait for the first event of an attempt (`FIRST_TOKEN_TIMEOUT`).
    pub first_token_timeout: Duration,
    /// Backoff before the second attempt; doubles each time, with ±50 % jitter.
    pub base_backoff: Duration,
    /// Cap of the backoff.
    pub max_backoff: Duration,
    /// Follow-up requests that continue a cut text answer (0 = report the cut only).
    pub max_continuations: u32,
    /// Continue cut answers and tell the model about cut tool calls (`TRUNCATION_RECOVERY`).
    pub truncation_recovery: bool,
    /// How long after an answer's start throttled attempts are still retried, and the latest
    /// the pool keeps its attempts waiting for an account (`POOL_QUEUE_TIMEOUT`).
    pub throttle_budget: Duration,
}

impl Default for RecoverConfig {
    fn default() -> Self {
        RecoverConfig {
            max_attempts: 3,
            first_token_timeout: Duration::from_secs(15),
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_continuations: 2,
            truncation_recovery: true,
            throttle_budget: Duration::from_secs(10),
        }
    }
}

impl RecoverConfig {
    /// The wait before attempt `next` (2, 3, ...): exponential, capped, with jitter.
    pub fn backoff(&self, next: u32) -> Duration {
        use rand::Rng;
        let doublings = next.saturating_sub(2).min(16);
        let base = self
            .base_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        base.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
    }
}

#[cfg(test)]
mod tests;
