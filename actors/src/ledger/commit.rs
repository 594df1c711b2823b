//! Counts on disk before an answer leaves: a request that has counted its
//! call waits until a store write has taken its counts, so a node killed
//! right after answering still has the call in its store when it comes
//! back. Writes are grouped: the first waiter to find nobody leading lets
//! the tasks ready to run go first (they count and ask too), then writes
//! for everyone who asked before it, on its own task (no hop to another
//! actor); those who asked while it wrote are covered by the next leader's
//! write. Every write, the periodic flush's too, takes the same lock, so a
//! slower write can never put an older tally over a newer.
//!
//! The store write goes to RocksDB's write-ahead log without an fsync:
//! it survives the process being killed, not the machine losing power.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::store::LedgerStore;
use super::Ledger;

/// The longest a request waits for another's write to cover its counts: a
/// store that hangs delays their answers by this much. The request that
/// writes waits for its write, which RocksDB bounds itself.
const COMMIT_WAIT: Duration = Duration::from_secs(1);

/// The writes, and who waits for them.
pub(super) struct Commits {
    /// Requests for a write so far: each waiter's ticket.
    asked: AtomicU64,
    /// The last ticket a finished write covered.
    written: watch::Sender<u64>,
    /// A waiter is about to write for the others.
    leading: AtomicBool,
    /// Held through each write, so writes go in the order they took the
    /// counts.
    writing: Mutex<()>,
    /// Where counts are written, while the ledger's actor runs.
    store: Mutex<Option<Arc<dyn LedgerStore>>>,
}

impl Default for Commits {
    fn default() -> Self {
        Commits {
            asked: AtomicU64::new(0),
            written: watch::Sender::new(0),
            leading: AtomicBool::new(false),
            writing: Mutex::new(()),
            store: Mutex::new(None),
        }
    }
}

impl Commits {
    fn store(&self) -> MutexGuard<'_, Option<Arc<dyn LedgerStore>>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Has requests wait for their counts to reach `store` from now on.
    pub(super) fn attach(&self, store: Arc<dyn LedgerStore>) {
        *self.store() = Some(store);
    }

    /// The ledger's actor stopped: nobody waits for the store until it is
    /// back.
    pub(super) fn detach(&self) {
        *self.store() = None;
    }

    /// Waits until every count made before the call is in the store, or
    /// [`COMMIT_WAIT`] has passed; writes them itself when no write is under
    /// way. At once when nothing stores counts.
    pub(super) async fn written(&self, ledger: &Ledger) {
        let Some(store) = self.store().clone() else {
            return;
        };
        // The counts were made before the ticket; a write reads the
        // tickets before it takes the counts, so it sees them.
        let ticket = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
        let mut written = self.written.subscribe();
        let give_up = tokio::time::Instant::now() + COMMIT_WAIT;
        loop {
            if *written.borrow_and_update() >= ticket {
                return;
            }
            if let Some(leading) = Leading::take(self) {
                // Let the requests ready to run count and ask first: one
                // write then covers them all.
                tokio::task::yield_now().await;
                let ticket = self.write(ledger, store.as_ref());
                self.announce(ticket);
                // Wakes the waiters the write did not cover, to lead the next.
                drop(leading);
                continue;
            }
            // Another write is under way: its end may cover this ticket,
            // or free the way for the next.
            if tokio::time::timeout_at(give_up, written.changed())
                .await
                .is_err()
            {
                tracing::warn!(
                    wait_ms = COMMIT_WAIT.as_millis() as u64,
                    "counts were not written in time; answering without waiting for the store"
                );
                return;
            }
        }
    }

    /// Writes what changed, after any write under way, and tells the
    /// waiters whose counts that took: the periodic flush.
    pub(super) fn flush(&self, ledger: &Ledger, store: &dyn LedgerStore) {
        let ticket = self.write(ledger, store);
        self.announce(ticket);
    }

    /// Writes what changed, after any write under way; returns the last
    /// ticket it covers. A failed save is logged and retried by the next
    /// write; its waiters are not held for it.
    fn write(&self, ledger: &Ledger, store: &dyn LedgerStore) -> u64 {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = self.asked.load(Ordering::Acquire);
        let changes = ledger.take_unsaved();
        if !changes.is_empty() {
            if let Err(error) = store.save(&changes) {
                tracing::error!(%error, changes = changes.len(), "cannot save counters; will retry");
                ledger.keep_unsaved(&changes);
            }
        }
        ticket
    }

    /// Wakes the waiters up to `ticket`.
    fn announce(&self, ticket: u64) {
        self.written.send_if_modified(|written| {
            let moved = ticket > *written;
            *written = (*written).max(ticket);
            moved
        });
    }
}

/// The one waiter that writes for the others, until dropped (also when
/// its request is dropped mid-wait). Dropped, it wakes every waiter, so
/// one whose ticket is still ahead steps up: a leader's write may have
/// covered none of them.
struct Leading<'a>(&'a Commits);

impl<'a> Leading<'a> {
    fn take(commits: &'a Commits) -> Option<Self> {
        (!commits.leading.swap(true, Ordering::AcqRel)).then_some(Leading(commits))
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.leading.store(false, Ordering::Release);
        self.0.written.send_modify(|_| {});
    }
}
