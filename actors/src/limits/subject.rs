//! One key's or one team's limits as this node holds them: its counters in
//! the ledger (requests and tokens per sliding minute, spend per UTC day
//! and month, each with what this node counted exactly and what the other
//! nodes counted as of the last gossip merge), the requests it has in
//! flight here, and what the other live nodes have in flight for it.
//!
//! A check and the reservation that follows it happen under the subject's
//! own lock, so two requests on one node can never both take the last
//! unit of a limit; across nodes the figures are as fresh as gossip.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chorus_proto::admin::Limits;
use chorus_proto::counter::{Buckets, CounterKey, CounterKind};

use super::window::{wait_ms, MinuteFigures};
use super::{Period, RateHeaders, RateKind, Refusal, Reservation};
use crate::ledger::{Ledger, OwnCounter};

/// A key's or team's state: see the module doc.
#[derive(Debug)]
pub struct Subject {
    /// `key:<id>` or `team:<id>`, the subject of its counters.
    pub id: String,
    /// How error messages name it: `this key`, `team `research``.
    pub label: String,
    lock: Mutex<()>,
    requests: Arc<OwnCounter>,
    tokens: Reserved,
    spend_day: Reserved,
    spend_month: Reserved,
    in_flight: AtomicU64,
    /// Held to a `max_parallel`: only then do peers need its figure.
    parallel_limited: AtomicBool,
    /// In flight on the other live nodes, as last gossiped.
    pub(super) others_in_flight: AtomicU64,
    /// When a request last used it, for the idle sweep.
    pub(super) last_used_ms: AtomicU64,
}

/// One quantity a request reserves an estimate of at admission (tokens
/// per minute, spend per day or month): what requests used once they
/// ended, and the reservations opened and closed. A reservation counts
/// until its request ends, or until its node is known dead: a node
/// killed mid-request leaves nothing held for good.
#[derive(Debug)]
struct Reserved {
    used: Arc<OwnCounter>,
    held: Arc<OwnCounter>,
    freed: Arc<OwnCounter>,
}

impl Reserved {
    fn new(ledger: &Ledger, subject: &str, [used, held, freed]: [CounterKind; 3]) -> Self {
        let counter = |kind| ledger.counter(CounterKey::new(kind, subject));
        Reserved {
            used: counter(used),
            held: counter(held),
            freed: counter(freed),
        }
    }

    /// Cluster-wide: what was used, plus what live runs hold reserved.
    fn buckets(&self) -> Buckets {
        self.used
            .cluster_buckets()
            .plus(&self.held.cluster_buckets())
            .minus(&self.freed.cluster_buckets())
    }

    /// See [`OwnCounter::within_share`]: what this node took since the
    /// last exchange is what it reserved since, out of what was left of
    /// `limit` then.
    fn within_share(&self, limit: u64, need: u64, peers: u64, now_ms: u64) -> bool {
        let at_sync = |counter: &OwnCounter| counter.sync_view().cluster_at_sync;
        let cluster_at_sync = at_sync(&self.used)
            .plus(&at_sync(&self.held))
            .minus(&at_sync(&self.freed));
        self.held
            .within_share(&cluster_at_sync, limit, need, peers, now_ms)
    }

    fn reserve(&self, amount: u64, now_ms: u64) {
        self.held.add(amount, now_ms);
    }

    /// Replaces a reservation of `reserved` made at `reserved_at_ms` with
    /// what was `used`: up to the reservation in the bucket it was made
    /// in, anything beyond it now.
    fn settle(&self, reserved: u64, used: u64, reserved_at_ms: u64, now_ms: u64) {
        let within = used.min(reserved);
        self.used.add_in(within, reserved_at_ms, now_ms);
        self.used.add(used - within, now_ms);
        self.freed.add_in(reserved, reserved_at_ms, now_ms);
    }
}

/// Until the next exchange brings a fresh share, roughly.
const SHARE_RETRY_MS: u64 = 1_000;
/// A request in flight usually ends within this.
const PARALLEL_RETRY_MS: u64 = 1_000;
/// The wait when none can be worked out: only for a need above its limit,
/// which is refused as too large before it gets here.
const MINUTE_MS: u64 = 60_000;

impl Subject {
    pub(super) fn new(id: String, label: String, ledger: &Ledger) -> Self {
        use CounterKind::*;
        Subject {
            requests: ledger.counter(CounterKey::new(RequestsMinute, id.clone())),
            tokens: Reserved::new(
                ledger,
                &id,
                [TokensMinute, TokensMinuteHeld, TokensMinuteFreed],
            ),
            spend_day: Reserved::new(
                ledger,
                &id,
                [SpendMicrosDay, SpendMicrosDayHeld, SpendMicrosDayFreed],
            ),
            spend_month: Reserved::new(
                ledger,
                &id,
                [
                    SpendMicrosMonth,
                    SpendMicrosMonthHeld,
                    SpendMicrosMonthFreed,
                ],
            ),
            id,
            label,
            lock: Mutex::new(()),
            in_flight: AtomicU64::new(0),
            parallel_limited: AtomicBool::new(false),
            others_in_flight: AtomicU64::new(0),
            last_used_ms: AtomicU64::new(0),
        }
    }

    /// Held while checking and reserving.
    pub(super) fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether a `max_parallel` has held it since it was made, so its
    /// requests in flight are worth gossiping.
    pub fn is_parallel_limited(&self) -> bool {
        self.parallel_limited.load(Ordering::Acquire)
    }

    /// Half of a limit used: peers should hear of this subject's counts
    /// before those of subjects no limit is near.
    fn note_use(&self, used: u64, limit: u64) {
        if used.saturating_mul(2) >= limit {
            self.requests.mark_urgent();
        }
    }

    /// Nothing in flight, no request for `idle_after_ms`, and no
    /// admission under way (which holds the lock from lookup to reserve).
    pub(super) fn is_idle(&self, idle_after_ms: u64, now_ms: u64) -> bool {
        let Ok(_admissions_wait) = self.lock.try_lock() else {
            return false;
        };
        self.in_flight() == 0
            && now_ms.saturating_sub(self.last_used_ms.load(Ordering::Acquire)) >= idle_after_ms
    }

    /// Spend in micro-dollars (reserved and settled) today and this month.
    pub fn spend_micros(&self, now_ms: u64) -> (u64, u64) {
        let day = self.spend_day.buckets().value(now_ms);
        let month = self.spend_month.buckets().value(now_ms);
        (day, month)
    }

    /// Refuses `reservation` if it does not fit one of `limits`; notes the
    /// rate figures in `headers` when it does. Call under [`Self::lock`].
    /// `peers`: the other live nodes, which may be admitting requests
    /// for this subject too.
    pub(super) fn check(
        &self,
        limits: &Limits,
        reservation: Reservation,
        peers: u64,
        now_ms: u64,
        headers: &mut RateHeaders,
    ) -> Result<(), Refusal> {
        if let Some(rpm) = limits.rpm {
            let buckets = self.requests.cluster_buckets();
            let figures = MinuteFigures::of(&buckets, rpm, now_ms);
            let wait = if !figures.fits(1) {
                Some(wait_ms(&buckets, rpm, 1, now_ms).unwrap_or(MINUTE_MS))
            } else if !self.requests.within_share(
                &self.requests.sync_view().cluster_at_sync,
                rpm,
                1,
                peers,
                now_ms,
            ) {
                Some(SHARE_RETRY_MS)
            } else {
                None
            };
            if let Some(wait) = wait {
                return Err(self.rate_limited(RateKind::Requests, rpm, wait, figures, headers));
            }
            self.note_use(figures.used.saturating_add(1), rpm);
            headers.note_requests(MinuteFigures {
                remaining: figures.remaining - 1,
                ..figures
            });
        }
        if let Some(tpm) = limits.tpm {
            let need = reservation.tokens;
            if need > tpm {
                return Err(Refusal::TooLarge {
                    label: self.label.clone(),
                    limit: tpm,
                    need,
                });
            }
            let buckets = self.tokens.buckets();
            let figures = MinuteFigures::of(&buckets, tpm, now_ms);
            let wait = if !figures.fits(need) {
                Some(wait_ms(&buckets, tpm, need, now_ms).unwrap_or(MINUTE_MS))
            } else if !self.tokens.within_share(tpm, need, peers, now_ms) {
                Some(SHARE_RETRY_MS)
            } else {
                None
            };
            if let Some(wait) = wait {
                return Err(self.rate_limited(RateKind::Tokens, tpm, wait, figures, headers));
            }
            self.note_use(figures.used.saturating_add(need), tpm);
            headers.note_tokens(MinuteFigures {
                remaining: figures.remaining - need,
                ..figures
            });
        }
        if let Some(max_parallel) = limits.max_parallel {
            self.parallel_limited.store(true, Ordering::Release);
            let in_flight = self.in_flight() + self.others_in_flight.load(Ordering::Acquire);
            if in_flight >= max_parallel {
                return Err(Refusal::RateLimited {
                    kind: RateKind::Parallel,
                    label: self.label.clone(),
                    limit: max_parallel,
                    retry_after_ms: PARALLEL_RETRY_MS,
                    headers: headers.clone(),
                });
            }
        }
        let (day, month) = self.spend_micros(now_ms);
        let budgets = [
            (limits.budget_daily_micros, day, Period::Day),
            (limits.budget_monthly_micros, month, Period::Month),
        ];
        for (budget, spent, period) in budgets {
            let Some(budget) = budget else {
                continue;
            };
            let need = reservation.cost_micros;
            if spent.saturating_add(need) > budget {
                return Err(Refusal::OverBudget {
                    period,
                    label: self.label.clone(),
                    budget_micros: budget,
                    spent_micros: spent,
                });
            }
            self.note_use(spent.saturating_add(need), budget);
            let spend = match period {
                Period::Day => &self.spend_day,
                Period::Month => &self.spend_month,
            };
            if !spend.within_share(budget, need, peers, now_ms) {
                return Err(Refusal::RateLimited {
                    kind: RateKind::BudgetShare(period),
                    label: self.label.clone(),
                    limit: budget,
                    retry_after_ms: SHARE_RETRY_MS,
                    headers: headers.clone(),
                });
            }
        }
        Ok(())
    }

    fn rate_limited(
        &self,
        kind: RateKind,
        limit: u64,
        retry_after_ms: u64,
        figures: MinuteFigures,
        headers: &RateHeaders,
    ) -> Refusal {
        let mut headers = headers.clone();
        match kind {
            RateKind::Requests => headers.note_requests(figures),
            RateKind::Tokens => headers.note_tokens(figures),
            RateKind::Parallel | RateKind::BudgetShare(_) => {}
        }
        Refusal::RateLimited {
            kind,
            label: self.label.clone(),
            limit,
            retry_after_ms,
            headers,
        }
    }

    /// Counts an admitted request and what it reserves. Tokens and spend
    /// are counted whatever the limits, so a limit added later holds
    /// against what was already used. Call under [`Self::lock`], after
    /// [`Self::check`].
    pub(super) fn reserve(&self, reservation: Reservation, now_ms: u64) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_used_ms.store(now_ms, Ordering::Release);
        self.requests.add(1, now_ms);
        self.tokens.reserve(reservation.tokens, now_ms);
        self.spend_day.reserve(reservation.cost_micros, now_ms);
        self.spend_month.reserve(reservation.cost_micros, now_ms);
    }

    /// Replaces what a finished request reserved with what it `used`.
    pub(super) fn settle(
        &self,
        reserved: Reservation,
        used: Reservation,
        reserved_at_ms: u64,
        now_ms: u64,
    ) {
        let at = reserved_at_ms;
        self.tokens.settle(reserved.tokens, used.tokens, at, now_ms);
        let (reserved, used) = (reserved.cost_micros, used.cost_micros);
        self.spend_day.settle(reserved, used, at, now_ms);
        self.spend_month.settle(reserved, used, at, now_ms);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.last_used_ms.store(now_ms, Ordering::Release);
    }
}
