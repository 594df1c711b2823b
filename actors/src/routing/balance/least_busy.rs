//! Least busy: the fewest requests in flight across the cluster, so a
//! deployment other nodes are loading is spared too.

use fastrand::Rng;

use super::{lowest_by, Balancer, Candidate, Need};

#[derive(Debug)]
pub struct LeastBusy;

impl Balancer for LeastBusy {
    fn pick(&self, candidates: &[Candidate<'_>], _need: &Need, rng: &mut Rng) -> usize {
        lowest_by(candidates, rng, |candidate| candidate.in_flight())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{tally, targets};
    use super::*;
    use crate::stats::ClusterDeploymentStats;

    #[test]
    fn counts_this_nodes_calls_and_the_other_nodes_once_each() {
        let targets = targets(&[("a", 1), ("b", 1)]);
        // Here: two calls on `a`, none on `b`.
        let _calls = [
            targets[0].deployment.start_call(0),
            targets[0].deployment.start_call(0),
        ];
        assert_eq!(tally(&LeastBusy, &targets, &Need::default(), 10), [0, 10]);
        // Other nodes have three on `b`: now `a` is the less busy. The
        // merged figure also holds this node's, which must not count twice.
        targets[1]
            .deployment
            .set_cluster_stats(ClusterDeploymentStats {
                in_flight: 3,
                peers_in_flight: 3,
                ..Default::default()
            });
        targets[0]
            .deployment
            .set_cluster_stats(ClusterDeploymentStats {
                in_flight: 2,
                peers_in_flight: 0,
                ..Default::default()
            });
        assert_eq!(tally(&LeastBusy, &targets, &Need::default(), 10), [10, 0]);
    }

    #[test]
    fn ties_are_broken_at_random() {
        let targets = targets(&[("a", 1), ("b", 1)]);
        let counts = tally(&LeastBusy, &targets, &Need::default(), 1_000);
        assert!(counts.iter().all(|count| *count > 400), "{counts:?}");
    }
}
