//! The counters section: every run publishes its own tallies, one key per
//! counter; and one node — the live node with the lowest id — republishes
//! the tallies of runs whose own state gossip no longer shares, so a node
//! that joins later still learns every count. A republished tally is
//! deleted once it is no longer needed: when the node's later run has
//! folded it in (the ledger then forgets it) or when its window has passed.
//!
//! Entries are `node_id:generation:counter key` → tally, so a republished
//! tally names the run it belongs to, whoever publishes it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chorus_proto::counter::{CounterKey, Tally};

use super::bus::{Change, Liveness, Observed, RunStatus, Section};
use crate::ledger::{Contribution, Ledger, RunId};

/// How often windows are checked for expired tallies, and the runs known
/// to the ledger for ones gossip has forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

pub(super) fn entry_key(run: &RunId, key: &CounterKey) -> String {
    format!("{}:{}:{key}", run.node_id, run.generation)
}

/// The contribution an entry carries; `None` for garbage.
pub(super) fn parse_entry(key: &str, value: &str) -> Option<Contribution> {
    let (node_id, rest) = key.split_once(':')?;
    let (generation, counter) = rest.split_once(':')?;
    Some(Contribution {
        key: CounterKey::decode(counter)?,
        run: RunId {
            node_id: node_id.to_owned(),
            generation: generation.parse().ok()?,
        },
        tally: Tally::decode(value)?,
    })
}

pub(super) struct CounterSection {
    /// Until then, runs the ledger knows but gossip has not mentioned may
    /// still be live peers not heard from yet: they are not republished.
    settled_at: Instant,
    settled: bool,
    /// Own counters whose key is set in our state.
    published_own: HashSet<CounterKey>,
    /// Other runs' tallies this node republishes.
    republished: HashMap<(CounterKey, RunId), Tally>,
    /// Runs whose tallies only republishing keeps alive.
    departed: BTreeSet<RunId>,
    /// Whether this node is the one that republishes.
    designated: bool,
    liveness: HashMap<RunId, Liveness>,
    /// The republished set may be stale.
    recheck: bool,
    next_sweep: Instant,
}

impl CounterSection {
    pub fn new(settle: Duration) -> Self {
        let now = Instant::now();
        CounterSection {
            settled_at: now + settle,
            settled: false,
            published_own: HashSet::new(),
            republished: HashMap::new(),
            departed: BTreeSet::new(),
            designated: false,
            liveness: HashMap::new(),
            recheck: false,
            next_sweep: now,
        }
    }

    pub fn observe(&mut self, ledger: &Ledger, observed: &Observed) {
        let Some(contribution) = parse_entry(&observed.key, &observed.value) else {
            tracing::debug!(publisher = %observed.publisher.node_id, key = %observed.key,
                "ignored an unreadable counter entry");
            return;
        };
        let node_id = contribution.run.node_id.clone();
        if ledger.observe(contribution) && self.departed.iter().any(|run| run.node_id == node_id) {
            // A later run of a departed node may have folded its tallies in.
            self.recheck = true;
        }
    }

    /// What to publish now: own tallies that changed, and the republished
    /// set brought up to date with who is in the cluster.
    pub fn changes(&mut self, ledger: &Ledger, runs: &[RunStatus], unix_ms: u64) -> Vec<Change> {
        let now = Instant::now();
        let mut changes = Vec::new();
        let own_run = ledger.run();
        for Contribution { key, run, tally } in ledger.take_unpublished() {
            // A tally that counts nothing (yet, or any more) is not worth a key.
            if tally.total.expired_at(key.window().epoch(unix_ms)) {
                if self.published_own.remove(&key) {
                    changes.push(delete(entry_key(&run, &key)));
                }
                continue;
            }
            changes.push(set(entry_key(&run, &key), &tally));
            self.published_own.insert(key);
        }
        let membership_changed = self.track_liveness(runs);
        let settling_ends = !self.settled && now >= self.settled_at;
        self.settled |= settling_ends;
        if now >= self.next_sweep || membership_changed || settling_ends {
            self.next_sweep = now + SWEEP_INTERVAL;
            for key in ledger.expire(unix_ms) {
                if self.published_own.remove(&key) {
                    changes.push(delete(entry_key(own_run, &key)));
                }
            }
            self.departed = self.find_departed(ledger);
            self.recheck = true;
        }
        let designated = runs
            .iter()
            .filter(|status| status.liveness == Liveness::Alive)
            .map(|status| status.run.node_id.as_str())
            .min()
            .is_none_or(|lowest| lowest == own_run.node_id);
        if designated != self.designated {
            self.designated = designated;
            self.recheck = true;
        }
        if std::mem::take(&mut self.recheck) {
            changes.extend(self.republish(ledger));
        }
        changes
    }

    /// Notes each run's liveness; whether anything changed.
    fn track_liveness(&mut self, runs: &[RunStatus]) -> bool {
        let current: HashMap<RunId, Liveness> = runs
            .iter()
            .map(|status| (status.run.clone(), status.liveness))
            .collect();
        let changed = current != self.liveness;
        self.liveness = current;
        changed
    }

    /// Runs whose state gossip no longer shares: departed ones, and (once
    /// settled) ones the ledger knows that gossip has never mentioned.
    fn find_departed(&self, ledger: &Ledger) -> BTreeSet<RunId> {
        let mut departed = BTreeSet::new();
        for (node_id, generations) in ledger.known_runs() {
            for generation in generations {
                let run = RunId {
                    node_id: node_id.clone(),
                    generation,
                };
                let gone = match self.liveness.get(&run) {
                    Some(liveness) => *liveness == Liveness::Departed,
                    None => self.settled,
                };
                if gone {
                    departed.insert(run);
                }
            }
        }
        departed
    }

    /// Brings the republished tallies in line with what should be.
    fn republish(&mut self, ledger: &Ledger) -> Vec<Change> {
        let wanted: HashMap<(CounterKey, RunId), Tally> = if self.designated {
            ledger
                .runs_of(|run| self.departed.contains(run))
                .into_iter()
                .map(|c| ((c.key, c.run), c.tally))
                .collect()
        } else {
            HashMap::new()
        };
        let mut changes = Vec::new();
        self.republished.retain(|(key, run), _| {
            let keep = wanted.contains_key(&(key.clone(), run.clone()));
            if !keep {
                changes.push(delete(entry_key(run, key)));
            }
            keep
        });
        for ((key, run), tally) in wanted {
            if self.republished.get(&(key.clone(), run.clone())) != Some(&tally) {
                changes.push(set(entry_key(&run, &key), &tally));
                self.republished.insert((key, run), tally);
            }
        }
        changes
    }
}

fn set(key: String, tally: &Tally) -> Change {
    Change::Set {
        section: Section::Counters,
        key,
        value: tally.encode(),
    }
}

fn delete(key: String) -> Change {
    Change::Delete {
        section: Section::Counters,
        key,
    }
}

#[cfg(test)]
mod tests {
    use chorus_proto::counter::{Buckets, CounterKind};

    use super::*;

    #[test]
    fn entries_name_their_run_and_garbage_is_refused() {
        let run = RunId {
            node_id: "node-1".into(),
            generation: 42,
        };
        let key = CounterKey::new(CounterKind::Calls, "ollama/llama3:8b");
        let tally = Tally::new(Buckets::new(0, 7));
        let entry = entry_key(&run, &key);
        assert_eq!(entry, "node-1:42:calls:ollama/llama3:8b");
        assert_eq!(
            parse_entry(&entry, &tally.encode()),
            Some(Contribution { key, run, tally })
        );
        for (key, value) in [
            ("node-1:x:calls:p/m", "0,1,0"),
            ("node-1:42:bogus:p/m", "0,1,0"),
            ("node-1:42:calls:p/m", "one"),
            ("node-1", "0,1,0"),
        ] {
            assert_eq!(parse_entry(key, value), None, "{key} = {value}");
        }
    }

    #[test]
    fn a_tally_whose_window_has_passed_is_deleted_not_published() {
        let ledger = Ledger::new(
            RunId {
                node_id: "node-1".into(),
                generation: 1,
            },
            Vec::new(),
        );
        let minute = 60_000;
        let key = CounterKey::new(CounterKind::CallsMinute, "p/m");
        let counter = ledger.counter(key.clone());
        let mut section = CounterSection::new(Duration::ZERO);
        counter.add(1, 10 * minute);
        let first = section.changes(&ledger, &[], 10 * minute);
        assert!(
            matches!(first.as_slice(), [Change::Set { key, .. }] if key.ends_with("calls_minute:p/m")),
            "{first:?}"
        );
        // Counted again in minute 10, but published only in minute 13: by
        // then the tally counts nothing, and its key goes.
        counter.add(1, 10 * minute + 1);
        let later = section.changes(&ledger, &[], 13 * minute);
        assert!(
            later
                .iter()
                .any(|change| matches!(change, Change::Delete { .. })),
            "{later:?}"
        );
        assert!(
            !later
                .iter()
                .any(|change| matches!(change, Change::Set { .. })),
            "{later:?}"
        );
    }
}
