//! Prices and charging. A usage record costs micro-credits by a per-model price table (micro-
//! credits per million input, output, cache-read and cache-write tokens); the
//! [`ChargingSink`] prices every record, charges the key, its user and its agent in the
//! [`QuotaBook`] at once, and passes the priced record on to be stored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kiro_layers::models::fallback_models;
use kiro_layers::traits::{UsageRecord, UsageSink};

use super::limits::QuotaBook;

pub use kiro_layers::store::Price;

/// The cost of a record at `price` in micro-credits, rounded up so no request is free by
/// rounding.
pub fn cost_at(price: &Price, record: &UsageRecord) -> i64 {
    let parts = [
        (record.input_tokens, price.input_per_m),
        (record.output_tokens, price.output_per_m),
        (record.cache_read_tokens, price.cache_read_per_m),
        (record.cache_write_tokens, price.cache_write_per_m),
    ];
    let total: i128 = parts
        .iter()
        .map(|&(tokens, per_m)| i128::from(tokens) * i128::from(per_m.max(0)))
        .sum();
    let micro = (total + 999_999) / 1_000_000;
    i64::try_from(micro).unwrap_or(i64::MAX)
}

/// The default price of a model: one credit is 1,000,000 micro-credits; the numbers follow the
/// usual relation of the Claude tiers (Opus 5x Haiku, output 5x input, cache reads a tenth).
pub fn default_price(model: &str) -> Price {
    let input = if model.contains("opus") {
        5_000_000
    } else if model.contains("haiku") {
        1_000_000
    } else {
        3_000_000
    };
    Price {
        input_per_m: input,
        output_per_m: input * 5,
        cache_read_per_m: input / 10,
        cache_write_per_m: input + input / 4,
    }
}

/// Per-model prices, admin-editable; every fallback model has a default.
#[derive(Clone)]
pub struct PriceTable {
    prices: Arc<RwLock<HashMap<String, Price>>>,
}

impl Default for PriceTable {
    fn default() -> Self {
        let prices = fallback_models()
            .into_iter()
            .map(|m| {
                let price = default_price(&m.id);
                (m.id, price)
            })
            .collect();
        PriceTable {
            prices: Arc::new(RwLock::new(prices)),
        }
    }
}

impl std::fmt::Debug for PriceTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriceTable").finish_non_exhaustive()
    }
}

impl PriceTable {
    /// The price of `model`; unknown models cost like Sonnet.
    pub fn price(&self, model: &str) -> Price {
        self.prices
            .read()
            .ok()
            .and_then(|p| p.get(model).copied())
            .unwrap_or_else(|| default_price(model))
    }

    /// Replaces the admin-set prices (defaults stay for models without one).
    pub fn load(&self, rows: Vec<kiro_layers::store::PriceRow>) {
        let mut prices: HashMap<String, Price> = fallback_models()
            .into_iter()
            .map(|m| {
                let price = default_price(&m.id);
                (m.id, price)
            })
            .collect();
        prices.extend(rows.into_iter().map(|r| (r.model_id, r.price)));
        if let Ok(mut current) = self.prices.write() {
            *current = prices;
        }
    }

    /// Sets one model's price.
    pub fn set(&self, model: &str, price: Price) {
        if let Ok(mut prices) = self.prices.write() {
            prices.insert(model.to_owned(), price);
        }
    }

    /// Every model with its price, sorted by model.
    pub fn all(&self) -> Vec<(String, Price)> {
        let mut all: Vec<_> = self
            .prices
            .read()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The cost of one record.
    pub fn cost(&self, record: &UsageRecord) -> i64 {
        let model = if record.resolved_model.is_empty() {
            &record.requested_model
        } else {
            &record.resolved_model
        };
        cost_at(&self.price(model), record)
    }
}

/// Where priced records go (the store's batched writer).
pub trait PricedSink: Send + Sync + 'static {
    /// Takes one record and its cost in micro-credits. Must not block.
    fn record_priced(&self, record: UsageRecord, cost_micro: i64);
}

/// Prices each record, charges it in memory, and hands it on.
pub struct ChargingSink {
    prices: PriceTable,
    book: QuotaBook,
    next: Arc<dyn PricedSink>,
}

impl ChargingSink {
    /// Charges into `book` at `prices` and forwards to `next`.
    pub fn new(prices: PriceTable, book: QuotaBook, next: Arc<dyn PricedSink>) -> Self {
        ChargingSink { prices, book, next }
    }
}

impl UsageSink for ChargingSink {
    fn record(&self, record: UsageRecord) {
        let cost = self.prices.cost(&record);
        self.book.charge(&record.principal, cost);
        self.next.record_priced(record, cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::limits::{Limits, Subject};
    use kiro_layers::traits::{Principal, UsageStatus};
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};

    fn record(model: &str, input: u64, output: u64) -> UsageRecord {
        UsageRecord {
            request_id: "r".into(),
            attempt: 1,
            principal: Principal {
                key_id: "k".into(),
                user_id: Some("u".into()),
                agent_id: None,
                allowed_models: vec![],
            },
            requested_model: model.into(),
            resolved_model: model.into(),
            account_id: None,
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            credits: 0.0,
            status: UsageStatus::Ok,
            time_to_first_token: None,
            duration: Duration::ZERO,
            started_at: SystemTime::now(),
            account_kind: None,
            estimated: false,
        }
    }

    #[test]
    fn every_fallback_model_has_a_price_and_costs_round_up() {
        let table = PriceTable::default();
        for model in fallback_models() {
            assert!(table.all().iter().any(|(m, _)| *m == model.id));
        }
        // 1M sonnet input tokens cost 3 credits; one token still costs something.
        assert_eq!(
            table.cost(&record("claude-sonnet-4.5", 1_000_000, 0)),
            3_000_000
        );
        assert_eq!(table.cost(&record("claude-sonnet-4.5", 1, 0)), 3);
        assert_eq!(table.cost(&record("claude-sonnet-4.5", 0, 0)), 0);
        table.set(
            "claude-sonnet-4.5",
            Price {
                input_per_m: 1,
                output_per_m: 2,
                cache_read_per_m: 0,
                cache_write_per_m: 0,
            },
        );
        assert_eq!(
            table.cost(&record("claude-sonnet-4.5", 1_000_000, 1_000_000)),
            3
        );
    }

    #[derive(Default)]
    struct Collect(Mutex<Vec<i64>>);
    impl PricedSink for Collect {
        fn record_priced(&self, _record: UsageRecord, cost_micro: i64) {
            self.0.lock().unwrap().push(cost_micro);
        }
    }

    #[test]
    fn charging_sink_charges_the_book_and_forwards_the_cost() {
        let book = QuotaBook::new();
        book.set(Subject::User("u".into()), Limits::default());
        let next = Arc::new(Collect::default());
        let sink = ChargingSink::new(PriceTable::default(), book.clone(), next.clone());
        sink.record(record("claude-haiku-4.5", 1_000_000, 0));
        sink.record(record("claude-haiku-4.5", 0, 0));
        assert_eq!(*next.0.lock().unwrap(), [1_000_000, 0]);
        assert_eq!(book.used(&Subject::User("u".into())), 1_000_000);
    }
}
