//! Weighted: at random, in proportion to each deployment's weight in the
//! alias. The default: it spreads load as configured and needs no figures.

use fastrand::Rng;

use super::{weighted_among, Balancer, Candidate, Need};

#[derive(Debug)]
pub struct Weighted;

impl Balancer for Weighted {
    fn pick(&self, candidates: &[Candidate<'_>], _need: &Need, rng: &mut Rng) -> usize {
        let all: Vec<usize> = (0..candidates.len()).collect();
        weighted_among(candidates, &all, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{tally, targets};
    use super::*;

    #[test]
    fn picks_in_proportion_to_weight() {
        let targets = targets(&[("a", 3), ("b", 1)]);
        let counts = tally(&Weighted, &targets, &Need::default(), 4_000);
        assert!((2_850..=3_150).contains(&counts[0]), "{counts:?}");
    }
}
