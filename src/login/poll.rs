//! The device-code poll loop as a small state machine (RFC 8628 §3.4–3.5, as AWS SSO OIDC and
//! Kiro's social device flow answer it).
//!
//! Contract:
//! - The first poll happens one `interval` after the start, never sooner; each later poll one
//!   `interval` after the previous answer.
//! - `slow_down` adds [`PollClock::slow_down_step`] (5 s by default, as RFC 8628 says) to the
//!   interval for every later poll; `authorization_pending` keeps it.
//! - When the next poll would start at or after the deadline (`expiresIn` after the start) the
//!   loop ends with [`PollEnd::Expired`] without asking again; an `expired_token` answer ends it
//!   the same way.
//! - `access_denied` ends it with [`PollEnd::Denied`]; any other refusal with
//!   [`PollEnd::Failed`]. A transport failure or a 5xx ([`PollAnswer::Retry`]) is tried again at
//!   the same interval, at most [`MAX_RETRIES_IN_A_ROW`] times in a row.
//! - Cancelling ends it with [`PollEnd::Cancelled`] at once, even mid-wait.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Transport failures in a row after which a flow gives up.
pub const MAX_RETRIES_IN_A_ROW: u32 = 5;

/// The RFC 8628 increment after `slow_down`.
pub const DEFAULT_SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// What one poll of the token endpoint said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollAnswer<T> {
    /// `authorization_pending`: the user has not finished signing in.
    Pending,
    /// `slow_down`: poll less often.
    SlowDown,
    /// `expired_token`: the device code is no longer valid.
    Expired,
    /// `access_denied`: the user refused.
    Denied,
    /// Signed in.
    Granted(T),
    /// A final refusal, with what the service said (never a secret).
    Failed(String),
    /// The call did not get a usable answer (network, 5xx); worth another try.
    Retry(String),
}

/// How a poll loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollEnd<T> {
    /// Signed in.
    Granted(T),
    /// The device code expired before the user finished.
    Expired,
    /// The user refused.
    Denied,
    /// The service refused for another reason, or kept failing.
    Failed(String),
    /// Cancelled by the operator.
    Cancelled,
}

/// Progress reported while the loop waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollProgress {
    /// Still waiting for the user; the interval in use.
    Pending(Duration),
    /// The service asked to slow down; the new interval.
    SlowedDown(Duration),
}

/// The timing half of the state machine: plain data, no I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollClock {
    /// Wait between polls.
    pub interval: Duration,
    /// No poll starts at or after this instant.
    pub deadline: Instant,
    /// Added to `interval` on `slow_down`.
    pub slow_down_step: Duration,
}

impl PollClock {
    /// A clock for a grant issued now that lives `expires_in` and asks for `interval`
    /// (at least one second: a service answering 0 would otherwise be polled in a busy loop).
    pub fn new(interval: Duration, expires_in: Duration, slow_down_step: Duration) -> Self {
        PollClock {
            interval: interval.max(Duration::from_secs(1)),
            deadline: Instant::now() + expires_in,
            slow_down_step,
        }
    }

    /// When the next poll is due if the previous one finished at `now`; `None` once that is past
    /// the deadline.
    pub fn next_poll(&self, now: Instant) -> Option<Instant> {
        let at = now + self.interval;
        (at < self.deadline).then_some(at)
    }

    /// Applies `slow_down`.
    pub fn slow_down(&mut self) {
        self.interval += self.slow_down_step;
    }
}

/// Polls with `poll` until the flow ends; `progress` hears about every pending answer and
/// interval change; `cancelled` ends the loop when it completes.
pub async fn poll_until_done<T, P, Fut, C>(
    mut clock: PollClock,
    mut poll: P,
    mut progress: impl FnMut(PollProgress),
    cancelled: C,
) -> PollEnd<T>
where
    P: FnMut() -> Fut,
    Fut: Future<Output = PollAnswer<T>>,
    C: Future<Output = ()>,
{
    tokio::pin!(cancelled);
    let mut retries = 0;
    loop {
        let Some(at) = clock.next_poll(Instant::now()) else {
            return PollEnd::Expired;
        };
        tokio::select! {
            () = &mut cancelled => return PollEnd::Cancelled,
            () = tokio::time::sleep_until(at) => {}
        }
        let answer = tokio::select! {
            () = &mut cancelled => return PollEnd::Cancelled,
            answer = poll() => answer,
        };
        match answer {
            PollAnswer::Pending => {
                retries = 0;
                progress(PollProgress::Pending(clock.interval));
            }
            PollAnswer::SlowDown => {
                retries = 0;
                clock.slow_down();
                progress(PollProgress::SlowedDown(clock.interval));
            }
            PollAnswer::Granted(value) => return PollEnd::Granted(value),
            PollAnswer::Expired => return PollEnd::Expired,
            PollAnswer::Denied => return PollEnd::Denied,
            PollAnswer::Failed(message) => return PollEnd::Failed(message),
            PollAnswer::Retry(message) => {
                retries += 1;
                if retries >= MAX_RETRIES_IN_A_ROW {
                    return PollEnd::Failed(format!(
                        "the login service failed {retries} times in a row: {message}"
                    ));
                }
                tracing::warn!("login poll failed, trying again: {message}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// A scripted token endpoint that records when it was asked.
    #[derive(Clone)]
    struct Script {
        answers: Arc<Mutex<VecDeque<PollAnswer<&'static str>>>>,
        asked_at: Arc<Mutex<Vec<Duration>>>,
        start: Instant,
    }

    impl Script {
        fn new(answers: Vec<PollAnswer<&'static str>>) -> Self {
            Script {
                answers: Arc::new(Mutex::new(answers.into())),
                asked_at: Arc::new(Mutex::new(Vec::new())),
                start: Instant::now(),
            }
        }

        fn poll(&self) -> impl Future<Output = PollAnswer<&'static str>> {
            self.asked_at.lock().unwrap().push(self.start.elapsed());
            let next = self
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(PollAnswer::Pending);
            async move { next }
        }

        fn asked_at_secs(&self) -> Vec<u64> {
            self.asked_at
                .lock()
                .unwrap()
                .iter()
                .map(|d| d.as_secs())
                .collect()
        }
    }

    fn clock(interval: u64, expires: u64) -> PollClock {
        PollClock::new(
            Duration::from_secs(interval),
            Duration::from_secs(expires),
            DEFAULT_SLOW_DOWN_STEP,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn pending_then_granted_polls_at_the_interval() {
        let script = Script::new(vec![
            PollAnswer::Pending,
            PollAnswer::Pending,
            PollAnswer::Granted("tokens"),
        ]);
        let mut seen = Vec::new();
        let end = poll_until_done(
            clock(2, 600),
            || script.poll(),
            |p| seen.push(p),
            std::future::pending(),
        )
        .await;
        assert_eq!(end, PollEnd::Granted("tokens"));
        assert_eq!(script.asked_at_secs(), vec![2, 4, 6]);
        assert_eq!(seen, vec![PollProgress::Pending(Duration::from_secs(2)); 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_down_raises_the_interval_for_every_later_poll() {
        let script = Script::new(vec![
            PollAnswer::SlowDown,
            PollAnswer::Pending,
            PollAnswer::SlowDown,
            PollAnswer::Granted("tokens"),
        ]);
        let mut seen = Vec::new();
        let end = poll_until_done(
            clock(1, 600),
            || script.poll(),
            |p| seen.push(p),
            std::future::pending(),
        )
        .await;
        assert_eq!(end, PollEnd::Granted("tokens"));
        // 1 s, then +6 s (1 + 5), again +6 s, then +11 s.
        assert_eq!(script.asked_at_secs(), vec![1, 7, 13, 24]);
        assert_eq!(
            seen,
            vec![
                PollProgress::SlowedDown(Duration::from_secs(6)),
                PollProgress::Pending(Duration::from_secs(6)),
                PollProgress::SlowedDown(Duration::from_secs(11)),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_the_loop_without_another_poll() {
        let script = Script::new(vec![]);
        let end: PollEnd<&str> = poll_until_done(
            clock(5, 12),
            || script.poll(),
            |_| {},
            std::future::pending(),
        )
        .await;
        assert_eq!(end, PollEnd::Expired);
        // Polls at 5 and 10; the next (15) would be past the 12 s deadline.
        assert_eq!(script.asked_at_secs(), vec![5, 10]);
        assert!(script.start.elapsed() < Duration::from_secs(12));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_token_and_denial_are_final() {
        let script = Script::new(vec![PollAnswer::Pending, PollAnswer::Expired]);
        let end = poll_until_done(
            clock(1, 600),
            || script.poll(),
            |_| {},
            std::future::pending(),
        )
        .await;
        assert_eq!(end, PollEnd::Expired);
        let script = Script::new(vec![PollAnswer::Denied, PollAnswer::Granted("never")]);
        let end = poll_until_done(
            clock(1, 600),
            || script.poll(),
            |_| {},
            std::future::pending(),
        )
        .await;
        assert_eq!(end, PollEnd::Denied);
        assert_eq!(script.asked_at_secs(), vec![1]);
        let script = Script::new(vec![PollAnswer::Failed("invalid_client".into())]);
        let end = poll_until_done(
            clock(1, 600),
            || script.poll(),
            |_| {},
            std::future::pending(),
        )
        .await;
        assert_eq!(end, PollEnd::Failed("invalid_client".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn transport_failures_are_retried_a_few_times() {
        let script = Script::new(vec![
            PollAnswer::Retry("503".into()),
            PollAnswer::Retry("503".into()),
            PollAnswer::Granted("tokens"),
        ]);
        let end = poll_until_done(
            clock(1, 600),
            || script.poll(),
            |_| {},
            std::future::pending(),
        )
        .await;
        assert_eq!(end, PollEnd::Granted("tokens"));
        let script = Script::new(vec![PollAnswer::Retry("503".into()); 10]);
        let end: PollEnd<&str> = poll_until_done(
            clock(1, 600),
            || script.poll(),
            |_| {},
            std::future::pending(),
        )
        .await;
        assert!(matches!(end, PollEnd::Failed(m) if m.contains("5 times")));
        assert_eq!(script.asked_at_secs().len(), MAX_RETRIES_IN_A_ROW as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_the_wait_at_once() {
        let script = Script::new(vec![]);
        let cancel = tokio::time::sleep(Duration::from_secs(3));
        let end: PollEnd<&str> =
            poll_until_done(clock(2, 600), || script.poll(), |_| {}, cancel).await;
        assert_eq!(end, PollEnd::Cancelled);
        assert_eq!(script.asked_at_secs(), vec![2]);
        assert_eq!(script.start.elapsed().as_secs(), 3);
    }

    #[test]
    fn a_zero_interval_is_raised_to_one_second() {
        let c = PollClock::new(
            Duration::ZERO,
            Duration::from_secs(60),
            DEFAULT_SLOW_DOWN_STEP,
        );
        assert_eq!(c.interval, Duration::from_secs(1));
    }
}
