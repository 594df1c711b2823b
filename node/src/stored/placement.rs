//! Which nodes hold an item: rendezvous (highest random weight) hashing
//! of the item's place over the live members. Every node ranks the same
//! members the same way with no coordination, and when a member leaves,
//! the others keep their order: the second holder of an item whose first
//! holder died is now its first, so a reader finds it at once.

use sha2::{Digest, Sha256};

/// A node that can hold items: its id, and where its HTTP API is (`None`
/// for this node itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node_id: String,
    pub http_addr: Option<String>,
}

/// `members` ranked for `place`, the first the most preferred.
pub fn ranked(place: &str, mut members: Vec<Holder>) -> Vec<Holder> {
    members.sort_by_cached_key(|member| std::cmp::Reverse(weight(place, &member.node_id)));
    members
}

fn weight(place: &str, node_id: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((place.len() as u64).to_be_bytes());
    hash.update(place.as_bytes());
    hash.update(node_id.as_bytes());
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str]) -> Vec<Holder> {
        ids.iter()
            .map(|id| Holder {
                node_id: (*id).into(),
                http_addr: None,
            })
            .collect()
    }

    fn order(place: &str, ids: &[&str]) -> Vec<String> {
        ranked(place, members(ids))
            .into_iter()
            .map(|holder| holder.node_id)
            .collect()
    }

    #[test]
    fn every_node_ranks_alike_and_a_leaving_node_keeps_the_others_order() {
        let all = ["a", "b", "c", "d", "e"];
        for place in (0..200).map(|n| format!("resp_{n}")) {
            let full = order(&place, &all);
            let mut shuffled = all;
            shuffled.reverse();
            assert_eq!(
                order(&place, &shuffled),
                full,
                "input order does not matter"
            );
            let gone = full[0].clone();
            let rest: Vec<&str> = all.iter().copied().filter(|id| *id != gone).collect();
            assert_eq!(order(&place, &rest), full[1..], "{place} without {gone}");
        }
    }

    #[test]
    fn places_spread_over_the_members() {
        let all = ["a", "b", "c", "d"];
        let mut firsts = std::collections::HashMap::new();
        for place in (0..4000).map(|n| format!("conv_{n}")) {
            *firsts.entry(order(&place, &all)[0].clone()).or_insert(0) += 1;
        }
        for id in all {
            let share = firsts[id];
            assert!(
                (800..1200).contains(&share),
                "{id} first for {share} of 4000"
            );
        }
    }
}
