//! Cluster-wide counters as state-based CRDTs keyed by node id.
//!
//! Each node adds only to its own contribution; the cluster value is the sum
//! of every node's contribution, and merging takes the larger contribution
//! per node. So a counter gossiped twice, out of order, or through several
//! peers is never double-counted, and a merged counter never goes below
//! either input. The per-node storage is `crdts::VClock`, whose merge is
//! exactly this per-node max; the types here give it counter meaning.

use crdts::{CmRDT, CvRDT, Dot, VClock};
use serde::{Deserialize, Serialize};

/// A node's stable identity in the cluster (`[cluster] node_id`).
pub type NodeId = String;

/// A grow-only counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GCounter {
    contributions: VClock<NodeId>,
}

impl GCounter {
    pub fn new() -> Self {
        GCounter::default()
    }

    /// Adds `amount` to `node`'s own contribution. Only the node itself
    /// should call this with its own id.
    pub fn add(&mut self, node: &str, amount: u64) {
        let total = self.contribution(node).saturating_add(amount);
        self.contributions.apply(Dot::new(node.to_owned(), total));
    }

    /// Takes `total` as `node`'s contribution if it is larger than the one
    /// already known: what a peer's published value or a stored one means.
    pub fn observe(&mut self, node: &str, total: u64) {
        self.contributions.apply(Dot::new(node.to_owned(), total));
    }

    pub fn contribution(&self, node: &str) -> u64 {
        self.contributions.dots.get(node).copied().unwrap_or(0)
    }

    /// Every node's contribution, in node id order.
    pub fn contributions(&self) -> impl Iterator<Item = (&str, u64)> {
        self.contributions
            .dots
            .iter()
            .map(|(node, total)| (node.as_str(), *total))
    }

    /// The cluster-wide value, saturating at `u64::MAX`.
    pub fn value(&self) -> u64 {
        self.contributions
            .dots
            .values()
            .fold(0u64, |sum, total| sum.saturating_add(*total))
    }

    pub fn merge(&mut self, other: &GCounter) {
        self.contributions.merge(other.contributions.clone());
    }
}

/// A counter that can also go down (reservations released, for example):
/// one grow-only counter of increments and one of decrements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PNCounter {
    increments: GCounter,
    decrements: GCounter,
}

impl PNCounter {
    pub fn new() -> Self {
        PNCounter::default()
    }

    pub fn add(&mut self, node: &str, amount: u64) {
        self.increments.add(node, amount);
    }

    pub fn subtract(&mut self, node: &str, amount: u64) {
        self.decrements.add(node, amount);
    }

    /// Takes a node's published (increments, decrements) totals, each if larger.
    pub fn observe(&mut self, node: &str, increments: u64, decrements: u64) {
        self.increments.observe(node, increments);
        self.decrements.observe(node, decrements);
    }

    /// `node`'s (increments, decrements) totals.
    pub fn contribution(&self, node: &str) -> (u64, u64) {
        (
            self.increments.contribution(node),
            self.decrements.contribution(node),
        )
    }

    /// The cluster-wide value: all increments minus all decrements.
    pub fn value(&self) -> i128 {
        i128::from(self.increments.value()) - i128::from(self.decrements.value())
    }

    pub fn merge(&mut self, other: &PNCounter) {
        self.increments.merge(&other.increments);
        self.decrements.merge(&other.decrements);
    }
}

#[cfg(test)]
mod tests {
    use chorus_proto::codec;
    use proptest::prelude::*;

    use super::*;

    const NODES: [&str; 4] = ["node-a", "node-b", "node-c", "node-d"];

    /// A counter built by a sequence of (node, amount) additions.
    fn g_counter() -> impl Strategy<Value = GCounter> {
        proptest::collection::vec((0..NODES.len(), 0..1_000_000u64), 0..12).prop_map(|adds| {
            let mut counter = GCounter::new();
            for (node, amount) in adds {
                counter.add(NODES[node], amount);
            }
            counter
        })
    }

    fn pn_counter() -> impl Strategy<Value = PNCounter> {
        proptest::collection::vec((0..NODES.len(), any::<bool>(), 0..1_000_000u64), 0..12).prop_map(
            |ops| {
                let mut counter = PNCounter::new();
                for (node, up, amount) in ops {
                    if up {
                        counter.add(NODES[node], amount);
                    } else {
                        counter.subtract(NODES[node], amount);
                    }
                }
                counter
            },
        )
    }

    fn merged<T: Clone>(a: &T, b: &T, merge: impl Fn(&mut T, &T)) -> T {
        let mut out = a.clone();
        merge(&mut out, b);
        out
    }

    proptest! {
        #[test]
        fn g_merge_is_commutative_associative_idempotent(a in g_counter(), b in g_counter(), c in g_counter()) {
            let m = |x: &mut GCounter, y: &GCounter| x.merge(y);
            prop_assert_eq!(merged(&a, &b, m), merged(&b, &a, m));
            prop_assert_eq!(merged(&merged(&a, &b, m), &c, m), merged(&a, &merged(&b, &c, m), m));
            prop_assert_eq!(merged(&a, &a, m), a.clone());
        }

        #[test]
        fn g_merge_never_goes_below_either_input(a in g_counter(), b in g_counter()) {
            let both = merged(&a, &b, |x, y| x.merge(y));
            prop_assert!(both.value() >= a.value() && both.value() >= b.value());
            for node in NODES {
                prop_assert!(both.contribution(node) >= a.contribution(node).max(b.contribution(node)));
            }
        }

        #[test]
        fn pn_merge_is_commutative_associative_idempotent(a in pn_counter(), b in pn_counter(), c in pn_counter()) {
            let m = |x: &mut PNCounter, y: &PNCounter| x.merge(y);
            prop_assert_eq!(merged(&a, &b, m), merged(&b, &a, m));
            prop_assert_eq!(merged(&merged(&a, &b, m), &c, m), merged(&a, &merged(&b, &c, m), m));
            prop_assert_eq!(merged(&a, &a, m), a.clone());
        }

        #[test]
        fn pn_merge_keeps_every_contribution(a in pn_counter(), b in pn_counter()) {
            let both = merged(&a, &b, |x, y| x.merge(y));
            for node in NODES {
                let (up, down) = both.contribution(node);
                prop_assert!(up >= a.contribution(node).0.max(b.contribution(node).0));
                prop_assert!(down >= a.contribution(node).1.max(b.contribution(node).1));
            }
        }

        #[test]
        fn counters_survive_the_codec(a in g_counter(), b in pn_counter()) {
            prop_assert_eq!(codec::decode::<GCounter>(&codec::encode(&a).unwrap()).unwrap(), a);
            prop_assert_eq!(codec::decode::<PNCounter>(&codec::encode(&b).unwrap()).unwrap(), b);
        }
    }

    #[test]
    fn duplicated_or_reordered_observations_count_once() {
        let mut seen = GCounter::new();
        for total in [5, 3, 5, 9, 9, 1] {
            seen.observe("node-b", total);
        }
        seen.add("node-a", 2);
        assert_eq!(seen.value(), 11);
        assert_eq!(
            seen.contributions().collect::<Vec<_>>(),
            [("node-a", 2), ("node-b", 9)]
        );
        let mut pn = PNCounter::new();
        pn.add("node-a", 10);
        pn.subtract("node-a", 4);
        pn.observe("node-b", 3, 5);
        pn.observe("node-b", 2, 1);
        assert_eq!(pn.value(), 10 - 4 + 3 - 5);
    }
}
