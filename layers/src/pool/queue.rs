//! The line of requests waiting for an account: its rules as plain data ([`Line`], [`verdict`])
//! and the small loop that follows them ([`WaitLine::wait_for`]).
//!
//! - A request that arrives while nobody waits looks for an account at once (the pool's usual
//!   scan, no extra cost). If every account it could use is resting, busy (at its concurrency
//!   cap) or has its breaker probe out, it joins the line instead of failing.
//! - A request that arrives while others wait joins the line behind them: the line is served
//!   in arrival order. Only its head looks for an account; the others wait for the head to leave.
//! - The head takes the first account that frees up: it looks again when a lease comes back or
//!   an outcome is reported ([`WaitLine::changed`]) and when the shortest rest ends.
//! - Every request waits at most until its deadline: `POOL_QUEUE_TIMEOUT` after it asked, or
//!   sooner when the answer it belongs to set one ([`waiting_until`]: the recover layer's
//!   budget for throttled retries).
//! - When no account can free up before the deadline (the shortest rest ends after it and no
//!   busy account will give a lease back, or every account is disabled) the request fails at
//!   once, without waiting in vain: 429 when every account it could use is throttled, else 503,
//!   both with `Retry-After` (the pool's refusal, see `RoundRobinPool::pick`). A request whose
//!   deadline passes while it is not the head fails with the head's last refusal.
//! - Leaving the line for any reason (served, refused, the client went away) lets the next
//!   request be the head.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::GatewayError;

tokio::task_local! {
    static ANSWER_DEADLINE: Instant;
}

/// Runs `future` (one upstream attempt) with `deadline` as the latest time the pool may keep it
/// waiting for an account.
pub async fn waiting_until<F: Future>(deadline: Instant, future: F) -> F::Output {
    ANSWER_DEADLINE.scope(deadline, future).await
}

/// When an attempt got its account, so that a wait in line does not count against the time
/// the upstream has to answer (`FIRST_TOKEN_TIMEOUT`). The recover layer puts one into each
/// attempt's request; the token pool layer marks it.
#[derive(Debug, Clone, Default)]
pub struct LeaseClock(Arc<LeaseClockInner>);

#[derive(Debug, Default)]
struct LeaseClockInner {
    asking: AtomicBool,
    granted: Notify,
}

impl LeaseClock {
    /// The pool started looking for an account for this attempt.
    pub fn asking(&self) {
        self.0.asking.store(true, Ordering::Release);
    }

    /// The pool is done looking (with a lease or without).
    pub fn done(&self) {
        self.0.granted.notify_one();
    }

    /// Sleeps `limit` measured from the end of the pool's search: from now when no pool is
    /// asked within `limit`, else from when it is done.
    pub async fn upstream_limit(&self, limit: Duration) {
        tokio::select! {
            _ = self.0.granted.notified() => {}
            _ = tokio::time::sleep(limit) => {
                if !self.0.asking.load(Ordering::Acquire) {
                    return;
                }
                self.0.granted.notified().await;
            }
        }
        tokio::time::sleep(limit).await;
    }
}

/// The deadline of a request asking now: `queue_timeout` from now, or the answer's own
/// deadline when that is sooner.
pub(super) fn deadline(queue_timeout: Duration) -> Instant {
    let own = Instant::now() + queue_timeout;
    ANSWER_DEADLINE
        .try_with(|answer| (*answer).min(own))
        .unwrap_or(own)
}

/// No account could be leased right now: what the pool saw.
#[derive(Debug)]
pub(super) struct Blocked {
    /// What the client hears when it cannot wait (429 or 503, with `Retry-After`).
    pub error: GatewayError,
    /// When the shortest rest ends, if any account rests.
    pub rest_ends_in: Option<Duration>,
    /// An account is busy or has its probe out: it frees when a lease comes back.
    pub frees_on_release: bool,
}

/// Why an attempt to take an account came back empty-handed.
#[derive(Debug)]
pub(super) enum Miss {
    /// Nothing free right now; waiting may help.
    Blocked(Blocked),
    /// A failure waiting cannot mend (every credential refused).
    Failed(GatewayError),
}

/// What a blocked request does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Wait, looking again after this long at the latest (sooner when a lease comes back).
    Wait(Duration),
    /// Fail now: nothing frees up within the time `left`.
    Refuse,
}

/// The rule of the module docs for a request that has `left` until its deadline.
pub(super) fn verdict(blocked: &Blocked, left: Duration) -> Verdict {
    if left.is_zero() {
        return Verdict::Refuse;
    }
    match blocked.rest_ends_in.filter(|ends| *ends <= left) {
        Some(ends) => Verdict::Wait(ends),
        None if blocked.frees_on_release => Verdict::Wait(left),
        None => Verdict::Refuse,
    }
}

/// The tickets of the waiting requests, smallest first (arrival order).
#[derive(Debug, Default)]
pub(super) struct Line {
    next_ticket: u64,
    waiting: BTreeSet<u64>,
}

impl Line {
    /// A new request joins at the back.
    pub fn join(&mut self) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiting.insert(ticket);
        ticket
    }

    /// `ticket` is first in line.
    pub fn is_head(&self, ticket: u64) -> bool {
        self.waiting.first() == Some(&ticket)
    }

    /// `ticket` leaves, wherever it stood.
    pub fn leave(&mut self, ticket: u64) {
        self.waiting.remove(&ticket);
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// The line of one pool, shared by its clones.
#[derive(Debug, Default)]
pub(super) struct WaitLine {
    line: Mutex<Line>,
    changed: Notify,
    /// The head's last refusal, for requests whose deadline passes behind it.
    last_refusal: Mutex<Option<GatewayError>>,
}

/// A place in the line; leaving is on drop, so a request the client abandoned leaves too.
struct Ticket<'a> {
    owner: &'a WaitLine,
    number: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.owner.line().leave(self.number);
        self.owner.changed();
    }
}

impl WaitLine {
    fn line(&self) -> std::sync::MutexGuard<'_, Line> {
        // Plain data: a panic elsewhere cannot leave it half-written.
        self.line.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.line().len()
    }

    /// Something changed that may free an account (a lease came back, an outcome was
    /// reported): the head looks again.
    pub fn changed(&self) {
        self.changed.notify_waiters();
    }

    fn remember(&self, error: &GatewayError) {
        if let Ok(mut last) = self.last_refusal.lock() {
            *last = Some(error.clone());
        }
    }

    fn refusal(&self) -> GatewayError {
        self.last_refusal
            .lock()
            .ok()
            .and_then(|last| last.clone())
            .unwrap_or_else(|| {
                GatewayError::no_account(
                    "Every Kiro account of this gateway stayed busy or resting for as long as \
                     this request could wait (POOL_QUEUE_TIMEOUT); try again shortly.",
                )
                .with_retry_after(Duration::from_secs(1))
            })
    }

    /// Joins the line and calls `take` whenever this request is its head and something may
    /// have freed up, until `take` succeeds, fails for good, or the deadline rules refuse.
    pub async fn wait_for<T, F, Fut>(
        &self,
        deadline: Instant,
        mut take: F,
    ) -> Result<T, GatewayError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Miss>>,
    {
        let ticket = Ticket {
            owner: self,
            number: self.line().join(),
        };
        loop {
            // Registered before looking, so a change while looking is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let left = deadline.saturating_duration_since(Instant::now());
            let look_again_in = if self.line().is_head(ticket.number) {
                match take().await {
                    Ok(taken) => return Ok(taken),
                    Err(Miss::Failed(error)) => return Err(error),
                    Err(Miss::Blocked(blocked)) => {
                        self.remember(&blocked.error);
                        match verdict(&blocked, left) {
                            Verdict::Wait(after) => after,
                            Verdict::Refuse => return Err(blocked.error),
                        }
                    }
                }
            } else if left.is_zero() {
                return Err(self.refusal());
            } else {
                left
            };
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep(look_again_in) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn blocked(rest_ends_in: Option<u64>, frees_on_release: bool) -> Blocked {
        Blocked {
            error: GatewayError::rate_limited("throttled").with_retry_after(Duration::from_secs(1)),
            rest_ends_in: rest_ends_in.map(Duration::from_secs),
            frees_on_release,
        }
    }

    #[test]
    fn waits_for_a_rest_that_ends_in_time_and_refuses_one_that_does_not() {
        let left = Duration::from_secs(10);
        assert_eq!(
            verdict(&blocked(Some(3), false), left),
            Verdict::Wait(Duration::from_secs(3))
        );
        assert_eq!(verdict(&blocked(Some(11), false), left), Verdict::Refuse);
        // A busy account may free at any moment: wait until the deadline, woken by releases.
        assert_eq!(verdict(&blocked(Some(11), true), left), Verdict::Wait(left));
        assert_eq!(verdict(&blocked(None, true), left), Verdict::Wait(left));
        // Nothing can free up (every account disabled), or no time left.
        assert_eq!(verdict(&blocked(None, false), left), Verdict::Refuse);
        assert_eq!(
            verdict(&blocked(Some(0), true), Duration::ZERO),
            Verdict::Refuse
        );
    }

    #[test]
    fn the_line_serves_in_arrival_order_whoever_leaves() {
        let mut line = Line::default();
        let (a, b, c) = (line.join(), line.join(), line.join());
        assert!(line.is_head(a) && !line.is_head(b));
        line.leave(b);
        assert!(line.is_head(a));
        line.leave(a);
        assert!(line.is_head(c));
        line.leave(c);
        assert_eq!(line.len(), 0);
    }

    /// A pool of `free` slots that only `take` changes, with the line's notifications.
    struct Slots {
        line: WaitLine,
        free: AtomicUsize,
        served: Mutex<Vec<usize>>,
    }

    impl Slots {
        async fn take(&self, who: usize) -> Result<(), Miss> {
            let free = self.free.load(Ordering::SeqCst);
            if free == 0 {
                return Err(Miss::Blocked(blocked(None, true)));
            }
            self.free.store(free - 1, Ordering::SeqCst);
            self.served.lock().unwrap().push(who);
            Ok(())
        }

        fn give_back(&self) {
            self.free.fetch_add(1, Ordering::SeqCst);
            self.line.changed();
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn waiters_are_served_in_arrival_order_as_slots_come_back() {
        let slots = Arc::new(Slots {
            line: WaitLine::default(),
            free: AtomicUsize::new(0),
            served: Mutex::new(Vec::new()),
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut tasks = Vec::new();
        for who in 0..5 {
            let slots = Arc::clone(&slots);
            tasks.push(tokio::spawn(async move {
                slots.line.wait_for(deadline, || slots.take(who)).await
            }));
            // Arrive one after the other.
            tokio::task::yield_now().await;
        }
        assert_eq!(slots.line.len(), 5);
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            slots.give_back();
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(*slots.served.lock().unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(slots.line.len(), 0);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_deadline_refuses_head_and_followers_and_an_abandoned_waiter_leaves() {
        let slots = Arc::new(Slots {
            line: WaitLine::default(),
            free: AtomicUsize::new(0),
            served: Mutex::new(Vec::new()),
        });
        let start = Instant::now();
        let deadline = start + Duration::from_secs(2);
        let abandoned = {
            let slots = Arc::clone(&slots);
            tokio::spawn(async move { slots.line.wait_for(deadline, || slots.take(9)).await })
        };
        tokio::task::yield_now().await;
        let follower = {
            let slots = Arc::clone(&slots);
            tokio::spawn(async move { slots.line.wait_for(deadline, || slots.take(1)).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(slots.line.len(), 2);
        abandoned.abort();
        let _ = abandoned.await;
        assert_eq!(slots.line.len(), 1, "the abandoned head left the line");
        let error = follower.await.unwrap().unwrap_err();
        assert_eq!(error.status(), 429);
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        assert_eq!(slots.line.len(), 0);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_upstream_limit_starts_when_the_pool_is_done() {
        let limit = Duration::from_secs(2);
        // No pool asked: the limit runs from the start.
        let start = Instant::now();
        LeaseClock::default().upstream_limit(limit).await;
        assert_eq!(Instant::now() - start, limit);
        // A pool that waited 5 s in line: the limit runs from its lease.
        let clock = LeaseClock::default();
        clock.asking();
        let pool = {
            let clock = clock.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                clock.done();
            })
        };
        let start = Instant::now();
        clock.upstream_limit(limit).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(7));
        pool.await.unwrap();
        // A pool done at once.
        let clock = LeaseClock::default();
        clock.asking();
        clock.done();
        let start = Instant::now();
        clock.upstream_limit(limit).await;
        assert_eq!(Instant::now() - start, limit);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_answer_deadline_shortens_the_wait() {
        let queue_timeout = Duration::from_secs(30);
        let own = deadline(queue_timeout);
        assert_eq!(own - Instant::now(), queue_timeout);
        let sooner = Instant::now() + Duration::from_secs(2);
        let inside = waiting_until(sooner, async { deadline(queue_timeout) }).await;
        assert_eq!(inside, sooner);
    }
}
