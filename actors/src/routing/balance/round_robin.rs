//! Round robin: each candidate in turn, whatever its load or weight.

use std::sync::atomic::{AtomicUsize, Ordering};

use fastrand::Rng;

use super::{Balancer, Candidate, Need};

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(&self, candidates: &[Candidate<'_>], _need: &Need, _rng: &mut Rng) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{candidates, targets};
    use super::*;

    #[test]
    fn takes_turns() {
        let targets = targets(&[("a", 1), ("b", 5), ("c", 1)]);
        let candidates = candidates(&targets);
        let balancer = RoundRobin::default();
        let mut rng = Rng::with_seed(1);
        let picks: Vec<&str> = (0..6)
            .map(|_| {
                candidates[balancer.pick(&candidates, &Need::default(), &mut rng)]
                    .deployment()
                    .name()
            })
            .collect();
        assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
    }
}
