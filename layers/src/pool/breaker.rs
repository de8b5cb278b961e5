//! The circuit breaker of one pool account, as a plain state machine (the pool holds it behind
//! the account's lock and applies the rests it asks for).
//!
//! - `Closed`: the account serves. Failed attempts (a 403 that a refresh did not fix, a 5xx, a
//!   transport error) are counted; a success resets the count.
//! - `Open`: [`PoolPolicy::breaker_threshold`](super::PoolPolicy) consecutive failures opened
//!   it; the account rests for `failure_cooldown`, doubled for every further failure (at most
//!   [`MAX_DOUBLINGS`] times).
//! - `HalfOpen`: the rest is over and exactly one request, the probe, is out; every other
//!   request skips the account. The probe's success closes the breaker, its failure opens it
//!   again for twice as long, and a probe that ends without a verdict (dropped, throttled)
//!   leaves it open, so the next request after any rest is the probe.

use std::time::Duration;

use crate::store::BreakerState;

/// Most doublings of the open period (`failure_cooldown` × 64).
pub const MAX_DOUBLINGS: u32 = 6;

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Breaker {
    failures: u32,
    position: BreakerState,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failures: 0,
            position: BreakerState::Closed,
        }
    }
}

/// Whether a request that found the account not resting may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Yes, as an ordinary request.
    Serve,
    /// Yes, as the one probe of a breaker whose rest ended.
    Probe,
    /// No: the probe is out.
    ProbeOut,
}

impl Breaker {
    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The breaker's position.
    pub fn position(&self) -> BreakerState {
        self.position
    }

    /// Admits a request to an account whose rest is over; an open breaker admits exactly one.
    pub fn admit(&mut self) -> Admission {
        match self.position {
            BreakerState::Closed => Admission::Serve,
            BreakerState::Open => {
                self.position = BreakerState::HalfOpen;
                Admission::Probe
            }
            BreakerState::HalfOpen => Admission::ProbeOut,
        }
    }

    /// An attempt succeeded: closed, count reset.
    pub fn success(&mut self) {
        *self = Breaker::default();
    }

    /// An attempt failed. Returns how long the account must rest when this opens (or reopens)
    /// the breaker; `threshold` 0 turns the breaker off.
    pub fn failure(&mut self, threshold: u32, base: Duration) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if threshold == 0 || self.failures < threshold {
            return None;
        }
        self.position = BreakerState::Open;
        let doublings = (self.failures - threshold).min(MAX_DOUBLINGS);
        Some(base.saturating_mul(1 << doublings))
    }

    /// The probe ended without a verdict: the next request after any rest probes again.
    pub fn probe_abandoned(&mut self) {
        if self.position == BreakerState::HalfOpen {
            self.position = BreakerState::Open;
        }
    }

    /// Another process opened this account's breaker. A probe already out stays the only one.
    pub fn opened_elsewhere(&mut self, threshold: u32) {
        if self.position == BreakerState::Closed {
            self.position = BreakerState::Open;
            self.failures = self.failures.max(threshold);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(30);

    fn opened() -> Breaker {
        let mut breaker = Breaker::default();
        assert_eq!(breaker.failure(3, BASE), None);
        assert_eq!(breaker.failure(3, BASE), None);
        assert_eq!(breaker.failure(3, BASE), Some(BASE));
        breaker
    }

    #[test]
    fn threshold_failures_open_it_and_a_success_closes_it() {
        let mut breaker = Breaker::default();
        breaker.failure(3, BASE);
        breaker.success();
        assert_eq!(breaker.failures(), 0);
        assert_eq!(breaker.admit(), Admission::Serve);
        let mut breaker = opened();
        assert_eq!(breaker.position(), BreakerState::Open);
        assert_eq!(breaker.admit(), Admission::Probe);
        breaker.success();
        assert_eq!(breaker, Breaker::default());
    }

    #[test]
    fn exactly_one_probe_until_a_verdict() {
        let mut breaker = opened();
        assert_eq!(breaker.admit(), Admission::Probe);
        assert_eq!(breaker.position(), BreakerState::HalfOpen);
        for _ in 0..5 {
            assert_eq!(breaker.admit(), Admission::ProbeOut);
        }
        // Learning that another process opened it does not let a second probe out.
        breaker.opened_elsewhere(3);
        assert_eq!(breaker.admit(), Admission::ProbeOut);
    }

    #[test]
    fn a_failed_probe_doubles_the_rest_up_to_the_cap() {
        let mut breaker = opened();
        let mut expected = BASE;
        for _ in 0..10 {
            assert_eq!(breaker.admit(), Admission::Probe);
            expected = (expected * 2).min(BASE * 64);
            assert_eq!(breaker.failure(3, BASE), Some(expected));
            assert_eq!(breaker.position(), BreakerState::Open);
        }
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_request_probe() {
        let mut breaker = opened();
        assert_eq!(breaker.admit(), Admission::Probe);
        breaker.probe_abandoned();
        assert_eq!(breaker.admit(), Admission::Probe);
        // Abandoning does nothing once a verdict closed it.
        breaker.success();
        breaker.probe_abandoned();
        assert_eq!(breaker.admit(), Admission::Serve);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let mut breaker = Breaker::default();
        for _ in 0..10 {
            assert_eq!(breaker.failure(0, BASE), None);
        }
        assert_eq!(breaker.admit(), Admission::Serve);
    }
}
