//! A deployment's circuit breaker and its 429 cooldown, read and updated
//! on the request path under one short lock, never through a mailbox.
//!
//! Closed, it lets every call through and watches two signals: a run of
//! consecutive failures, and the error rate over a window once the window
//! has enough calls. Either opens it: no call goes through for the open
//! period. Then it half-opens and lets one probe through; a success closes
//! it, a failure opens it again. A probe that never reports (its request
//! was cancelled) frees the slot after another open period, so a breaker
//! cannot stay half-open for ever; one that got a 429 frees it at once.
//!
//! A 429 is not a failure of the deployment but a request to wait: it
//! puts the deployment in cooldown for the upstream's `retry-after`.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::millis;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Failures in a row that open it.
    pub consecutive_failures: u32,
    /// The error rate over [`Self::window`] that opens it, once the window
    /// holds at least [`Self::min_calls`].
    pub error_rate: f64,
    pub min_calls: u32,
    pub window: Duration,
    /// How long it stays open before a probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    /// Five failures in a row, or half of at least ten calls in 30 s,
    /// open it for 10 s: quick enough to spare clients an outage, slow
    /// enough that one bad burst does not take a deployment out.
    fn default() -> Self {
        BreakerPolicy {
            consecutive_failures: 5,
            error_rate: 0.5,
            min_calls: 10,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(10),
        }
    }
}

/// Where the breaker stands, as the status page and gossip show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BreakerState {
    Closed,
    /// One probe may go through.
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    consecutive_failures: u32,
    window_start_ms: u64,
    window_calls: u32,
    window_failures: u32,
    /// Open until this instant; then half-open.
    open_until_ms: Option<u64>,
    /// Half-open and a probe went out at this instant.
    probe_since_ms: Option<u64>,
    /// No call before this instant: the upstream asked us to wait.
    cooldown_until_ms: u64,
    /// Opened on another node's word, so not this node's to report.
    opened_by_peer: bool,
}

impl Inner {
    fn state(&self, now_ms: u64) -> BreakerState {
        match self.open_until_ms {
            Some(until) if now_ms < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
            None => BreakerState::Closed,
        }
    }

    fn open(&mut self, now_ms: u64, open_for: Duration) {
        self.open_until_ms = Some(now_ms.saturating_add(millis(open_for)));
        self.opened_by_peer = false;
        self.probe_since_ms = None;
        self.window_calls = 0;
        self.window_failures = 0;
        self.window_start_ms = now_ms;
    }
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Breaker {
            policy,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self, now_ms: u64) -> BreakerState {
        self.lock().state(now_ms)
    }

    /// Whether a call could go through now: closed, or half-open with the
    /// probe slot free, and not cooling down. Changes nothing: the balancer
    /// filters on it, then [`Self::claim`] takes the slot for the one chosen.
    pub fn is_usable(&self, now_ms: u64) -> bool {
        let inner = self.lock();
        now_ms >= inner.cooldown_until_ms && self.probe_free(&inner, now_ms)
    }

    fn probe_free(&self, inner: &Inner, now_ms: u64) -> bool {
        match inner.state(now_ms) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => inner
                .probe_since_ms
                .is_none_or(|since| now_ms >= since.saturating_add(millis(self.policy.open_for))),
        }
    }

    /// Takes the way through for one call: `false` when another request
    /// took the half-open probe first.
    pub fn claim(&self, now_ms: u64) -> bool {
        let mut inner = self.lock();
        if now_ms < inner.cooldown_until_ms || !self.probe_free(&inner, now_ms) {
            return false;
        }
        if inner.state(now_ms) == BreakerState::HalfOpen {
            inner.probe_since_ms = Some(now_ms);
        }
        true
    }

    /// When a call could next go through, for a client told to come back.
    pub fn usable_at_ms(&self, now_ms: u64) -> u64 {
        let inner = self.lock();
        let reopens = match inner.state(now_ms) {
            BreakerState::Open => inner.open_until_ms.unwrap_or(now_ms),
            BreakerState::HalfOpen | BreakerState::Closed => now_ms,
        };
        reopens.max(inner.cooldown_until_ms)
    }

    /// A call succeeded. It closes a half-open breaker (the deployment
    /// answers again) but not an open one: a call that started before the
    /// breaker opened says little about now.
    pub fn on_success(&self, now_ms: u64) {
        let mut inner = self.lock();
        self.count(&mut inner, now_ms, false);
        inner.consecutive_failures = 0;
        if inner.state(now_ms) == BreakerState::HalfOpen {
            inner.open_until_ms = None;
            inner.probe_since_ms = None;
        }
    }

    pub fn on_failure(&self, now_ms: u64) {
        let mut inner = self.lock();
        self.count(&mut inner, now_ms, true);
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let policy = &self.policy;
        let tripped = match inner.state(now_ms) {
            // The probe, or any call, failed: not well yet.
            BreakerState::HalfOpen => true,
            BreakerState::Open => false,
            BreakerState::Closed => {
                inner.consecutive_failures >= policy.consecutive_failures
                    || (inner.window_calls >= policy.min_calls
                        && f64::from(inner.window_failures)
                            >= policy.error_rate * f64::from(inner.window_calls))
            }
        };
        if tripped {
            inner.open(now_ms, policy.open_for);
        }
    }

    /// No call until `until_ms`, as the upstream's `retry-after` asked. A
    /// half-open probe that got a 429 gives its slot back for after it.
    pub fn cool_down(&self, until_ms: u64) {
        let mut inner = self.lock();
        inner.cooldown_until_ms = inner.cooldown_until_ms.max(until_ms);
        inner.probe_since_ms = None;
    }

    pub fn is_cooling_down(&self, now_ms: u64) -> bool {
        now_ms < self.lock().cooldown_until_ms
    }

    /// Opens the breaker as another node reported it, until `until_ms`
    /// but never longer than one open period from now: a peer's clock
    /// ahead of this one, or a wrong figure, cannot keep it open for ever.
    pub fn open_until(&self, until_ms: u64, now_ms: u64) {
        let until_ms = until_ms.min(now_ms.saturating_add(millis(self.policy.open_for)));
        let mut inner = self.lock();
        if until_ms > now_ms && inner.open_until_ms.is_none_or(|open| open < until_ms) {
            inner.open_until_ms = Some(until_ms);
            inner.opened_by_peer = true;
            inner.probe_since_ms = None;
        }
    }

    /// Until when it is open, if this node's own calls opened it: what
    /// gossip tells the others. One opened on a peer's word is not echoed
    /// back, or a peer whose probe succeeded would be told to open again.
    pub fn opened_here_until_ms(&self, now_ms: u64) -> Option<u64> {
        let inner = self.lock();
        inner
            .open_until_ms
            .filter(|until| *until > now_ms && !inner.opened_by_peer)
    }

    fn count(&self, inner: &mut Inner, now_ms: u64, failed: bool) {
        if now_ms.saturating_sub(inner.window_start_ms) >= millis(self.policy.window) {
            inner.window_start_ms = now_ms;
            inner.window_calls = 0;
            inner.window_failures = 0;
        }
        inner.window_calls = inner.window_calls.saturating_add(1);
        if failed {
            inner.window_failures = inner.window_failures.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy::default())
    }

    #[test]
    fn opens_after_a_run_of_failures_then_lets_one_probe_through() {
        let breaker = breaker();
        for _ in 0..4 {
            breaker.on_failure(1_000);
        }
        assert!(breaker.is_usable(1_000), "four failures are not yet five");
        breaker.on_failure(1_000);
        assert_eq!(breaker.state(1_000), BreakerState::Open);
        assert!(!breaker.is_usable(10_999));
        assert_eq!(breaker.usable_at_ms(2_000), 11_000);
        // Half-open: one probe, not two.
        assert_eq!(breaker.state(11_000), BreakerState::HalfOpen);
        assert!(breaker.claim(11_000));
        assert!(!breaker.claim(11_001), "the probe slot is taken");
        assert!(!breaker.is_usable(11_001));
        breaker.on_success(11_500);
        assert_eq!(breaker.state(11_500), BreakerState::Closed);
        assert!(breaker.claim(11_501) && breaker.claim(11_502));
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_a_lost_one_frees_the_slot() {
        let breaker = breaker();
        for _ in 0..5 {
            breaker.on_failure(0);
        }
        // A call from before it opened ends well: it stays open.
        breaker.on_success(5_000);
        assert_eq!(breaker.state(5_000), BreakerState::Open);
        assert!(breaker.claim(10_000));
        breaker.on_failure(10_100);
        assert_eq!(breaker.state(10_100), BreakerState::Open);
        assert_eq!(breaker.state(20_100), BreakerState::HalfOpen);
        // A probe that never reports back does not block the next for ever.
        assert!(breaker.claim(20_100));
        assert!(!breaker.claim(25_000));
        assert!(breaker.claim(30_100));
    }

    #[test]
    fn opens_on_the_error_rate_over_enough_calls() {
        let breaker = breaker();
        for call in 0..10u64 {
            if call % 2 == 1 {
                breaker.on_failure(call);
            } else {
                breaker.on_success(call);
            }
        }
        assert_eq!(breaker.state(10), BreakerState::Open, "5 of 10 failed");
        let breaker = self::breaker();
        for call in 0..10u64 {
            if call % 3 == 0 {
                breaker.on_failure(call);
            } else {
                breaker.on_success(call);
            }
        }
        assert_eq!(breaker.state(10), BreakerState::Closed, "4 of 10 failed");
    }

    #[test]
    fn a_window_forgets_old_calls() {
        let breaker = breaker();
        for call in 0..9u64 {
            breaker.on_failure(call * 10_000);
            breaker.on_success(call * 10_000 + 1);
        }
        assert_eq!(breaker.state(90_000), BreakerState::Closed);
    }

    #[test]
    fn a_cooldown_holds_calls_until_it_ends() {
        let breaker = breaker();
        breaker.cool_down(5_000);
        assert!(breaker.is_cooling_down(4_999));
        assert!(!breaker.claim(4_999));
        assert_eq!(breaker.usable_at_ms(1_000), 5_000);
        assert!(breaker.claim(5_000));
        assert_eq!(
            breaker.state(1_000),
            BreakerState::Closed,
            "a 429 is no failure"
        );
    }

    #[test]
    fn opened_by_a_peer_it_stays_open_until_then() {
        let breaker = breaker();
        breaker.open_until(8_000, 1_000);
        assert_eq!(breaker.state(7_999), BreakerState::Open);
        // Never beyond one open period (10 s) from now.
        let far = Breaker::new(BreakerPolicy::default());
        far.open_until(u64::MAX, 1_000);
        assert_eq!(far.state(11_000), BreakerState::HalfOpen);
        assert_eq!(breaker.opened_here_until_ms(1_000), None, "not echoed back");
        assert_eq!(breaker.state(8_000), BreakerState::HalfOpen);
        breaker.open_until(500, 1_000);
        assert_eq!(
            breaker.state(7_999),
            BreakerState::Open,
            "an older report changes nothing"
        );
        // Its own probe failing opens it here: that is this node's to tell.
        assert!(breaker.claim(20_000));
        breaker.on_failure(20_000);
        assert_eq!(breaker.opened_here_until_ms(20_000), Some(30_000));
    }
}
