//! The counters section: every run publishes its own tallies, one entry
//! per subject (a deployment, a key, a team) carrying all of that
//! subject's counters; and one node — the live node with the lowest id —
//! republishes the tallies of runs whose own state gossip no longer
//! shares, so a node that joins later still learns every count. A
//! republished tally is deleted once it is no longer needed: when the
//! node's later run has folded it in (the ledger then forgets it) or when
//! its window has passed.
//!
//! Entries are `node_id:generation:subject` → `tag=tally;…`, so an entry
//! names the run it belongs to, whoever publishes it.
//!
//! What a node publishes of its own is paced: at most its part of
//! [`ROUND_BYTES`] per gossip interval. Chitchat sends a node's changes
//! oldest first, so a node that changed more than peers can take would
//! leave them ever further behind, and an admin change it makes would
//! wait behind all of it. Subjects that wait are published oldest
//! first, those a limit is close to before the rest, and a subject that
//! waits gathers all its changes into one entry.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chorus_proto::counter::{decode_tallies, encode_tallies, CounterKey, CounterKind, Tally};

use super::bus::{Change, Liveness, Observed, RunStatus, Section};
use super::Occasion;
use crate::ledger::{Contribution, Ledger, OwnSubject, RunId};

/// How often windows are checked for expired tallies, and the runs known
/// to the ledger for ones gossip has forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// What the whole cluster may add to its counters' gossip per interval,
/// shared among the live nodes: a quarter of what one exchange carries
/// (chitchat's 65,507-byte UDP payload). Chitchat fills an exchange with
/// the nodes that have the most news first, so if the nodes together made
/// more than an exchange carries, the one with the least (say, one that
/// just changed a key's limits) would wait behind the others for ever;
/// kept well below, one exchange brings a peer every node's news, with
/// room for admin changes and for a peer a round or two behind.
const ROUND_BYTES: i64 = 16_000;

/// What an entry costs in an exchange beyond its key and value: version,
/// status and lengths.
const ENTRY_OVERHEAD: i64 = 16;

pub(super) fn entry_key(run: &RunId, subject: &str) -> String {
    format!("{}:{}:{subject}", run.node_id, run.generation)
}

/// The contributions an entry carries; `None` for garbage.
pub(super) fn parse_entry(key: &str, value: &str) -> Option<Vec<Contribution>> {
    let (node_id, rest) = key.split_once(':')?;
    let (generation, subject) = rest.split_once(':')?;
    let run = RunId {
        node_id: node_id.to_owned(),
        generation: generation.parse().ok()?,
    };
    let contributions = decode_tallies(value)?
        .into_iter()
        .map(|(kind, tally)| Contribution {
            key: CounterKey::new(kind, subject),
            run: run.clone(),
            tally,
        })
        .collect();
    Some(contributions)
}

/// One entry's value from its tallies; `None` when none of them counts
/// anything at `unix_ms` any more (an entry not worth its key).
fn entry_value(subject: &str, tallies: &[(CounterKind, Tally)], unix_ms: u64) -> Option<String> {
    let live: Vec<(CounterKind, &Tally)> = tallies
        .iter()
        .filter(|(kind, tally)| {
            !tally
                .total
                .expired_at(CounterKey::new(*kind, subject).window().epoch(unix_ms))
        })
        .map(|(kind, tally)| (*kind, tally))
        .collect();
    (!live.is_empty()).then(|| encode_tallies(live))
}

pub(super) struct CounterSection {
    /// Until then, runs the ledger knows but gossip has not mentioned may
    /// still be live peers not heard from yet: they are not republished.
    settled_at: Instant,
    settled: bool,
    /// Bytes of own entries that may still go out this interval; below
    /// zero after an entry larger than what was left, which the next
    /// interval pays for.
    allowance: i64,
    /// Own subjects waiting to be published, with their place in line.
    waiting: HashMap<String, u64>,
    next_in_line: u64,
    /// Own subjects whose entry is set in our state.
    published_own: HashSet<String>,
    /// Own subjects with a counter whose window has passed: their entry
    /// shrinks or goes.
    expired: BTreeSet<String>,
    /// Other runs' entries this node republishes, with their values.
    republished: HashMap<(RunId, String), String>,
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
            allowance: 0,
            waiting: HashMap::new(),
            next_in_line: 0,
            published_own: HashSet::new(),
            expired: BTreeSet::new(),
            republished: HashMap::new(),
            departed: BTreeSet::new(),
            designated: false,
            liveness: HashMap::new(),
            recheck: false,
            next_sweep: now,
        }
    }

    pub fn observe(&mut self, ledger: &Ledger, observed: &Observed) {
        let Some(contributions) = parse_entry(&observed.key, &observed.value) else {
            tracing::debug!(publisher = %observed.publisher.node_id, key = %observed.key,
                "ignored an unreadable counter entry");
            return;
        };
        for contribution in contributions {
            let node_id = contribution.run.node_id.clone();
            if ledger.observe(contribution)
                && self.departed.iter().any(|run| run.node_id == node_id)
            {
                // A later run of a departed node may have folded its tallies in.
                self.recheck = true;
            }
        }
    }

    /// What to publish now: own entries that changed (as many as the pace
    /// allows), and the republished set brought up to date with who is in
    /// the cluster.
    pub fn changes(
        &mut self,
        ledger: &Ledger,
        runs: &[RunStatus],
        occasion: Occasion,
        unix_ms: u64,
    ) -> Vec<Change> {
        let now = Instant::now();
        let own_run = ledger.run();
        let membership_changed = self.track_liveness(runs);
        let settling_ends = !self.settled && now >= self.settled_at;
        self.settled |= settling_ends;
        if now >= self.next_sweep || membership_changed || settling_ends {
            self.next_sweep = now + SWEEP_INTERVAL;
            self.expired
                .extend(ledger.expire(unix_ms).into_iter().map(|key| key.subject));
            self.departed = self.find_departed(ledger);
            self.recheck = true;
        }
        self.refill(runs, occasion);
        let mut changes = self.publish_own(ledger, unix_ms);
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
            changes.extend(self.republish(ledger, unix_ms));
        }
        changes
    }

    /// Own subjects that changed, as many as the allowance covers: those
    /// a limit is close to first, with up to half of it, then the line,
    /// longest waiting first — so no subject waits for ever, however many
    /// keys are near their limits.
    fn publish_own(&mut self, ledger: &Ledger, unix_ms: u64) -> Vec<Change> {
        let mut subjects = ledger.unpublished();
        let changed: HashSet<String> = subjects.iter().map(|s| s.subject.clone()).collect();
        for subject in std::mem::take(&mut self.expired) {
            if !changed.contains(&subject) {
                subjects.push(ledger.own_subject(&subject));
            }
        }
        let in_line: HashSet<&str> = subjects.iter().map(|s| s.subject.as_str()).collect();
        self.waiting
            .retain(|subject, _| in_line.contains(subject.as_str()));
        let mut line: Vec<(u64, OwnSubject)> = subjects
            .into_iter()
            .map(|subject| {
                let place = *self
                    .waiting
                    .entry(subject.subject.clone())
                    .or_insert_with(|| {
                        self.next_in_line += 1;
                        self.next_in_line
                    });
                (place, subject)
            })
            .collect();
        line.sort_unstable_by_key(|(place, _)| *place);
        let mut changes = Vec::new();
        let ahead_until = self.allowance - self.allowance.max(0) / 2;
        line.retain(|(_, subject)| {
            if self.allowance <= ahead_until || !subject.is_urgent() {
                return true;
            }
            changes.extend(self.publish(ledger, subject, unix_ms));
            false
        });
        for (_, subject) in line {
            if self.allowance > 0 {
                changes.extend(self.publish(ledger, &subject, unix_ms));
            } else if !changed.contains(&subject.subject) {
                // Still waiting: an expired subject comes back in line too.
                self.expired.insert(subject.subject);
            }
        }
        changes
    }

    /// The entry of an own subject as it is now, charged to the allowance;
    /// or its deletion, when nothing in it counts any more.
    fn publish(&mut self, ledger: &Ledger, subject: &OwnSubject, unix_ms: u64) -> Option<Change> {
        self.waiting.remove(&subject.subject);
        let key = entry_key(ledger.run(), &subject.subject);
        match entry_value(&subject.subject, &subject.take(), unix_ms) {
            Some(value) => {
                self.allowance -= (key.len() + value.len()) as i64 + ENTRY_OVERHEAD;
                self.published_own.insert(subject.subject.clone());
                Some(set(key, value))
            }
            None => self
                .published_own
                .remove(&subject.subject)
                .then(|| delete(key)),
        }
    }

    /// A new interval brings this node's part of [`ROUND_BYTES`] (split
    /// among the live nodes); a leaving node may publish everything.
    fn refill(&mut self, runs: &[RunStatus], occasion: Occasion) {
        let live = runs
            .iter()
            .filter(|status| status.liveness == Liveness::Alive)
            .count()
            .max(1) as i64;
        let per_interval = ROUND_BYTES / live;
        match occasion {
            Occasion::Round => self.allowance = self.allowance.min(0) + per_interval,
            Occasion::News => {}
            Occasion::Leaving => self.allowance = i64::MAX,
        }
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

    /// Brings the republished entries in line with what should be.
    fn republish(&mut self, ledger: &Ledger, unix_ms: u64) -> Vec<Change> {
        let mut grouped: HashMap<(RunId, String), Vec<(CounterKind, Tally)>> = HashMap::new();
        if self.designated {
            for Contribution { key, run, tally } in
                ledger.runs_of(|run| self.departed.contains(run))
            {
                grouped
                    .entry((run, key.subject))
                    .or_default()
                    .push((key.kind, tally));
            }
        }
        let wanted: HashMap<(RunId, String), String> = grouped
            .into_iter()
            .filter_map(|((run, subject), tallies)| {
                let value = entry_value(&subject, &tallies, unix_ms)?;
                Some(((run, subject), value))
            })
            .collect();
        let mut changes = Vec::new();
        self.republished.retain(|(run, subject), _| {
            let keep = wanted.contains_key(&(run.clone(), subject.clone()));
            if !keep {
                changes.push(delete(entry_key(run, subject)));
            }
            keep
        });
        for ((run, subject), value) in wanted {
            let entry = (run, subject);
            if self.republished.get(&entry) != Some(&value) {
                changes.push(set(entry_key(&entry.0, &entry.1), value.clone()));
                self.republished.insert(entry, value);
            }
        }
        changes
    }
}

fn set(key: String, value: String) -> Change {
    Change::Set {
        section: Section::Counters,
        key,
        value,
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
    use chorus_proto::counter::{Buckets, Window};

    use super::*;

    fn run(node_id: &str) -> RunId {
        RunId {
            node_id: node_id.into(),
            generation: 1,
        }
    }

    fn alive(count: usize) -> Vec<RunStatus> {
        (0..count)
            .map(|index| RunStatus {
                run: run(&format!("node-{index}")),
                liveness: Liveness::Alive,
            })
            .collect()
    }

    fn set_keys(changes: &[Change]) -> Vec<&str> {
        changes
            .iter()
            .filter_map(|change| match change {
                Change::Set { key, .. } => Some(key.as_str()),
                Change::Delete { .. } => None,
            })
            .collect()
    }

    #[test]
    fn an_entry_carries_every_counter_of_its_subject_and_garbage_is_refused() {
        let run = RunId {
            node_id: "node-1".into(),
            generation: 42,
        };
        let entry = entry_key(&run, "ollama/llama3:8b");
        assert_eq!(entry, "node-1:42:ollama/llama3:8b");
        let calls = Tally::new(Buckets::new(Window::Lifetime, 0, 7));
        let errors = Tally::new(Buckets::new(Window::Lifetime, 0, 1));
        let value = encode_tallies([(CounterKind::Calls, &calls), (CounterKind::Errors, &errors)]);
        let contribution = |kind, tally| Contribution {
            key: CounterKey::new(kind, "ollama/llama3:8b"),
            run: run.clone(),
            tally,
        };
        assert_eq!(
            parse_entry(&entry, &value),
            Some(vec![
                contribution(CounterKind::Calls, calls),
                contribution(CounterKind::Errors, errors)
            ])
        );
        for (key, value) in [
            ("node-1:x:p/m", "0=0,1,0"),
            ("node-1:42:p/m", "99=0,1,0"),
            ("node-1:42:p/m", "0=one"),
            ("node-1", "0=0,1,0"),
        ] {
            assert_eq!(parse_entry(key, value), None, "{key} = {value}");
        }
    }

    #[test]
    fn a_request_that_moves_several_counters_of_a_key_changes_one_entry() {
        let ledger = Ledger::new(run("node-0"), Vec::new());
        for kind in [CounterKind::RequestsMinute, CounterKind::TokensMinute] {
            ledger.counter(CounterKey::new(kind, "key:k")).add(1, 0);
        }
        let mut section = CounterSection::new(Duration::ZERO);
        let changes = section.changes(&ledger, &alive(1), Occasion::Round, 0);
        assert_eq!(set_keys(&changes), ["node-0:1:key:k"], "{changes:?}");
    }

    #[test]
    fn a_tally_whose_window_has_passed_is_deleted_not_published() {
        let ledger = Ledger::new(run("node-1"), Vec::new());
        let minute = 60_000;
        let key = CounterKey::new(CounterKind::CallsMinute, "p/m");
        let counter = ledger.counter(key.clone());
        let mut section = CounterSection::new(Duration::ZERO);
        counter.add(1, 10 * minute);
        let first = section.changes(&ledger, &[], Occasion::Round, 10 * minute);
        assert_eq!(set_keys(&first), ["node-1:1:p/m"], "{first:?}");
        // Counted again in minute 10, but published only in minute 13: by
        // then the tally counts nothing, and its key goes.
        counter.add(1, 10 * minute + 1);
        let later = section.changes(&ledger, &[], Occasion::Round, 13 * minute);
        assert!(
            later
                .iter()
                .any(|change| matches!(change, Change::Delete { .. })),
            "{later:?}"
        );
        assert!(set_keys(&later).is_empty(), "{later:?}");
    }

    /// Many keys counted at once, on one of five live nodes.
    fn busy_node(keys: usize) -> (Ledger, CounterSection) {
        let ledger = Ledger::new(run("node-0"), Vec::new());
        for index in 0..keys {
            let key = CounterKey::new(CounterKind::RequestsMinute, format!("key:{index:05}"));
            ledger.counter(key).add(1, 0);
        }
        (ledger, CounterSection::new(Duration::ZERO))
    }

    #[test]
    fn own_entries_go_out_at_the_nodes_part_of_the_round_bytes_per_interval() {
        let (ledger, mut section) = busy_node(2_000);
        let runs = alive(5);
        let mut published = 0;
        let mut rounds = 0;
        while published < 2_000 {
            let changes = section.changes(&ledger, &runs, Occasion::Round, 0);
            let bytes: usize = changes
                .iter()
                .map(|change| match change {
                    Change::Set { key, value, .. } => key.len() + value.len() + 16,
                    Change::Delete { .. } => 0,
                })
                .sum();
            // One entry may overdraw what was left.
            assert!(bytes <= 16_000 / 5 + 64, "round {rounds}: {bytes} bytes");
            // News within the interval finds the allowance spent.
            assert!(section
                .changes(&ledger, &runs, Occasion::News, 0)
                .is_empty());
            published += changes.len();
            rounds += 1;
        }
        assert_eq!(published, 2_000, "each waiting key published once");
        assert!(rounds > 1, "2,000 entries do not fit one node's part");
        assert!(
            section
                .changes(&ledger, &runs, Occasion::Round, 0)
                .is_empty(),
            "nothing left to publish"
        );
    }

    #[test]
    fn keys_a_limit_is_close_to_go_first_then_the_longest_waiting() {
        let (ledger, mut section) = busy_node(2_000);
        let runs = alive(5);
        let first = section.changes(&ledger, &runs, Occasion::Round, 0);
        assert_eq!(set_keys(&first)[0], "node-0:1:key:00000");
        // Counted again: a key near its limit jumps the line, the others
        // wait behind the keys that have waited longer.
        for index in [1_999, 0] {
            let key = CounterKey::new(CounterKind::RequestsMinute, format!("key:{index:05}"));
            ledger.counter(key).add(1, 0);
        }
        ledger
            .counter(CounterKey::new(CounterKind::RequestsMinute, "key:01999"))
            .mark_urgent();
        let second = section.changes(&ledger, &runs, Occasion::Round, 0);
        let second = set_keys(&second);
        assert_eq!(second[0], "node-0:1:key:01999", "{second:?}");
        assert_eq!(second[1], format!("node-0:1:key:{:05}", first.len()));
        assert!(!second.contains(&"node-0:1:key:00000"));
    }

    #[test]
    fn keys_near_their_limits_do_not_hold_the_others_back_for_ever() {
        let (ledger, mut section) = busy_node(500);
        let runs = alive(5);
        let keys: Vec<_> = (0..500)
            .map(|index| {
                ledger.counter(CounterKey::new(
                    CounterKind::RequestsMinute,
                    format!("key:{index:05}"),
                ))
            })
            .collect();
        ledger
            .counter(CounterKey::new(CounterKind::Calls, "p/m"))
            .add(1, 0);
        for round in 0.. {
            // Every key is counted again and near its limit, every round.
            for key in &keys {
                key.add(1, 0);
                key.mark_urgent();
            }
            let changes = section.changes(&ledger, &runs, Occasion::Round, 0);
            if set_keys(&changes).contains(&"node-0:1:p/m") {
                break;
            }
            assert!(round < 100, "the deployment's counts never went out");
        }
    }

    #[test]
    fn a_leaving_node_publishes_everything() {
        let (ledger, mut section) = busy_node(2_000);
        let changes = section.changes(&ledger, &alive(5), Occasion::Leaving, 0);
        assert_eq!(changes.len(), 2_000);
    }
}
