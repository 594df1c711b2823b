//! Usage based: the most headroom left against the deployment's own
//! requests- and tokens-per-minute quotas, counted across the cluster.

use fastrand::Rng;

use super::{lowest_by, Balancer, Candidate, Need};

#[derive(Debug)]
pub struct UsageBased;

impl Balancer for UsageBased {
    fn pick(&self, candidates: &[Candidate<'_>], need: &Need, rng: &mut Rng) -> usize {
        // The most headroom is the lowest negated headroom.
        lowest_by(candidates, rng, |candidate| -candidate.headroom(need))
    }

    fn reads_tokens(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{tally, targets};
    use super::*;
    use crate::deployment::Quota;
    use crate::testing::{ledger, with_quota};

    #[test]
    fn the_most_headroom_wins() {
        let mut targets = targets(&[("small", 1), ("large", 1)]);
        targets[0].deployment = with_quota(
            "small",
            Quota {
                rpm: Some(10),
                tpm: None,
            },
            &ledger("test"),
        );
        targets[1].deployment = with_quota(
            "large",
            Quota {
                rpm: Some(100),
                tpm: None,
            },
            &ledger("test"),
        );
        let need = Need::default();
        assert_eq!(tally(&UsageBased, &targets, &need, 10), [0, 10]);
        // 95 of `large`'s 100 used: `small`, with all of its 10, has more left.
        for _ in 0..95 {
            drop(targets[1].deployment.start_call(0));
        }
        assert_eq!(tally(&UsageBased, &targets, &need, 10), [10, 0]);
    }
}
