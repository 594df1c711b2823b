//! The node's durable counters: named G-Counters of per-contributor totals
//! (calls, errors and tokens per deployment, for now). A contributor is one
//! process, `node_id#generation`: a restarted node counts under a new
//! contributor while its previous run's totals stay in the ledger as they
//! were, so no count can be overwritten or counted twice, with or without a
//! store. This process adds to its own contribution; gossip brings every
//! other one, merged by per-contributor max.
//!
//! `LedgerActor` writes what changed to a [`LedgerStore`] every flush
//! interval, in one batch, off the request path. A node restarted with the
//! same node id reloads every contribution it had stored — its own earlier
//! runs' and those it had seen from peers — and goes on from those totals.
//! A SIGKILL loses only counts that were neither flushed nor gossiped yet
//! (at most one flush interval's).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::counter::{GCounter, NodeId};

/// One process of one node: `node_id#generation`.
pub type ContributorId = String;

/// One contribution: counter name, contributor, its total.
pub type Contribution = (String, ContributorId, u64);

/// Where the ledger is kept between runs (RocksDB in `node`).
pub trait LedgerStore: Send + Sync + 'static {
    /// Writes `entries` at once; each replaces the stored total of its
    /// (counter, node) pair.
    fn save(&self, entries: &[Contribution]) -> Result<(), String>;
}

/// Cheap to clone; every clone is the same ledger.
#[derive(Clone)]
pub struct Ledger(Arc<LedgerShared>);

struct LedgerShared {
    contributor: ContributorId,
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    counters: BTreeMap<String, GCounter>,
    /// Other nodes' (counter, node) pairs changed since the last flush.
    dirty: BTreeSet<(String, NodeId)>,
    /// Counters whose own contribution changed since the last flush.
    dirty_own: BTreeSet<String>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("contributor", &self.0.contributor)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger counting as `contributor`, starting from what was stored.
    pub fn new(contributor: impl Into<ContributorId>, restored: Vec<Contribution>) -> Self {
        let mut book = Book::default();
        for (name, node, total) in restored {
            book.counters.entry(name).or_default().observe(&node, total);
        }
        Ledger(Arc::new(LedgerShared {
            contributor: contributor.into(),
            book: Mutex::new(book),
        }))
    }

    /// This process's contributor id.
    pub fn contributor(&self) -> &str {
        &self.0.contributor
    }

    /// A poisoned lock only means another thread panicked mid-update of
    /// plain counters; the data is still usable.
    fn book(&self) -> MutexGuard<'_, Book> {
        self.0
            .book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds to this node's own contribution to `name`.
    pub fn add(&self, name: &str, amount: u64) {
        if amount == 0 {
            return;
        }
        let node_id = &self.0.contributor;
        let mut book = self.book();
        // Counting is on every call's way out: no allocation once a
        // counter exists.
        match book.counters.get_mut(name) {
            Some(counter) => counter.add(node_id, amount),
            None => book
                .counters
                .entry(name.to_owned())
                .or_default()
                .add(node_id, amount),
        }
        if !book.dirty_own.contains(name) {
            book.dirty_own.insert(name.to_owned());
        }
    }

    /// Takes `total` as `node`'s contribution to `name` if it is larger.
    pub fn observe(&self, name: &str, node: &str, total: u64) {
        let mut book = self.book();
        let counter = book.counters.entry(name.to_owned()).or_default();
        if total > counter.contribution(node) {
            counter.observe(node, total);
            book.dirty.insert((name.to_owned(), node.to_owned()));
        }
    }

    /// Cluster-wide totals by counter name.
    pub fn totals(&self) -> BTreeMap<String, u64> {
        self.book()
            .counters
            .iter()
            .map(|(name, counter)| (name.clone(), counter.value()))
            .collect()
    }

    pub fn total(&self, name: &str) -> u64 {
        self.book().counters.get(name).map_or(0, GCounter::value)
    }

    /// Every contribution known, this node's included.
    pub fn contributions(&self) -> Vec<Contribution> {
        self.book()
            .counters
            .iter()
            .flat_map(|(name, counter)| {
                counter
                    .contributions()
                    .map(move |(node, total)| (name.clone(), node.to_owned(), total))
            })
            .collect()
    }

    /// The contributions changed since the last call.
    fn take_dirty(&self) -> Vec<Contribution> {
        let mut book = self.book();
        let mut dirty = std::mem::take(&mut book.dirty);
        let own = std::mem::take(&mut book.dirty_own);
        dirty.extend(
            own.into_iter()
                .map(|name| (name, self.0.contributor.clone())),
        );
        dirty
            .into_iter()
            .map(|(name, node)| {
                let total = book
                    .counters
                    .get(&name)
                    .map_or(0, |counter| counter.contribution(&node));
                (name, node, total)
            })
            .collect()
    }

    /// Puts back entries whose save failed, so the next flush retries them.
    fn mark_dirty(&self, entries: &[Contribution]) {
        let mut book = self.book();
        book.dirty.extend(
            entries
                .iter()
                .map(|(name, node, _)| (name.clone(), node.clone())),
        );
    }
}

pub struct LedgerActor;

#[derive(Clone)]
pub struct LedgerArgs {
    pub ledger: Ledger,
    pub store: Arc<dyn LedgerStore>,
    pub flush_interval: Duration,
}

#[derive(Debug)]
pub enum LedgerMsg {
    /// Write what changed since the last flush.
    Flush,
}

impl Actor for LedgerActor {
    type Msg = LedgerMsg;
    type State = LedgerArgs;
    type Arguments = LedgerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: LedgerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.flush_interval, || LedgerMsg::Flush);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        LedgerMsg::Flush: LedgerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        flush(state);
        Ok(())
    }

    /// A last flush on the way out, so a clean stop loses nothing.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        flush(state);
        Ok(())
    }
}

fn flush(state: &LedgerArgs) {
    let entries = state.ledger.take_dirty();
    if entries.is_empty() {
        return;
    }
    if let Err(error) = state.store.save(&entries) {
        tracing::error!(%error, entries = entries.len(), "cannot save counters; will retry");
        state.ledger.mark_dirty(&entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct MemoryStore {
        saved: Mutex<BTreeMap<(String, NodeId), u64>>,
    }

    impl LedgerStore for MemoryStore {
        fn save(&self, entries: &[Contribution]) -> Result<(), String> {
            let mut saved = self.saved.lock().map_err(|e| e.to_string())?;
            for (name, node, total) in entries {
                saved.insert((name.clone(), node.clone()), *total);
            }
            Ok(())
        }
    }

    impl MemoryStore {
        fn restore(&self) -> Vec<Contribution> {
            self.saved
                .lock()
                .unwrap()
                .iter()
                .map(|((name, node), total)| (name.clone(), node.clone(), *total))
                .collect()
        }
    }

    #[test]
    fn a_restarted_ledger_goes_on_from_what_was_flushed() {
        let store = MemoryStore::default();
        let args = LedgerArgs {
            ledger: Ledger::new("a", Vec::new()),
            store: Arc::new(MemoryStore::default()),
            flush_interval: Duration::from_secs(1),
        };
        args.ledger.add("calls", 2);
        args.ledger.observe("calls", "b", 5);
        args.ledger.observe("calls", "b", 3);
        assert_eq!(args.ledger.total("calls"), 7);
        store.save(&args.ledger.take_dirty()).unwrap();
        assert!(
            args.ledger.take_dirty().is_empty(),
            "nothing changed since the flush"
        );

        let restarted = Ledger::new("a", store.restore());
        assert_eq!(restarted.total("calls"), 7);
        restarted.add("calls", 1);
        assert_eq!(
            restarted.contributions(),
            [
                ("calls".to_owned(), "a".to_owned(), 3),
                ("calls".to_owned(), "b".to_owned(), 5)
            ]
        );
        flush(&args);
    }
}
