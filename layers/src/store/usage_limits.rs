//! The last Kiro usage-limits snapshot of each account (`getUsageLimits`, fetched by the
//! gateway on demand or periodically), kept so the console can show used / limit / reset
//! without calling Kiro on every page.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// What Kiro said about one account's usage, reduced to what the console shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LimitSnapshot {
    /// Used this period (the main breakdown plus an active free trial and active bonuses).
    pub used: f64,
    /// The limit over the same parts.
    pub limit: f64,
    /// The resource counted (`CREDIT`, `AGENTIC_REQUEST`, ...), when Kiro names it.
    pub resource: Option<String>,
    /// When the usage resets, when Kiro says.
    pub resets_at: Option<Timestamp>,
    /// The subscription's title (`KIRO FREE`, `KIRO PRO+`).
    pub subscription: Option<String>,
    /// The account's e-mail, when Kiro gives it.
    pub email: Option<String>,
}

impl LimitSnapshot {
    /// Used as a fraction of the limit (0 when there is no limit).
    pub fn fraction(&self) -> f64 {
        if self.limit > 0.0 {
            self.used / self.limit
        } else {
            0.0
        }
    }
}

/// One account's stored snapshot and the outcome of the last fetch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountUsageLimits {
    /// The account.
    pub account_id: i64,
    /// The last snapshot fetched successfully.
    pub snapshot: Option<LimitSnapshot>,
    /// When that snapshot was fetched.
    pub fetched_at: Option<Timestamp>,
    /// Why the last fetch failed, when it did (cleared by a success).
    pub error: Option<String>,
    /// When the last fetch failed.
    pub error_at: Option<Timestamp>,
}
