//! The Prometheus exporter: one global recorder for the process (the `metrics` facade allows
//! one), installed on first use. Pool and credential figures are read at scrape time, so they
//! are exact when scraped and cost nothing between scrapes.

use std::sync::{Arc, OnceLock};

use kiro_layers::kiro::auth::RefreshingCredential;
use kiro_layers::pool::RoundRobinPool;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Gauge: 1 for the state an account is in (`healthy`, `cooling_down`, `disabled`), else 0.
pub const ACCOUNT_STATE: &str = "kiro_gateway_account_state";
/// Gauge: leases out per account.
pub const ACCOUNT_IN_FLIGHT: &str = "kiro_gateway_account_in_flight";
/// Counter: successful token refreshes per account.
pub const TOKEN_REFRESHES_TOTAL: &str = "kiro_gateway_token_refreshes_total";

/// Histogram buckets (seconds) for durations, time to first token and overhead: fine below 10 ms
/// for the overhead, coarse up to long agent answers.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process) and returns its handle; `None` when another
/// recorder was installed first (the gateway embedded in a host that has its own).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    kiro_layers::metrics::describe();
                    metrics::describe_gauge!(
                        ACCOUNT_STATE,
                        "1 for the state each Kiro account is in (healthy, cooling_down, disabled)"
                    );
                    metrics::describe_gauge!(ACCOUNT_IN_FLIGHT, "Leases out per Kiro account");
                    metrics::describe_counter!(
                        TOKEN_REFRESHES_TOTAL,
                        "Successful Kiro token refreshes per account"
                    );
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!("metrics recorder not installed: {error}");
                    None
                }
            }
        })
        .as_ref()
}

/// The current metrics in Prometheus text format, with the pool figures refreshed first.
pub fn render(pool: &RoundRobinPool, credentials: &[Arc<RefreshingCredential>]) -> Option<String> {
    let handle = install()?;
    for account in pool.status() {
        let state = if account.disabled.is_some() {
            "disabled"
        } else if account.resting_for.is_some() {
            "cooling_down"
        } else {
            "healthy"
        };
        for candidate in ["healthy", "cooling_down", "disabled"] {
            metrics::gauge!(ACCOUNT_STATE, "account" => account.account_id.clone(), "state" => candidate)
                .set(if candidate == state { 1.0 } else { 0.0 });
        }
        metrics::gauge!(ACCOUNT_IN_FLIGHT, "account" => account.account_id.clone())
            .set(account.in_flight as f64);
    }
    for credential in credentials {
        metrics::counter!(TOKEN_REFRESHES_TOTAL, "account" => credential.account_id().to_owned())
            .absolute(credential.refresh_count());
    }
    handle.run_upkeep();
    Some(handle.render())
}
