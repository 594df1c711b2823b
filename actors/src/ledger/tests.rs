use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chorus_proto::counter::{Buckets, CounterKind, Window};

use super::store::flush;
use super::*;

/// Keeps what the ledger saves, by (key, node, generation).
#[derive(Default)]
struct MemoryStore {
    saved: Mutex<BTreeMap<(CounterKey, RunId), Tally>>,
    fail: std::sync::atomic::AtomicBool,
}

impl LedgerStore for MemoryStore {
    fn save(&self, changes: &[StoreChange]) -> Result<(), StoreError> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError {
                action: "write",
                source: "disk full".into(),
            });
        }
        let mut saved = self.saved.lock().unwrap();
        for change in changes {
            match change {
                StoreChange::Put(c) => {
                    saved.insert((c.key.clone(), c.run.clone()), c.tally.clone());
                }
                StoreChange::Remove {
                    key,
                    node_id,
                    generation,
                } => {
                    saved.remove(&(key.clone(), run(node_id, *generation)));
                }
            }
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
            .map(|((key, run), tally)| Contribution {
                key: key.clone(),
                run: run.clone(),
                tally: tally.clone(),
            })
            .collect()
    }

    fn entries(&self) -> usize {
        self.saved.lock().unwrap().len()
    }
}

fn run(node_id: &str, generation: u64) -> RunId {
    RunId {
        node_id: node_id.into(),
        generation,
    }
}

fn calls() -> CounterKey {
    CounterKey::new(CounterKind::Calls, "p/m")
}

fn lifetime(total: u64) -> Tally {
    Tally::new(Buckets::new(Window::Lifetime, 0, total))
}

fn contribution(node_id: &str, generation: u64, tally: Tally) -> Contribution {
    Contribution {
        key: calls(),
        run: run(node_id, generation),
        tally,
    }
}

fn flushed(ledger: &Ledger, store: &Arc<MemoryStore>) {
    flush(&LedgerArgs {
        ledger: ledger.clone(),
        store: store.clone(),
        flush_interval: Duration::from_secs(1),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_in_the_store_once_committed() {
    let store = Arc::new(MemoryStore::default());
    let ledger = Ledger::new(run("a", 1), Vec::new());
    let args = LedgerArgs {
        ledger: ledger.clone(),
        store: store.clone(),
        // Never within the test: only the commits write.
        flush_interval: Duration::from_secs(3_600),
    };
    let (writer, handle) = ractor::Actor::spawn(None, LedgerActor, args).await.unwrap();
    let counter = ledger.counter(calls());
    counter.add(1, 0);
    ledger.committed().await;
    assert_eq!(store.restore(), vec![contribution("a", 1, lifetime(1))]);

    // Many at once: each finds its counts, and every count made before
    // it asked, written when it returns, whoever wrote them.
    let added = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let waiters = (0..50).map(|_| {
        let (ledger, counter, store) = (ledger.clone(), counter.clone(), store.clone());
        let added = added.clone();
        tokio::spawn(async move {
            counter.add(1, 0);
            let counted = added.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
            ledger.committed().await;
            let stored = store.restore()[0].tally.total.newest();
            assert!(stored >= counted, "{stored} stored, {counted} counted");
        })
    });
    for waiter in futures::future::join_all(waiters).await {
        waiter.unwrap();
    }
    assert_eq!(store.restore(), vec![contribution("a", 1, lifetime(51))]);

    writer.stop(None);
    handle.await.unwrap();
    counter.add(1, 0);
    tokio::time::timeout(Duration::from_millis(100), ledger.committed())
        .await
        .expect("with the ledger's actor gone, nobody waits for the store");
}

#[test]
fn reservations_count_only_while_their_run_lives() {
    let held = CounterKey::new(CounterKind::SpendMicrosDayHeld, "key:k");
    let held_by = |node_id: &str, generation: u64, total: u64| Contribution {
        key: held.clone(),
        run: run(node_id, generation),
        tally: Tally::new(Buckets::new(Window::Lifetime, 0, total)),
    };
    let ledger = Ledger::new(run("a", 2), vec![held_by("a", 1, 7)]);
    let counter = ledger.counter(held.clone());
    counter.add(2, 0);
    let cluster = || counter.cluster_buckets().value(0);
    assert_eq!(
        (ledger.value(&held, 0), cluster()),
        (2, 2),
        "an earlier run's reservations died with it"
    );
    assert!(ledger.take_unsaved().contains(&StoreChange::Remove {
        key: held.clone(),
        node_id: "a".into(),
        generation: 1,
    }));

    ledger.observe(held_by("b", 1, 5));
    assert_eq!(ledger.value(&held, 0), 2, "b is not known to be alive");
    ledger.set_alive_runs([run("a", 2), run("b", 1)]);
    assert_eq!((ledger.value(&held, 0), cluster()), (7, 7));
    ledger.set_alive_runs([run("a", 2)]);
    assert_eq!((ledger.value(&held, 0), cluster()), (2, 2), "b died");
    assert!(ledger.runs_of(|_| true).is_empty(), "never republished");

    ledger.observe(held_by("b", 2, 1));
    ledger.set_alive_runs([run("a", 2), run("b", 1), run("b", 2)]);
    assert_eq!(
        ledger.value(&held, 0),
        3,
        "a newer run of b means the older one is gone"
    );
    ledger.observe(Contribution {
        key: calls(),
        run: run("b", 3),
        tally: lifetime(1),
    });
    assert_eq!(
        ledger.value(&held, 0),
        2,
        "a run newer still, heard of by any count, before gossip calls it alive"
    );
}

#[test]
fn peers_add_up_and_repeated_or_stale_figures_count_once() {
    let ledger = Ledger::new(run("a", 1), Vec::new());
    ledger.counter(calls()).add(2, 0);
    assert!(ledger.observe(contribution("b", 1, lifetime(5))));
    assert!(!ledger.observe(contribution("b", 1, lifetime(5))));
    assert!(!ledger.observe(contribution("b", 1, lifetime(3))));
    assert!(
        !ledger.observe(contribution("a", 1, lifetime(40))),
        "an echo of our own tally"
    );
    assert_eq!(ledger.value(&calls(), 0), 7);
}

#[test]
fn a_restarted_node_goes_on_from_its_store_and_the_store_stays_small() {
    let store = Arc::new(MemoryStore::default());
    let first = Ledger::new(run("a", 1), Vec::new());
    first.counter(calls()).add(3, 0);
    first.observe(contribution("b", 7, lifetime(5)));
    flushed(&first, &store);
    assert_eq!(store.entries(), 2);

    let second = Ledger::new(run("a", 2), store.restore());
    assert_eq!(second.value(&calls(), 0), 8);
    second.counter(calls()).add(1, 0);
    flushed(&second, &store);
    assert_eq!(
        store.entries(),
        2,
        "run 2's tally replaces run 1's in the store"
    );
    let third = Ledger::new(run("a", 3), store.restore());
    assert_eq!(third.value(&calls(), 0), 9);
}

#[test]
fn a_restarted_node_that_lost_its_store_folds_what_peers_kept() {
    // Run 1 counted 10, of which the store never saw the last 4.
    let ledger = Ledger::new(run("a", 2), vec![contribution("a", 1, lifetime(6))]);
    ledger.counter(calls()).add(1, 0);
    assert_eq!(ledger.value(&calls(), 0), 7);
    assert!(ledger.observe(contribution("a", 1, lifetime(10))));
    assert_eq!(ledger.value(&calls(), 0), 11);
    let published = ledger.unpublished();
    assert_eq!(
        published[0].take(),
        vec![(
            CounterKind::Calls,
            Tally {
                total: Buckets::new(Window::Lifetime, 0, 11),
                earlier_runs: Buckets::new(Window::Lifetime, 0, 10),
            }
        )],
        "the published tally says what it folded, so peers can forget run 1"
    );
}

#[test]
fn peers_forget_a_run_once_its_successor_has_folded_it_however_often_it_restarts() {
    let peer = Ledger::new(run("p", 1), Vec::new());
    let store = Arc::new(MemoryStore::default());
    let mut node_total = 0;
    for generation in 1..=50 {
        // Each run starts from what the previous one counted, then counts 3.
        let tally = Tally {
            total: Buckets::new(Window::Lifetime, 0, node_total + 3),
            earlier_runs: Buckets::new(Window::Lifetime, 0, node_total),
        };
        node_total += 3;
        peer.observe(contribution("c", generation, tally));
        flushed(&peer, &store);
    }
    assert_eq!(peer.value(&calls(), 0), 150);
    assert_eq!(
        peer.known_runs()["c"].len(),
        1,
        "only the newest run is kept"
    );
    assert_eq!(store.entries(), 1, "and only it is stored");
}

#[test]
fn a_failed_save_is_retried() {
    let store = Arc::new(MemoryStore::default());
    let ledger = Ledger::new(run("a", 1), Vec::new());
    ledger.counter(calls()).add(1, 0);
    ledger.observe(contribution("b", 1, lifetime(2)));
    store.fail.store(true, std::sync::atomic::Ordering::Relaxed);
    flushed(&ledger, &store);
    assert_eq!(store.entries(), 0);
    store
        .fail
        .store(false, std::sync::atomic::Ordering::Relaxed);
    flushed(&ledger, &store);
    assert_eq!(store.entries(), 2);
    assert_eq!(
        Ledger::new(run("a", 2), store.restore()).value(&calls(), 0),
        3
    );
}

#[test]
fn windowed_tallies_expire_from_memory_and_store() {
    let minute = CounterKey::new(CounterKind::CallsMinute, "p/m");
    let store = Arc::new(MemoryStore::default());
    let ledger = Ledger::new(run("a", 1), Vec::new());
    let counter = ledger.counter(minute.clone());
    counter.add(4, 60_000 * 10);
    ledger.observe(Contribution {
        key: minute.clone(),
        run: run("b", 1),
        tally: Tally::new(Buckets::new(
            Window::Minute,
            Window::Minute.epoch(60_000 * 10),
            6,
        )),
    });
    flushed(&ledger, &store);
    assert_eq!(ledger.value(&minute, 60_000 * 10), 10);
    assert_eq!(ledger.expire(60_000 * 11), Vec::<CounterKey>::new());
    assert_eq!(ledger.expire(60_000 * 12), std::slice::from_ref(&minute));
    flushed(&ledger, &store);
    assert_eq!(
        store.entries(),
        1,
        "b's expired tally is gone from the store"
    );
    assert_eq!(ledger.known_runs().len(), 0);
    assert_eq!(ledger.value(&minute, 60_000 * 12), 0);
    drop(counter);
    ledger.expire(60_000 * 12);
    flushed(&ledger, &store);
    assert_eq!(store.entries(), 0, "nobody holds our counter any more");
}

#[test]
fn runs_of_picks_other_nodes_runs_only() {
    let ledger = Ledger::new(run("a", 2), vec![contribution("a", 1, lifetime(1))]);
    ledger.observe(contribution("b", 4, lifetime(2)));
    ledger.observe(contribution("c", 5, lifetime(3)));
    let picked = ledger.runs_of(|run| run.node_id != "c");
    assert_eq!(picked, [contribution("b", 4, lifetime(2))]);
}
