//! A deployment's retry budget: during an outage every request would be
//! retried, multiplying the load on upstreams that are already failing.
//! Each call sent to the deployment earns a fifth of a retry, and a small
//! steady allowance keeps a quiet deployment able to retry at all; a
//! retry after the deployment failed spends one. So retries stay under
//! about 20 % of its calls, plus one a second.

use std::sync::{Mutex, MutexGuard};

/// What each call earns, in thousandths of a retry.
const EARNED_PER_CALL: u64 = 200;
/// What time adds, in thousandths of a retry per second.
const EARNED_PER_SECOND: u64 = 1_000;
const RETRY_COST: u64 = 1_000;
/// Savings stop here, so a long calm does not pay for a long outage.
const MAX_BALANCE: u64 = 10 * RETRY_COST;

#[derive(Debug)]
pub struct RetryBudget {
    inner: Mutex<Balance>,
}

#[derive(Debug)]
struct Balance {
    /// In thousandths of a retry.
    balance: u64,
    /// When time last added to it.
    as_of_ms: u64,
}

impl Default for RetryBudget {
    /// Starts full: a deployment's first failures may be retried.
    fn default() -> Self {
        RetryBudget {
            inner: Mutex::new(Balance {
                balance: MAX_BALANCE,
                as_of_ms: 0,
            }),
        }
    }
}

impl RetryBudget {
    fn lock(&self, now_ms: u64) -> MutexGuard<'_, Balance> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now_ms.saturating_sub(inner.as_of_ms);
        let earned = elapsed.saturating_mul(EARNED_PER_SECOND) / 1_000;
        inner.balance = inner.balance.saturating_add(earned).min(MAX_BALANCE);
        inner.as_of_ms = inner.as_of_ms.max(now_ms);
        inner
    }

    /// A call went to the deployment.
    pub fn earn(&self, now_ms: u64) {
        let mut inner = self.lock(now_ms);
        inner.balance = (inner.balance + EARNED_PER_CALL).min(MAX_BALANCE);
    }

    /// Whether a retry is left, without taking it.
    pub fn has_retry(&self, now_ms: u64) -> bool {
        self.lock(now_ms).balance >= RETRY_COST
    }

    /// Takes one retry, or says there is none left.
    pub fn spend(&self, now_ms: u64) -> bool {
        let mut inner = self.lock(now_ms);
        match inner.balance.checked_sub(RETRY_COST) {
            Some(left) => {
                inner.balance = left;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_near_a_fifth_of_calls_in_an_outage() {
        let budget = RetryBudget::default();
        let (mut calls, mut retries) = (0, 0);
        // 1,000 calls over one second, each failing and asking for a retry.
        for call in 0..1_000u64 {
            let now = call;
            budget.earn(now);
            calls += 1;
            if budget.spend(now) {
                retries += 1;
            }
        }
        // 10 saved, 200 earned by calls, 1 by time.
        assert_eq!(calls, 1_000);
        assert!((205..=212).contains(&retries), "{retries} retries");
    }

    #[test]
    fn a_quiet_deployment_earns_retries_with_time() {
        let budget = RetryBudget::default();
        while budget.spend(0) {}
        assert!(!budget.spend(999));
        assert!(budget.spend(1_000), "a second later, one more");
        assert!(!budget.spend(1_000));
    }
}
