//! This process's own count of one counter. The request path adds to it
//! directly (one small lock per counter, never the ledger's), and the store
//! flush and the gossip exchange each pick up what changed since they last
//! looked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use chorus_proto::counter::{Buckets, CounterKey, Tally};

/// One counter as this node counts it: what its earlier runs counted, as
/// far as it has learned them (from its store or from peers), plus what
/// this process has counted since it started.
#[derive(Debug)]
pub struct OwnCounter {
    key: CounterKey,
    tally: Mutex<OwnTally>,
    unsaved: AtomicBool,
    unpublished: AtomicBool,
}

#[derive(Debug, Default, Clone, Copy)]
struct OwnTally {
    earlier_runs: Buckets,
    this_run: Buckets,
}

impl OwnCounter {
    pub(super) fn new(key: CounterKey) -> Self {
        OwnCounter {
            key,
            tally: Mutex::new(OwnTally::default()),
            unsaved: AtomicBool::new(false),
            unpublished: AtomicBool::new(false),
        }
    }

    pub fn key(&self) -> &CounterKey {
        &self.key
    }

    /// A poisoned lock only means a thread panicked between two plain
    /// integer updates; the counts are still good.
    fn lock(&self) -> MutexGuard<'_, OwnTally> {
        self.tally
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self) {
        self.unsaved.store(true, Ordering::Release);
        self.unpublished.store(true, Ordering::Release);
    }

    /// Counts `amount` at `unix_ms`, in the bucket of the counter's window.
    pub fn add(&self, amount: u64, unix_ms: u64) {
        if amount == 0 {
            return;
        }
        let epoch = self.key.window().epoch(unix_ms);
        {
            let mut tally = self.lock();
            let mut this_run = tally.this_run.at(epoch);
            this_run.current = this_run.current.saturating_add(amount);
            tally.this_run = this_run;
        }
        self.changed();
    }

    /// Takes in what this node's earlier runs counted, as far as learned,
    /// if it is more than already known. Returns whether it was.
    pub(super) fn fold_earlier_runs(&self, earlier: Buckets) -> bool {
        let folded = {
            let mut tally = self.lock();
            if tally.earlier_runs.covers(earlier) {
                false
            } else {
                tally.earlier_runs = tally.earlier_runs.merge(earlier);
                true
            }
        };
        if folded {
            self.changed();
        }
        folded
    }

    /// What this run contributes: every run's count, and which part of it
    /// came from the earlier runs.
    pub fn tally(&self) -> Tally {
        let tally = *self.lock();
        Tally {
            total: tally.earlier_runs.plus(tally.this_run),
            earlier_runs: tally.earlier_runs,
        }
    }

    /// The tally, if it changed since the store last took it.
    pub(super) fn take_unsaved(&self) -> Option<Tally> {
        self.unsaved
            .swap(false, Ordering::AcqRel)
            .then(|| self.tally())
    }

    /// The tally, if it changed since gossip last took it.
    pub(super) fn take_unpublished(&self) -> Option<Tally> {
        self.unpublished
            .swap(false, Ordering::AcqRel)
            .then(|| self.tally())
    }

    /// Has gossip take the tally again, changed or not.
    pub(super) fn mark_unpublished(&self) {
        self.unpublished.store(true, Ordering::Release);
    }

    /// Puts a failed save back, so the next flush retries it.
    pub(super) fn mark_unsaved(&self) {
        self.unsaved.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use chorus_proto::counter::CounterKind;

    use super::*;

    #[test]
    fn counts_this_run_on_top_of_earlier_runs() {
        let counter = OwnCounter::new(CounterKey::new(CounterKind::Calls, "p/m"));
        counter.add(2, 1_000);
        assert!(counter.fold_earlier_runs(Buckets::new(0, 10)));
        assert!(
            !counter.fold_earlier_runs(Buckets::new(0, 4)),
            "an older figure of the earlier runs adds nothing"
        );
        let tally = counter.tally();
        assert_eq!((tally.total.current, tally.earlier_runs.current), (12, 10));
        assert_eq!(counter.take_unsaved(), Some(tally));
        assert_eq!(counter.take_unsaved(), None);
        assert_eq!(counter.take_unpublished(), Some(tally));
    }

    #[test]
    fn windowed_counts_move_to_the_next_bucket() {
        let counter = OwnCounter::new(CounterKey::new(CounterKind::CallsMinute, "p/m"));
        counter.add(3, 60_000 * 5);
        counter.add(1, 60_000 * 6 + 10);
        let total = counter.tally().total;
        assert_eq!((total.epoch, total.current, total.previous), (6, 1, 3));
    }
}
