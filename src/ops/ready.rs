//! Readiness: the gateway can serve when at least one Kiro account is usable (configured and not
//! disabled; a cooling-down account recovers by itself) and every registered check passes (the
//! database, once a store registers one). A check gets [`CHECK_TIMEOUT`] to answer.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use kiro_layers::pool::{AccountStatus, RoundRobinPool};
use serde_json::{json, Map, Value};

/// Longest time one readiness check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Something the gateway needs to serve (a database, a cache).
pub trait ReadinessCheck: Send + Sync + 'static {
    /// `Ok` when reachable; the error says what is wrong (shown to the load balancer: no secrets).
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

impl<F> ReadinessCheck for F
where
    F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
{
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        self()
    }
}

type Checks = Vec<(String, Arc<dyn ReadinessCheck>)>;

/// A detail `/ready` shows without failing readiness (e.g. shared limits running degraded:
/// the process still serves, with its own counters).
pub type ReadinessDetail = Arc<dyn Fn() -> Value + Send + Sync>;

/// The live status of every account, read on each check (a database-backed pool replaces its
/// round-robin pool when accounts change, so a snapshot would go stale).
pub type AccountsStatus = Arc<dyn Fn() -> Vec<AccountStatus> + Send + Sync>;

/// The readiness state; cheap to clone, checks can be added after the router is built.
#[derive(Clone)]
pub struct Readiness {
    accounts: AccountsStatus,
    checks: Arc<RwLock<Checks>>,
    details: Arc<RwLock<Vec<(String, ReadinessDetail)>>>,
}

impl Readiness {
    /// Readiness over a fixed `pool`, with no extra checks yet.
    pub fn new(pool: RoundRobinPool) -> Self {
        Self::with_accounts(Arc::new(move || pool.status()))
    }

    /// Readiness over the accounts `accounts` reports, with no extra checks yet.
    pub fn with_accounts(accounts: AccountsStatus) -> Self {
        Readiness {
            accounts,
            checks: Arc::default(),
            details: Arc::default(),
        }
    }

    /// Adds a named check (e.g. `database`).
    pub fn add(&self, name: impl Into<String>, check: Arc<dyn ReadinessCheck>) {
        if let Ok(mut checks) = self.checks.write() {
            checks.push((name.into(), check));
        }
    }

    /// Adds a named detail, shown at the top level of the body.
    pub fn add_detail(&self, name: impl Into<String>, detail: ReadinessDetail) {
        if let Ok(mut details) = self.details.write() {
            details.push((name.into(), detail));
        }
    }

    /// Runs every check: whether the gateway is ready, and the JSON body that says why.
    pub async fn check(&self) -> (bool, Value) {
        let accounts = (self.accounts)();
        let disabled = accounts.iter().filter(|a| a.disabled.is_some()).count();
        let cooling = accounts
            .iter()
            .filter(|a| a.disabled.is_none() && a.resting_for.is_some())
            .count();
        let usable = accounts.len() - disabled;
        let mut reasons = Vec::new();
        if accounts.is_empty() {
            reasons.push("no Kiro account is configured".to_owned());
        } else if usable == 0 {
            reasons.push("every Kiro account is disabled (dead refresh token)".to_owned());
        }
        let checks: Checks = self.checks.read().map(|c| c.clone()).unwrap_or_default();
        let mut results = Map::new();
        for (name, check) in checks {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
            };
            match outcome {
                Ok(()) => {
                    results.insert(name, json!("ok"));
                }
                Err(error) => {
                    reasons.push(format!("{name}: {error}"));
                    results.insert(name, json!(error));
                }
            }
        }
        let ready = reasons.is_empty();
        let mut body = json!({
            "status": if ready { "ready" } else { "not_ready" },
            "accounts": {
                "total": accounts.len(),
                "usable": usable,
                "cooling_down": cooling,
                "disabled": disabled,
            },
            "checks": results,
        });
        if !ready {
            body["reason"] = json!(reasons.join("; "));
        }
        let details = self.details.read().map(|d| d.clone()).unwrap_or_default();
        for (name, detail) in details {
            body[name] = detail();
        }
        (ready, body)
    }
}
