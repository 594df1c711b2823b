//! This process's own count of one counter. The request path adds to it
//! directly (one small lock per counter, never the ledger's), and the store
//! flush and the gossip exchange each pick up what changed since they last
//! looked. It also keeps what every other node counted, as of the last
//! gossip merge, so a limit reads the cluster-wide value without the
//! ledger's lock.

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
    /// The other nodes' counts changed since the last exchange.
    others_moved: AtomicBool,
    /// A limit is close to this count: peers should hear of it first.
    urgent: AtomicBool,
}

#[derive(Debug, Default, Clone)]
struct OwnTally {
    earlier_runs: Buckets,
    this_run: Buckets,
    /// Every other node's count, as of the last merge.
    other_nodes: Buckets,
    /// This node's count as it last went to gossip, and the cluster's then.
    own_at_sync: Buckets,
    cluster_at_sync: Buckets,
}

impl OwnTally {
    fn own(&self) -> Buckets {
        self.earlier_runs.plus(&self.this_run)
    }
}

/// What a limit needs to split the headroom left among the nodes that
/// use it: see [`OwnCounter::sync_view`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncView {
    /// The cluster's count at the last gossip exchange.
    pub cluster_at_sync: Buckets,
    /// What this node counted since.
    pub own_since_sync: Buckets,
}

impl OwnCounter {
    pub(super) fn new(key: CounterKey) -> Self {
        OwnCounter {
            key,
            tally: Mutex::new(OwnTally::default()),
            unsaved: AtomicBool::new(false),
            unpublished: AtomicBool::new(false),
            others_moved: AtomicBool::new(false),
            urgent: AtomicBool::new(false),
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
        self.add_in(amount, unix_ms, unix_ms);
    }

    /// Counts `amount`, at `now_ms`, in the bucket `bucket_ms` falls in: a
    /// late correction to an earlier count lands where that count did.
    /// Nothing is counted once that bucket has left the window.
    pub fn add_in(&self, amount: u64, bucket_ms: u64, now_ms: u64) {
        if amount == 0 {
            return;
        }
        let window = self.key.window();
        let added = Buckets::new(window, window.epoch(bucket_ms), amount).at(window.epoch(now_ms));
        if added == Buckets::default() {
            return;
        }
        {
            let mut tally = self.lock();
            tally.this_run = tally.this_run.plus(&added);
        }
        self.changed();
    }

    /// Every node's count of this counter, bucket by bucket: this node's
    /// exact figure and the others' as of the last gossip merge.
    pub fn cluster_buckets(&self) -> Buckets {
        let tally = self.lock();
        tally.own().plus(&tally.other_nodes)
    }

    /// What the other nodes have counted, as the ledger merged it.
    pub(super) fn set_other_nodes(&self, other_nodes: Buckets) {
        self.lock().other_nodes = other_nodes;
        self.others_moved.store(true, Ordering::Release);
    }

    /// The counts a node needs to take no more than its share of what was
    /// left at the last exchange: between exchanges the nodes cannot see
    /// each other's requests, so each holds to a part of the headroom.
    pub fn sync_view(&self) -> SyncView {
        let tally = self.lock();
        SyncView {
            cluster_at_sync: tally.cluster_at_sync.clone(),
            own_since_sync: tally.own().minus(&tally.own_at_sync),
        }
    }

    /// Whether `need` more fits this node's share of what was left of `limit`
    /// at the last gossip exchange, split evenly among the live nodes. Between
    /// exchanges the nodes cannot see each other's requests; holding each to
    /// its share keeps a burst spread over several nodes from taking the limit
    /// several times over. A node alone has it all, and a node that has taken
    /// nothing since the last exchange may always take one request the
    /// cluster-wide figure allows, so a request larger than a share is not
    /// refused for ever and a node whose peers are idle still goes on.
    ///
    /// `cluster_at_sync` is the limited figure at the last exchange: this
    /// counter's own, or what it is one part of.
    pub fn within_share(
        &self,
        cluster_at_sync: &Buckets,
        limit: u64,
        need: u64,
        peers: u64,
        now_ms: u64,
    ) -> bool {
        if peers == 0 {
            return true;
        }
        let view = self.sync_view();
        let taken = view.own_since_sync.value(now_ms);
        if taken == 0 {
            return true;
        }
        let share = limit
            .saturating_sub(cluster_at_sync.value(now_ms))
            .div_ceil(peers + 1);
        let wanted = taken.saturating_add(need);
        if wanted.saturating_mul(2) > share {
            // Half the share taken: the next exchange should carry these
            // counts, for a fresh share.
            self.mark_urgent();
        }
        wanted <= share
    }

    /// Takes in what this node's earlier runs counted, as far as learned,
    /// if it is more than already known. Returns whether it was.
    pub(super) fn fold_earlier_runs(&self, earlier: &Buckets) -> bool {
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
        Self::tally_of(&self.lock())
    }

    fn tally_of(tally: &OwnTally) -> Tally {
        Tally {
            total: tally.own(),
            earlier_runs: tally.earlier_runs.clone(),
        }
    }

    /// The tally, if it changed since the store last took it.
    pub(super) fn take_unsaved(&self) -> Option<Tally> {
        self.unsaved
            .swap(false, Ordering::AcqRel)
            .then(|| self.tally())
    }

    /// Whether it changed since gossip last took it.
    pub(super) fn is_unpublished(&self) -> bool {
        self.unpublished.load(Ordering::Acquire)
    }

    /// Asks gossip to publish this count before counts no limit is near.
    pub fn mark_urgent(&self) {
        self.urgent.store(true, Ordering::Release);
    }

    pub(super) fn is_urgent(&self) -> bool {
        self.urgent.load(Ordering::Acquire)
    }

    /// The tally, as gossip publishes it now. The counts as of now are
    /// also what the others will know of this node after this exchange:
    /// the point limits split their headroom from.
    pub(super) fn take_published(&self) -> Tally {
        self.unpublished.store(false, Ordering::Release);
        self.others_moved.store(false, Ordering::Release);
        self.urgent.store(false, Ordering::Release);
        let mut tally = self.lock();
        Self::sync(&mut tally);
        Self::tally_of(&tally)
    }

    /// For a count with nothing new to publish: moves the sync point if
    /// the others' counts moved (windows slide by themselves when read).
    /// A count waiting to be published keeps its old point, since peers
    /// do not know what it added yet.
    pub(super) fn resync_if_others_moved(&self) {
        if self.others_moved.swap(false, Ordering::AcqRel) {
            Self::sync(&mut self.lock());
        }
    }

    fn sync(tally: &mut OwnTally) {
        tally.own_at_sync = tally.own();
        tally.cluster_at_sync = tally.own_at_sync.plus(&tally.other_nodes);
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
    use chorus_proto::counter::{CounterKind, Window};

    use super::*;

    #[test]
    fn counts_this_run_on_top_of_earlier_runs() {
        let counter = OwnCounter::new(CounterKey::new(CounterKind::Calls, "p/m"));
        counter.add(2, 1_000);
        assert!(counter.fold_earlier_runs(&Buckets::new(Window::Lifetime, 0, 10)));
        assert!(
            !counter.fold_earlier_runs(&Buckets::new(Window::Lifetime, 0, 4)),
            "an older figure of the earlier runs adds nothing"
        );
        let tally = counter.tally();
        assert_eq!(
            (tally.total.newest(), tally.earlier_runs.newest()),
            (12, 10)
        );
        assert_eq!(counter.take_unsaved(), Some(tally.clone()));
        assert_eq!(counter.take_unsaved(), None);
        assert!(counter.is_unpublished());
        assert_eq!(counter.take_published(), tally);
        assert!(!counter.is_unpublished());
    }

    #[test]
    fn a_late_correction_lands_in_the_bucket_of_what_it_corrects() {
        let day = 86_400_000;
        let counter = OwnCounter::new(CounterKey::new(CounterKind::SpendMicrosDay, "key:k"));
        counter.add(10, 5 * day);
        counter.add_in(4, 5 * day, 6 * day + 1);
        let total = counter.tally().total;
        assert_eq!((total.epoch(), total.counts()), (6, &[0, 14][..]));
        counter.add_in(7, 4 * day, 6 * day + 2);
        assert_eq!(
            counter.tally().total.counts(),
            [0, 14],
            "out of the window: dropped"
        );
        counter.set_other_nodes(Buckets::new(Window::Day, 6, 5));
        assert_eq!(counter.cluster_buckets().counts(), [5, 14]);
    }

    #[test]
    fn minute_counts_land_in_their_slice_and_leave_after_a_minute() {
        let counter = OwnCounter::new(CounterKey::new(CounterKind::CallsMinute, "p/m"));
        let minute = 60_000;
        counter.add(3, 5 * minute);
        counter.add(1, 5 * minute + 3_000);
        let total = counter.tally().total;
        assert_eq!((total.epoch(), total.counts()), (151, &[1, 3][..]));
        assert_eq!(total.value(6 * minute + 1_999), 4);
        assert_eq!(total.value(6 * minute + 2_000), 1);
    }
}
