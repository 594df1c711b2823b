//! Rate limits and budgets of virtual keys and teams, held across the
//! cluster. A request is admitted against its key and, when it has one,
//! its team: requests per minute, tokens per minute, requests in flight,
//! and spend per UTC day and month. Admission reserves an estimate (the
//! prompt's tokens plus the most the reply may take, at the alias's
//! highest price) in every limit it is held to; an [`Admission`] guard
//! replaces the estimate with what the call really used when it is
//! settled, and keeps the estimate when it is dropped unsettled.
//!
//! Counts live in the ledger, so they are gossiped, stored and restored
//! like every other counter: every node sees every node's requests, and a
//! node killed mid-request leaves its reservations counted — budgets can
//! be over-counted by work in flight, never under-counted. Admission never
//! waits on a mailbox: it reads each subject's counters (this node's exact
//! count plus the others' as of the last gossip merge) under that
//! subject's own lock.
//!
//! Each active key or team is a [`Subject`], made on first use and kept
//! by a [`KeyActor`] until idle (its counts stay in the ledger, so the
//! next use picks them up again). Everything on the request path —
//! checking, reserving, settling — is an update under the subject's lock
//! that the request makes itself; the actor only decides how long the
//! state stays (see the `actor` module).

mod actor;
pub(crate) mod estimate;
mod subject;
mod window;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use chorus_proto::admin::Limits;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use ractor::ActorRef;

use crate::clock::unix_millis;
use crate::ledger::{Ledger, RunId};
pub use actor::{Idleness, KeyActor, LimitsActor, LimitsArgs, LimitsMsg};
pub use estimate::reservation;
pub use subject::Subject;
pub use window::{openai_duration, MinuteFigures};

/// Whose limits a request is held to: a key, or its team.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    /// `key:<id>` or `team:<id>`.
    pub subject: &'a str,
    /// The team's name for a team, `None` for the key: how messages name
    /// the subject (`team `research``, `this key`).
    pub team: Option<&'a str>,
    pub limits: &'a Limits,
}

/// What a request takes from its limits: tokens and micro-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reservation {
    pub tokens: u64,
    pub cost_micros: u64,
}

/// Which limit refused a request for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    Requests,
    Tokens,
    Parallel,
    /// The budget is not spent, but this node's share of what is left of
    /// it is, until the next gossip exchange.
    BudgetShare(Period),
}

/// A budget's period: the UTC day or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn adjective(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// Over a rate limit for now: 429, with how long to wait.
    RateLimited {
        kind: RateKind,
        label: String,
        limit: u64,
        retry_after_ms: u64,
        headers: RateHeaders,
    },
    /// Over a budget: 402.
    OverBudget {
        period: Period,
        label: String,
        budget_micros: u64,
        spent_micros: u64,
    },
    /// The request alone reserves more tokens than the per-minute limit:
    /// waiting will not help.
    TooLarge {
        label: String,
        limit: u64,
        need: u64,
    },
}

/// The figures behind the `x-ratelimit-*` headers: for requests and for
/// tokens, the limit with the least left among those the request is held to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<MinuteFigures>,
    pub tokens: Option<MinuteFigures>,
}

impl RateHeaders {
    fn note_requests(&mut self, figures: MinuteFigures) {
        Self::keep_tighter(&mut self.requests, figures);
    }

    fn note_tokens(&mut self, figures: MinuteFigures) {
        Self::keep_tighter(&mut self.tokens, figures);
    }

    fn keep_tighter(slot: &mut Option<MinuteFigures>, figures: MinuteFigures) {
        if slot.is_none_or(|kept| figures.remaining < kept.remaining) {
            *slot = Some(figures);
        }
    }
}

/// The node's subjects, by id. Cheap to clone.
#[derive(Clone)]
pub struct Limiter(Arc<Inner>);

struct Inner {
    ledger: Ledger,
    subjects: DashMap<String, Arc<Subject>>,
    /// In flight per subject on each other run, as gossiped.
    remote_in_flight: Mutex<RemoteLoad>,
    /// Spawns a `KeyActor` for each new subject; without one (no actors
    /// running), subjects stay until released.
    keeper: Mutex<Option<ActorRef<LimitsMsg>>>,
}

/// Subject → run → (in flight, when last seen).
type RemoteLoad = HashMap<String, HashMap<RunId, (u64, u64)>>;

/// A run's in-flight figure not refreshed for this long is dropped: the
/// run stopped publishing it (it crashed, or its gossip restarted), and a
/// figure can only ever hold requests back.
pub const REMOTE_LOAD_TTL_MS: u64 = 5_000;

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("subjects", &self.0.subjects.len())
            .finish_non_exhaustive()
    }
}

impl Limiter {
    pub fn new(ledger: Ledger) -> Self {
        Limiter(Arc::new(Inner {
            ledger,
            subjects: DashMap::new(),
            remote_in_flight: Mutex::new(HashMap::new()),
            keeper: Mutex::new(None),
        }))
    }

    /// Has `keeper` spawn the actor of each subject from now on.
    pub fn attach(&self, keeper: ActorRef<LimitsMsg>) {
        *self.0.keeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(keeper);
    }

    fn subject(&self, id: &str, team: Option<&str>) -> Arc<Subject> {
        if let Some(subject) = self.0.subjects.get(id) {
            return subject.clone();
        }
        let subject = match self.0.subjects.entry(id.to_owned()) {
            Entry::Occupied(held) => held.get().clone(),
            Entry::Vacant(vacant) => {
                let label = match team {
                    Some(name) => format!("team `{name}`"),
                    None => "this key".to_owned(),
                };
                let subject = Arc::new(Subject::new(id.to_owned(), label, &self.0.ledger));
                vacant.insert(subject.clone());
                let keeper = self.0.keeper.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(keeper) = keeper.as_ref() {
                    // A stopped keeper is being restarted: the new one
                    // takes over every held subject.
                    let _ = keeper.cast(LimitsMsg::Hold(subject.clone()));
                }
                subject
            }
        };
        let remote = self.remote_in_flight_of(id);
        subject.others_in_flight.store(remote, Ordering::Release);
        subject
    }

    /// Admits a request held to `holders` (key first, then team), reserving
    /// `reservation` in each, or says which limit refuses it. All holders
    /// are checked before any is charged.
    pub fn admit(
        &self,
        holders: &[Holder<'_>],
        reservation: Reservation,
        now_ms: u64,
    ) -> Result<Admission, Refusal> {
        loop {
            let subjects: Vec<Arc<Subject>> = holders
                .iter()
                .map(|holder| self.subject(holder.subject, holder.team))
                .collect();
            // Keys before teams, always: no two admissions wait on each other.
            let locks: Vec<_> = subjects.iter().map(|subject| subject.lock()).collect();
            // A subject swept between the lookup and the lock is not the one
            // the next request will find: start again with the current ones.
            if !subjects.iter().all(|subject| self.holds(subject)) {
                continue;
            }
            let peers = self.0.ledger.live_peers();
            let mut headers = RateHeaders::default();
            for (holder, subject) in holders.iter().zip(&subjects) {
                subject.check(holder.limits, reservation, peers, now_ms, &mut headers)?;
            }
            for subject in &subjects {
                subject.reserve(reservation, now_ms);
            }
            drop(locks);
            return Ok(Admission {
                holds: subjects,
                reservation,
                reserved_at_ms: now_ms,
                headers,
                open: true,
            });
        }
    }

    /// Whether `subject` is the one held under its id.
    pub fn holds(&self, subject: &Arc<Subject>) -> bool {
        self.0
            .subjects
            .get(&subject.id)
            .is_some_and(|held| Arc::ptr_eq(&held, subject))
    }

    /// The subject `id`, if this node holds it.
    pub fn get(&self, id: &str) -> Option<Arc<Subject>> {
        self.0.subjects.get(id).map(|subject| subject.clone())
    }

    /// Requests in flight on this node for each held subject with a
    /// `max_parallel`: the figures peers need.
    pub fn local_in_flight(&self) -> Vec<(String, u64)> {
        self.0
            .subjects
            .iter()
            .filter(|subject| subject.is_parallel_limited())
            .map(|subject| (subject.id.clone(), subject.in_flight()))
            .collect()
    }

    /// What run `run` has in flight for `subject`, as it gossiped, seen at
    /// `now_ms`.
    pub fn note_remote_in_flight(&self, run: &RunId, subject: &str, in_flight: u64, now_ms: u64) {
        let mut remote = self.remote();
        let runs = remote.entry(subject.to_owned()).or_default();
        if in_flight == 0 {
            runs.remove(run);
        } else {
            runs.insert(run.clone(), (in_flight, now_ms));
        }
        self.refresh_others(subject, runs);
        if runs.is_empty() {
            remote.remove(subject);
        }
    }

    /// Forgets what runs no longer alive had in flight — their requests
    /// died with them — and figures not refreshed for [`REMOTE_LOAD_TTL_MS`].
    pub fn keep_remote_runs(&self, alive: impl Fn(&RunId) -> bool, now_ms: u64) {
        let mut remote = self.remote();
        remote.retain(|subject, runs| {
            let before = runs.len();
            runs.retain(|run, (_, seen_ms)| {
                alive(run) && now_ms.saturating_sub(*seen_ms) < REMOTE_LOAD_TTL_MS
            });
            if runs.len() != before {
                self.refresh_others(subject, runs);
            }
            !runs.is_empty()
        });
    }

    fn remote(&self) -> MutexGuard<'_, RemoteLoad> {
        self.0
            .remote_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn refresh_others(&self, subject: &str, runs: &HashMap<RunId, (u64, u64)>) {
        if let Some(held) = self.0.subjects.get(subject) {
            let total = runs.values().map(|(in_flight, _)| in_flight).sum();
            held.others_in_flight.store(total, Ordering::Release);
        }
    }

    fn remote_in_flight_of(&self, subject: &str) -> u64 {
        self.remote().get(subject).map_or(0, |runs| {
            runs.values().map(|(in_flight, _)| in_flight).sum()
        })
    }

    /// Every subject held now.
    pub fn held(&self) -> Vec<Arc<Subject>> {
        self.0
            .subjects
            .iter()
            .map(|subject| subject.clone())
            .collect()
    }

    /// Lets `subject` go if it is the one held under its id and has had
    /// nothing in flight and no request for `idle_after_ms`; its counts
    /// stay in the ledger, and the next request picks them up again.
    /// Returns whether it went.
    pub fn release_if_idle(&self, subject: &Arc<Subject>, idle_after_ms: u64, now_ms: u64) -> bool {
        self.0
            .subjects
            .remove_if(&subject.id, |_, held| {
                Arc::ptr_eq(held, subject) && held.is_idle(idle_after_ms, now_ms)
            })
            .is_some()
    }

    /// Lets `subject` go now, if it is the one held under its id.
    pub fn release(&self, subject: &Arc<Subject>) {
        self.0
            .subjects
            .remove_if(&subject.id, |_, held| Arc::ptr_eq(held, subject));
    }

    pub fn len(&self) -> usize {
        self.0.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.subjects.is_empty()
    }
}

/// A request's hold on its limits, from admission until it is settled or
/// dropped. Dropped unsettled — the request ended without a figure, or its
/// actor failed — it keeps what it reserved.
#[derive(Debug)]
pub struct Admission {
    holds: Vec<Arc<Subject>>,
    reservation: Reservation,
    reserved_at_ms: u64,
    headers: RateHeaders,
    open: bool,
}

impl Admission {
    /// The rate figures for the response headers.
    pub fn headers(&self) -> &RateHeaders {
        &self.headers
    }

    pub fn reservation(&self) -> Reservation {
        self.reservation
    }

    /// Replaces the reservation with what the request `used`.
    pub fn settle(mut self, used: Reservation, now_ms: u64) {
        self.close(used, now_ms);
    }

    fn close(&mut self, used: Reservation, now_ms: u64) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        for subject in &self.holds {
            subject.settle(self.reservation, used, self.reserved_at_ms, now_ms);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let reserved = self.reservation;
        self.close(reserved, unix_millis());
    }
}

#[cfg(test)]
mod tests;
