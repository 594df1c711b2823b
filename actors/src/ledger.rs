//! The node's view of every cluster counter: this run's own tally of each
//! counter, and the tallies of every other run, of this node or another,
//! learned from gossip and the store. A counter's cluster-wide value is
//! the sum over nodes of what each node's runs counted (see the `runs` module).
//!
//! A run is one process of a node, `node_id` and `generation` (its start
//! stamp, increasing across restarts). A restarted node goes on from what
//! its earlier runs counted — from its store, and from peers as their
//! figures arrive — and says in every tally how much of it it folded in,
//! so peers can forget an earlier run once it is accounted for and the
//! number of tallies stays bounded however often nodes restart.
//!
//! The request path counts through an [`OwnCounter`] handle and never
//! takes the ledger's lock; the store flush ([`LedgerActor`]) and the
//! gossip exchange each take what changed since they last looked. Before
//! an answer leaves, the request waits for its counts to be written
//! ([`Ledger::committed`]), one write for every request waiting then.

mod commit;
mod own;
mod runs;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chorus_proto::counter::{Buckets, CounterKey, CounterKind, Tally};

use commit::Commits;
pub use own::{OwnCounter, SyncView};
use runs::Runs;
pub use store::{LedgerActor, LedgerArgs, LedgerMsg, LedgerStore, StoreChange, StoreError};

/// A node's stable identity in the cluster (`[cluster] node_id`).
pub type NodeId = String;

/// One run (process) of one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId {
    pub node_id: NodeId,
    /// When the run started, in ms since the Unix epoch, and never below
    /// the previous run's (a persisted monotonic value).
    pub generation: u64,
}

/// One run's tally of one counter, as gossiped and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub key: CounterKey,
    pub run: RunId,
    pub tally: Tally,
}

/// This run's counters of one subject (a deployment, a key, a team), which
/// gossip publishes together.
pub struct OwnSubject {
    pub subject: String,
    counters: Vec<Arc<OwnCounter>>,
}

impl OwnSubject {
    /// Whether a limit close to one of its counts asked for it to go out
    /// before subjects no limit is near.
    pub fn is_urgent(&self) -> bool {
        self.counters.iter().any(|counter| counter.is_urgent())
    }

    /// Every counter's tally, changed or not (one entry carries them all),
    /// taken as published: what peers know of this run from now on.
    pub fn take(&self) -> Vec<(CounterKind, Tally)> {
        self.counters
            .iter()
            .map(|counter| (counter.key().kind, counter.take_published()))
            .collect()
    }
}

/// Cheap to clone; every clone is the same ledger.
#[derive(Clone)]
pub struct Ledger(Arc<Shared>);

struct Shared {
    run: RunId,
    book: Mutex<Book>,
    /// Other live nodes, as of the last gossip exchange: 0 alone.
    live_peers: AtomicU64,
    commits: Commits,
}

#[derive(Default)]
struct Book {
    /// This run's counters.
    own: BTreeMap<CounterKey, Arc<OwnCounter>>,
    /// The runs of every node that still count, by counter and node. This
    /// node's earlier runs are here until its own tally has folded them.
    runs: BTreeMap<CounterKey, BTreeMap<NodeId, Runs>>,
    /// Tallies of other runs changed or forgotten since the last flush.
    unsaved: BTreeSet<(CounterKey, RunId)>,
    /// The other runs alive as of the last gossip exchange: only their
    /// reservations still count.
    alive: BTreeSet<RunId>,
    /// The newest run heard of for each other node, by liveness or by a
    /// tally: an older run's reservations stop counting the moment a newer
    /// one is known, whatever gossip says of its liveness yet.
    newest: BTreeMap<NodeId, u64>,
    /// A newer run of this very node id was seen: two processes share an
    /// id, or this one is a leftover. Logged once.
    warned_newer_self: bool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("run", &self.0.run)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger for run `run`, starting from what the store kept.
    pub fn new(run: RunId, restored: Vec<Contribution>) -> Self {
        let ledger = Ledger(Arc::new(Shared {
            run,
            book: Mutex::new(Book::default()),
            live_peers: AtomicU64::new(0),
            commits: Commits::default(),
        }));
        for contribution in restored {
            ledger.observe(contribution);
        }
        // What came from the store is in the store already, but for the
        // reservations of this node's earlier runs, which died with them.
        let own_node = ledger.node_id().to_owned();
        ledger
            .book()
            .unsaved
            .retain(|(key, run)| key.kind.is_held() && run.node_id == own_node);
        ledger
    }

    pub fn run(&self) -> &RunId {
        &self.0.run
    }

    pub fn node_id(&self) -> &str {
        &self.0.run.node_id
    }

    /// How many other nodes are alive. Each counts requests the others do
    /// not see until the next exchange, so a limit on a cluster-wide
    /// counter lets each take only its share of what was left.
    pub fn live_peers(&self) -> u64 {
        self.0.live_peers.load(Ordering::Acquire)
    }

    pub fn set_live_peers(&self, peers: u64) {
        self.0.live_peers.store(peers, Ordering::Release);
    }

    /// The other runs alive now, as gossip sees them. The reservations of a
    /// run that is not stop counting: whatever it had in flight ended with
    /// it (or, cut off by a partition, is its own to settle when it is back).
    pub fn set_alive_runs(&self, alive: impl IntoIterator<Item = RunId>) {
        let own_run = &self.0.run;
        let alive: BTreeSet<RunId> = alive.into_iter().filter(|run| run != own_run).collect();
        let mut guard = self.book();
        let book = &mut *guard;
        let mut changed = book.alive != alive;
        for run in &alive {
            changed |= note_newest(book, run);
        }
        book.alive = alive;
        if changed {
            refresh_held(book, own_run);
        }
    }

    /// A poisoned lock only means another thread panicked mid-update of
    /// plain maps of counts; the data is still usable.
    fn book(&self) -> MutexGuard<'_, Book> {
        self.0
            .book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until every count made so far is in the store (at once on a
    /// node that stores none): an answered call is on disk before its
    /// last byte leaves, so a SIGKILL right after cannot lose it.
    pub async fn committed(&self) {
        self.0.commits.written(self).await;
    }

    /// This run's counter `key`: the handle the request path counts with.
    pub fn counter(&self, key: CounterKey) -> Arc<OwnCounter> {
        let mut book = self.book();
        own_counter(&mut book, &self.0.run, key).0
    }

    /// Takes in one run's tally, from a peer or the store. Returns whether
    /// the ledger changed.
    pub fn observe(&self, contribution: Contribution) -> bool {
        let Contribution { key, run, tally } = contribution;
        let own_run = &self.0.run;
        let mut book = self.book();
        if run.node_id == own_run.node_id {
            if run.generation > own_run.generation && !book.warned_newer_self {
                book.warned_newer_self = true;
                tracing::error!(node_id = %run.node_id, generation = run.generation,
                    "a newer run of this node id is counting: is the node id configured twice?");
            }
            if run.generation >= own_run.generation {
                return false;
            }
            if key.kind.is_held() {
                // An earlier run's reservations died with it.
                book.unsaved.insert((key, run));
                return false;
            }
            let runs = book
                .runs
                .entry(key.clone())
                .or_default()
                .entry(run.node_id)
                .or_default();
            if !runs.observe(run.generation, &tally).grew {
                return false;
            }
            return own_counter(&mut book, own_run, key).1;
        }
        let runs = book
            .runs
            .entry(key.clone())
            .or_default()
            .entry(run.node_id.clone())
            .or_default();
        let changes = if key.kind.is_held() {
            runs.observe_newest(run.generation, &tally)
        } else {
            runs.observe(run.generation, &tally)
        };
        let newer_run = note_newest(&mut book, &run);
        let changed = changes.grew || !changes.forgotten.is_empty();
        for generation in changes.forgotten {
            let forgotten = RunId {
                node_id: run.node_id.clone(),
                generation,
            };
            book.unsaved.insert((key.clone(), forgotten));
        }
        if changed {
            if let Some(counter) = book.own.get(&key) {
                counter.set_other_nodes(other_nodes(&book, &self.0.run, &key));
            }
        }
        if changes.grew {
            book.unsaved.insert((key, run));
        }
        if newer_run {
            refresh_held(&book, &self.0.run);
        }
        changed
    }

    /// The counter's cluster-wide value at `unix_ms`.
    pub fn value(&self, key: &CounterKey, unix_ms: u64) -> u64 {
        let book = self.book();
        cluster_buckets(&book, &self.0.run, key).value(unix_ms)
    }

    /// Every counter's cluster-wide value at `unix_ms`.
    pub fn values(&self, unix_ms: u64) -> BTreeMap<CounterKey, u64> {
        let book = self.book();
        let keys: BTreeSet<&CounterKey> = book.own.keys().chain(book.runs.keys()).collect();
        keys.into_iter()
            .map(|key| {
                let value = cluster_buckets(&book, &self.0.run, key).value(unix_ms);
                (key.clone(), value)
            })
            .collect()
    }

    /// This run's subjects with a counter changed since gossip last took
    /// it. Counters with nothing new move their sync point if the other
    /// nodes' counts moved.
    pub fn unpublished(&self) -> Vec<OwnSubject> {
        let book = self.book();
        let mut unpublished = Vec::new();
        // Keys order by subject, so a subject's counters come together.
        let mut counters = book.own.values().peekable();
        while let Some(first) = counters.next() {
            let subject = &first.key().subject;
            let mut group = vec![first];
            while let Some(next) = counters.next_if(|next| next.key().subject == *subject) {
                group.push(next);
            }
            if group.iter().any(|counter| counter.is_unpublished()) {
                unpublished.push(OwnSubject {
                    subject: subject.clone(),
                    counters: group.into_iter().cloned().collect(),
                });
            } else {
                group
                    .iter()
                    .for_each(|counter| counter.resync_if_others_moved());
            }
        }
        unpublished
    }

    /// This run's counters of `subject`, changed or not.
    pub fn own_subject(&self, subject: &str) -> OwnSubject {
        let book = self.book();
        // `Calls` orders first of the kinds.
        let from = CounterKey::new(CounterKind::Calls, subject);
        let counters = book
            .own
            .range(from..)
            .take_while(|(key, _)| key.subject == subject)
            .map(|(_, counter)| counter.clone())
            .collect();
        OwnSubject {
            subject: subject.to_owned(),
            counters,
        }
    }

    /// Has gossip take every own tally again (a restarted gossip actor
    /// does not know which it has published).
    pub fn mark_all_unpublished(&self) {
        for counter in self.book().own.values() {
            counter.mark_unpublished();
        }
    }

    /// Every tally changed or forgotten since the store last took them.
    pub fn take_unsaved(&self) -> Vec<StoreChange> {
        let mut guard = self.book();
        let book = &mut *guard;
        let own_run = &self.0.run;
        let mut changes = Vec::new();
        for (key, counter) in &book.own {
            let Some(tally) = counter.take_unsaved() else {
                continue;
            };
            changes.push(StoreChange::Put(Contribution {
                key: key.clone(),
                run: own_run.clone(),
                tally,
            }));
            // The tally just taken folds this node's earlier runs in.
            if let Some(earlier) = book
                .runs
                .get_mut(key)
                .and_then(|nodes| nodes.remove(&own_run.node_id))
            {
                changes.extend(earlier.iter().map(|(generation, _)| StoreChange::Remove {
                    key: key.clone(),
                    node_id: own_run.node_id.clone(),
                    generation,
                }));
            }
        }
        for (key, run) in std::mem::take(&mut book.unsaved) {
            let stored = book
                .runs
                .get(&key)
                .and_then(|nodes| nodes.get(&run.node_id))
                .and_then(|runs| runs.get(run.generation));
            changes.push(match stored {
                Some(tally) => StoreChange::Put(Contribution {
                    key,
                    run,
                    tally: tally.clone(),
                }),
                None if run == *own_run && book.own.contains_key(&key) => continue,
                None => StoreChange::Remove {
                    key,
                    node_id: run.node_id,
                    generation: run.generation,
                },
            });
        }
        changes
    }

    /// Puts back changes whose save failed, so the next flush retries them.
    pub fn keep_unsaved(&self, changes: &[StoreChange]) {
        let mut book = self.book();
        for change in changes {
            let (key, run) = match change {
                StoreChange::Put(contribution) => {
                    (contribution.key.clone(), contribution.run.clone())
                }
                StoreChange::Remove {
                    key,
                    node_id,
                    generation,
                } => (
                    key.clone(),
                    RunId {
                        node_id: node_id.clone(),
                        generation: *generation,
                    },
                ),
            };
            if run == self.0.run {
                if let Some(counter) = book.own.get(&key) {
                    counter.mark_unsaved();
                    continue;
                }
            }
            book.unsaved.insert((key, run));
        }
    }

    /// The tallies of other nodes' runs that `select` picks: what a node
    /// republishes for runs whose own gossip state is gone.
    pub fn runs_of(&self, select: impl Fn(&RunId) -> bool) -> Vec<Contribution> {
        let book = self.book();
        let mut picked = Vec::new();
        // Reservations are never republished: a run whose state is gone
        // is dead, and so are they.
        let counts = book.runs.iter().filter(|(key, _)| !key.kind.is_held());
        for (key, nodes) in counts {
            for (node_id, runs) in nodes {
                if *node_id == self.0.run.node_id {
                    continue;
                }
                for (generation, tally) in runs.iter() {
                    let run = RunId {
                        node_id: node_id.clone(),
                        generation,
                    };
                    if select(&run) {
                        picked.push(Contribution {
                            key: key.clone(),
                            run,
                            tally: tally.clone(),
                        });
                    }
                }
            }
        }
        picked
    }

    /// Every other run that still counts somewhere, by node.
    pub fn known_runs(&self) -> BTreeMap<NodeId, BTreeSet<u64>> {
        let book = self.book();
        let mut known: BTreeMap<NodeId, BTreeSet<u64>> = BTreeMap::new();
        let counts = book.runs.iter().filter(|(key, _)| !key.kind.is_held());
        for (_, nodes) in counts {
            for (node_id, runs) in nodes {
                if *node_id != self.0.run.node_id {
                    let generations = known.entry(node_id.clone()).or_default();
                    generations.extend(runs.iter().map(|(generation, _)| generation));
                }
            }
        }
        known
    }

    /// Forgets tallies whose window has passed. Returns this run's counters
    /// that no longer count, so their gossip keys can go too; the counters
    /// themselves stay for whoever still holds them.
    pub fn expire(&self, unix_ms: u64) -> Vec<CounterKey> {
        let mut guard = self.book();
        let book = &mut *guard;
        let mut unsaved = Vec::new();
        book.runs.retain(|key, nodes| {
            let epoch = key.window().epoch(unix_ms);
            nodes.retain(|node_id, runs| {
                for generation in runs.expire(epoch) {
                    let run = RunId {
                        node_id: node_id.clone(),
                        generation,
                    };
                    unsaved.push((key.clone(), run));
                }
                !runs.is_empty()
            });
            !nodes.is_empty()
        });
        book.unsaved.extend(unsaved);
        let mut expired = Vec::new();
        book.own.retain(|key, counter| {
            if !counter
                .tally()
                .total
                .expired_at(key.window().epoch(unix_ms))
            {
                return true;
            }
            expired.push(key.clone());
            // Only the ledger holds it: nobody will count with it again.
            Arc::strong_count(counter) > 1
        });
        for key in &expired {
            if !book.own.contains_key(key) {
                book.unsaved.insert((key.clone(), self.0.run.clone()));
            }
        }
        expired
    }
}

/// This run's counter `key`, with whatever this node's earlier runs are
/// known to have counted folded in; and whether that fold added anything.
fn own_counter(book: &mut Book, own_run: &RunId, key: CounterKey) -> (Arc<OwnCounter>, bool) {
    let earlier = book
        .runs
        .get(&key)
        .filter(|_| !key.kind.is_held())
        .and_then(|nodes| nodes.get(&own_run.node_id))
        .map(Runs::total);
    let counter = match book.own.get(&key) {
        Some(counter) => counter.clone(),
        None => {
            let counter = Arc::new(OwnCounter::new(key.clone()));
            counter.set_other_nodes(other_nodes(book, own_run, &key));
            book.own.insert(key, counter.clone());
            counter
        }
    };
    let folded = earlier.is_some_and(|earlier| counter.fold_earlier_runs(&earlier));
    (counter, folded)
}

/// Every other node's count of `key`, added up bucket by bucket.
fn other_nodes(book: &Book, own_run: &RunId, key: &CounterKey) -> Buckets {
    book.runs
        .get(key)
        .into_iter()
        .flatten()
        .filter(|(node_id, _)| **node_id != own_run.node_id)
        .map(|(node_id, runs)| node_count(book, key, node_id, runs))
        .fold(Buckets::default(), |sum, count| sum.plus(&count))
}

/// Every node's count of `key`, added up bucket by bucket.
fn cluster_buckets(book: &Book, own_run: &RunId, key: &CounterKey) -> Buckets {
    let own = book.own.get(key).map(|counter| counter.tally().total);
    let counted_own = own.is_some();
    let others = book.runs.get(key).into_iter().flatten();
    others
        .filter(|(node_id, _)| !counted_own || **node_id != own_run.node_id)
        .map(|(node_id, runs)| node_count(book, key, node_id, runs))
        .chain(own)
        .fold(Buckets::default(), |sum, count| sum.plus(&count))
}

/// Notes `run` as its node's newest if it is; returns whether it was.
fn note_newest(book: &mut Book, run: &RunId) -> bool {
    let newest = book.newest.entry(run.node_id.clone()).or_default();
    let newer = run.generation > *newest;
    *newest = (*newest).max(run.generation);
    newer
}

/// Sums this run's reservation counters anew from the other runs', after
/// which runs count changed.
fn refresh_held(book: &Book, own_run: &RunId) {
    for (key, counter) in &book.own {
        if key.kind.is_held() {
            counter.set_other_nodes(other_nodes(book, own_run, key));
        }
    }
}

/// What node `node_id`'s runs counted of `key`: all of it, or for
/// reservations, only what its newest run holds while it lives.
fn node_count(book: &Book, key: &CounterKey, node_id: &NodeId, runs: &Runs) -> Buckets {
    if !key.kind.is_held() {
        return runs.total();
    }
    let newest = book.newest.get(node_id).copied();
    runs.iter()
        .filter(|(generation, _)| {
            newest == Some(*generation)
                && book.alive.contains(&RunId {
                    node_id: node_id.clone(),
                    generation: *generation,
                })
        })
        .fold(Buckets::default(), |sum, (_, tally)| sum.plus(&tally.total))
}

#[cfg(test)]
mod tests;
