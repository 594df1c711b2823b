//! Cost based: the deployment where this request costs least, at its
//! prompt estimate and `max_tokens`. Over-quota deployments never get here.

use fastrand::Rng;

use super::{lowest_by, Balancer, Candidate, Need};

#[derive(Debug)]
pub struct CostBased;

impl Balancer for CostBased {
    fn pick(&self, candidates: &[Candidate<'_>], need: &Need, rng: &mut Rng) -> usize {
        lowest_by(candidates, rng, |candidate| candidate.cost_pico(need))
    }

    fn reads_tokens(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{tally, targets};
    use super::*;
    use crate::testing::priced;

    #[test]
    fn the_cheapest_for_the_request_wins() {
        let mut targets = targets(&[("cheap-in", 1), ("cheap-out", 1)]);
        // Prompt-heavy requests favour cheap input, and the reverse.
        targets[0].deployment = priced("cheap-in", 100, 10_000);
        targets[1].deployment = priced("cheap-out", 1_000, 1_000);
        let long_prompt = Need {
            stream: false,
            prompt_tokens: 10_000,
            max_output_tokens: 10,
        };
        let long_reply = Need {
            stream: false,
            prompt_tokens: 10,
            max_output_tokens: 10_000,
        };
        assert_eq!(tally(&CostBased, &targets, &long_prompt, 20), [20, 0]);
        assert_eq!(tally(&CostBased, &targets, &long_reply, 20), [0, 20]);
    }
}
