//! The throttle rest of one pool account, as plain data (the pool holds it beside the account's
//! breaker, under the same lock, and applies the rests it asks for).
//!
//! - A 429 from Kiro rests the account for [`PoolPolicy::throttle_cooldown`](super::PoolPolicy)
//!   (about a second), doubled for every further consecutive throttle (at most
//!   [`MAX_DOUBLINGS`] times), or for the `Retry-After` Kiro asked for when that is longer.
//! - A throttle reported while the rest of an earlier one still runs belongs to the same burst
//!   (attempts that were already out when Kiro said stop): it does not grow the rest, it only
//!   lengthens it to a longer `Retry-After`.
//! - A success on the account ends the run of throttles: the next one rests for the base again.
//! - A throttle rest another process took (learnt through the shared store) counts here too:
//!   its length says how long that process's run is, so the next throttle in this process
//!   grows from there instead of from the base.
//! - Nothing else touches it: a quota (402) or failure rest is the breaker's and the pool's
//!   business, and those rests are not shortened by anything here.

use std::time::Duration;

use tokio::time::Instant;

/// Most doublings of the throttle rest (`throttle_cooldown` × 32).
pub const MAX_DOUBLINGS: u32 = 5;

/// See the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ThrottleRest {
    consecutive: u32,
    until: Option<Instant>,
}

impl ThrottleRest {
    /// Throttles since the last success (bursts counted once).
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// Kiro throttled an attempt at `now`. Returns the rest to apply from `now`, or `None` when
    /// the rest already running covers it.
    pub fn throttled(
        &mut self,
        now: Instant,
        asked: Option<Duration>,
        base: Duration,
    ) -> Option<Duration> {
        if let Some(until) = self.until.filter(|until| *until > now) {
            // Same burst: only a longer Retry-After changes anything.
            let asked = asked?;
            if now + asked <= until {
                return None;
            }
            self.until = Some(now + asked);
            return Some(asked);
        }
        self.consecutive = self.consecutive.saturating_add(1);
        let doublings = (self.consecutive - 1).min(MAX_DOUBLINGS);
        let grown = base.saturating_mul(1 << doublings);
        let period = asked.map_or(grown, |asked| asked.max(grown));
        self.until = Some(now + period);
        Some(period)
    }

    /// A throttle rest learnt from another process, `left` of it still to run at `now`: this
    /// process's throttles during it belong to the same burst, and the run is at least as long
    /// as a rest of that length implies (`base` × 2^(run − 1) ≥ `left`). A long `Retry-After`
    /// elsewhere so counts as a long run here: the next throttle rests longer, not shorter.
    pub fn learnt(&mut self, now: Instant, left: Duration, base: Duration) {
        let until = now + left;
        if self.until.is_none_or(|u| u < until) {
            self.until = Some(until);
        }
        let mut implied = 1;
        while implied <= MAX_DOUBLINGS && base.saturating_mul(1 << (implied - 1)) < left {
            implied += 1;
        }
        self.consecutive = self.consecutive.max(implied);
    }

    /// An attempt on the account succeeded: the run of throttles is over.
    pub fn success(&mut self) {
        self.consecutive = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(1);

    #[test]
    fn starts_at_the_base_and_doubles_per_consecutive_throttle_up_to_the_cap() {
        let mut rest = ThrottleRest::default();
        let mut now = Instant::now();
        for expected in [1, 2, 4, 8, 16, 32, 32, 32] {
            let period = rest.throttled(now, None, BASE).unwrap();
            assert_eq!(period, Duration::from_secs(expected));
            now += period;
        }
        assert_eq!(rest.consecutive(), 8);
    }

    #[test]
    fn a_success_starts_over() {
        let mut rest = ThrottleRest::default();
        let now = Instant::now();
        rest.throttled(now, None, BASE);
        rest.throttled(now + BASE, None, BASE);
        rest.success();
        let later = now + Duration::from_secs(10);
        assert_eq!(rest.throttled(later, None, BASE), Some(BASE));
    }

    #[test]
    fn a_burst_counts_once_and_only_a_longer_retry_after_extends_it() {
        let mut rest = ThrottleRest::default();
        let now = Instant::now();
        assert_eq!(rest.throttled(now, None, BASE), Some(BASE));
        let soon = now + Duration::from_millis(10);
        for _ in 0..9 {
            assert_eq!(rest.throttled(soon, None, BASE), None);
        }
        assert_eq!(
            rest.throttled(soon, Some(Duration::from_millis(500)), BASE),
            None
        );
        assert_eq!(
            rest.throttled(soon, Some(Duration::from_secs(5)), BASE),
            Some(Duration::from_secs(5))
        );
        assert_eq!(rest.consecutive(), 1);
        // After the rest, the next throttle is the second of the run.
        let after = now + Duration::from_secs(6);
        assert_eq!(rest.throttled(after, None, BASE), Some(BASE * 2));
    }

    #[test]
    fn kiro_asking_for_longer_wins_and_growth_wins_over_a_short_ask() {
        let mut rest = ThrottleRest::default();
        let mut now = Instant::now();
        let asked = Some(Duration::from_secs(3));
        assert_eq!(
            rest.throttled(now, asked, BASE),
            Some(Duration::from_secs(3))
        );
        now += Duration::from_secs(3);
        assert_eq!(
            rest.throttled(now, asked, BASE),
            Some(Duration::from_secs(3))
        );
        now += Duration::from_secs(3);
        assert_eq!(
            rest.throttled(now, asked, BASE),
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn a_rest_learnt_from_another_process_continues_its_run() {
        let now = Instant::now();
        let mut rest = ThrottleRest::default();
        // Another process rested the account 4 s (its third throttle); 3.5 s are left.
        rest.learnt(now, Duration::from_millis(3_500), BASE);
        assert_eq!(rest.consecutive(), 3);
        // A throttle here during that rest is the same burst.
        assert_eq!(
            rest.throttled(now + Duration::from_secs(1), None, BASE),
            None
        );
        // The next one after it is the fourth: 8 s.
        let later = now + Duration::from_secs(5);
        assert_eq!(
            rest.throttled(later, None, BASE),
            Some(Duration::from_secs(8))
        );
        // Its own rest coming back from the store changes nothing.
        rest.learnt(later, Duration::from_secs(8), BASE);
        assert_eq!(rest.consecutive(), 4);
        // A short rest learnt never shortens the run.
        rest.learnt(later, Duration::from_millis(500), BASE);
        assert_eq!(rest.consecutive(), 4);
        rest.success();
        assert_eq!(rest.consecutive(), 0);
    }
}
