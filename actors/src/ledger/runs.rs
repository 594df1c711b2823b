//! The runs (processes) of one node that still count for one counter, and
//! how their tallies add up without counting anything twice.
//!
//! Each run's total includes what it folded in from the runs before it
//! (`earlier_runs`). Going from the oldest run to the newest, the node's
//! count is the newest total plus whatever the older runs counted beyond
//! what the next run had folded: `L(k) = T(k) + (L(k-1) - E(k))`. Once a
//! run has folded everything before it (`E(k)` covers `L(k-1)`), the older
//! runs add nothing and are forgotten; that is what keeps a node that
//! restarts often from piling up tallies.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

use chorus_proto::counter::{Buckets, Tally};

/// Tallies by generation, oldest first.
#[derive(Debug, Default, Clone)]
pub(super) struct Runs(BTreeMap<u64, Tally>);

/// What an observation changed, for the store.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct RunChanges {
    /// The observed run's tally grew.
    pub grew: bool,
    /// Runs now folded into a later one and forgotten.
    pub forgotten: Vec<u64>,
}

impl Runs {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, generation: u64) -> Option<&Tally> {
        self.0.get(&generation)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &Tally)> + '_ {
        self.0
            .iter()
            .map(|(generation, tally)| (*generation, tally))
    }

    /// `tally` merged into what run `generation` is known to have
    /// counted, or `None` when that adds nothing.
    fn merged(&self, generation: u64, tally: &Tally) -> Option<Tally> {
        let known = self.0.get(&generation);
        let merged = known.cloned().unwrap_or_default().merge(tally);
        let adds = match known {
            Some(known) => merged != *known,
            None => merged != Tally::default(),
        };
        adds.then_some(merged)
    }

    /// Takes in what run `generation` says it counted, then forgets every
    /// run that a later run has folded in. A late echo of a run already
    /// forgotten changes nothing.
    pub fn observe(&mut self, generation: u64, tally: &Tally) -> RunChanges {
        let Some(merged) = self.merged(generation, tally) else {
            return RunChanges::default();
        };
        let known = self.0.insert(generation, merged);
        let mut forgotten = self.forget_folded();
        let folded_already = forgotten.contains(&generation);
        if known.is_none() {
            forgotten.retain(|forgotten| *forgotten != generation);
        }
        RunChanges {
            grew: !folded_already,
            forgotten,
        }
    }

    /// Takes in a reservation count of run `generation` (see
    /// [`CounterKind::is_held`](chorus_proto::counter::CounterKind::is_held)):
    /// only the newest run's stands, so an older run's is forgotten, and a
    /// late echo of one changes nothing.
    pub fn observe_newest(&mut self, generation: u64, tally: &Tally) -> RunChanges {
        if self
            .0
            .range((Excluded(generation), Unbounded))
            .next()
            .is_some()
        {
            return RunChanges::default();
        }
        let Some(merged) = self.merged(generation, tally) else {
            return RunChanges::default();
        };
        let newer = self.0.split_off(&generation);
        let forgotten = std::mem::replace(&mut self.0, newer);
        self.0.insert(generation, merged);
        RunChanges {
            grew: true,
            forgotten: forgotten.into_keys().collect(),
        }
    }

    /// Everything counted by the runs older than `generation`, or `None`
    /// when there are none.
    pub fn lineage_before(&self, generation: u64) -> Option<Buckets> {
        self.0.range(..generation).fold(None, |lineage, (_, run)| {
            Some(match lineage {
                None => run.total.clone(),
                Some(lineage) => run.total.plus(&lineage.minus(&run.earlier_runs)),
            })
        })
    }

    /// Everything the node counted, across all its runs.
    pub fn total(&self) -> Buckets {
        self.lineage_before(u64::MAX).unwrap_or_default()
    }

    /// Drops the runs older than the newest run that has folded them all.
    fn forget_folded(&mut self) -> Vec<u64> {
        let folded_up_to = self
            .0
            .iter()
            .rev()
            .find(|(generation, run)| {
                self.lineage_before(**generation)
                    .is_some_and(|lineage| run.earlier_runs.covers(&lineage))
            })
            .map(|(generation, _)| *generation);
        let Some(newest_folder) = folded_up_to else {
            return Vec::new();
        };
        let kept = self.0.split_off(&newest_folder);
        let forgotten = std::mem::replace(&mut self.0, kept);
        forgotten.into_keys().collect()
    }

    /// Drops runs whose counts have expired with their window.
    pub fn expire(&mut self, epoch: u64) -> Vec<u64> {
        let expired: Vec<u64> = self
            .0
            .iter()
            .filter(|(_, run)| run.total.expired_at(epoch))
            .map(|(generation, _)| *generation)
            .collect();
        for generation in &expired {
            self.0.remove(generation);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use chorus_proto::counter::Window;

    use super::*;

    fn run(total: u64, earlier_runs: u64) -> Tally {
        Tally {
            total: Buckets::new(Window::Lifetime, 0, total),
            earlier_runs: Buckets::new(Window::Lifetime, 0, earlier_runs),
        }
    }

    #[test]
    fn only_the_newest_run_of_a_reservation_count_stands() {
        let mut runs = Runs::default();
        assert!(runs.observe_newest(1, &run(5, 0)).grew);
        let changes = runs.observe_newest(2, &run(3, 0));
        assert_eq!((changes.grew, changes.forgotten), (true, vec![1]));
        assert_eq!(
            runs.observe_newest(1, &run(9, 0)),
            RunChanges::default(),
            "a dead run's late echo"
        );
        assert_eq!(runs.observe_newest(2, &run(2, 0)), RunChanges::default());
        assert_eq!(runs.iter().collect::<Vec<_>>(), vec![(2, &run(3, 0))]);
    }

    #[test]
    fn a_run_that_has_not_folded_its_predecessor_adds_to_it() {
        let mut runs = Runs::default();
        runs.observe(1, &run(100, 0));
        // Run 2 started from a store that had 80 of run 1's 100.
        runs.observe(2, &run(80 + 30, 80));
        assert_eq!(runs.total().newest(), 100 + 30);
        assert_eq!(runs.iter().count(), 2);
        // Run 2 learns run 1's last 20 from a peer.
        let changes = runs.observe(2, &run(100 + 30, 100));
        assert_eq!(changes.forgotten, [1]);
        assert_eq!(runs.total().newest(), 130);
        assert!(
            runs.observe(1, &run(100, 0)) == RunChanges::default(),
            "a late echo of a folded run changes nothing"
        );
        assert_eq!(runs.total().newest(), 130);
    }

    #[test]
    fn a_chain_of_partly_folded_runs_counts_each_count_once() {
        let mut runs = Runs::default();
        runs.observe(1, &run(100, 0));
        runs.observe(2, &run(50 + 30, 50));
        // Run 3 folded runs 1 and 2 completely (100 + 30), then counted 10.
        runs.observe(3, &run(130 + 10, 130));
        assert_eq!(runs.total().newest(), 140);
        assert_eq!(runs.iter().map(|(g, _)| g).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn a_run_that_knew_only_stale_figures_still_counts_everything() {
        let mut runs = Runs::default();
        runs.observe(1, &run(100, 0));
        runs.observe(2, &run(100 + 20, 100));
        // Run 3 knew only 80 of run 1 and nothing of run 2.
        runs.observe(3, &run(80 + 5, 80));
        assert_eq!(runs.total().newest(), 100 + 20 + 5);
        assert_eq!(runs.lineage_before(3).unwrap().newest(), 120);
    }

    #[test]
    fn windowed_runs_expire() {
        let mut runs = Runs::default();
        runs.observe(1, &Tally::new(Buckets::new(Window::Day, 10, 4)));
        assert_eq!(runs.expire(11), Vec::<u64>::new());
        assert_eq!(runs.expire(12), [1]);
        assert!(runs.is_empty());
    }
}
