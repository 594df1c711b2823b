//! The balancers: each ranks an alias's candidates for one request and
//! picks the best. The attempt plan asks again for each retry, with the
//! deployments already tried left out and the figures as they are then,
//! so one balancer orders a request's attempts. One small file per
//! strategy; [`STRATEGIES`] is where they are named.

mod cost_based;
mod latency_based;
mod least_busy;
mod round_robin;
mod usage_based;
mod weighted;

use fastrand::Rng;

use super::candidate::{Candidate, Need};

pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// The index in `candidates`, never empty, of the one to try.
    fn pick(&self, candidates: &[Candidate<'_>], need: &Need, rng: &mut Rng) -> usize;

    /// Whether it reads the request's token estimate, which is then worked
    /// out for each request.
    fn reads_tokens(&self) -> bool {
        false
    }
}

/// An alias's settings a strategy may read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalancerOptions {
    /// `latency-based`: how far behind the fastest, as a fraction of its
    /// figure, a deployment may be and still be chosen.
    pub latency_buffer: f64,
}

impl Default for BalancerOptions {
    fn default() -> Self {
        BalancerOptions {
            latency_buffer: 0.1,
        }
    }
}

type Make = fn(&BalancerOptions) -> Box<dyn Balancer>;

/// Every strategy by its config name; the first is the default.
pub const STRATEGIES: [(&str, Make); 6] = [
    ("weighted", |_| Box::new(weighted::Weighted)),
    ("round-robin", |_| Box::<round_robin::RoundRobin>::default()),
    ("least-busy", |_| Box::new(least_busy::LeastBusy)),
    ("latency-based", |options| {
        Box::new(latency_based::LatencyBased::new(options.latency_buffer))
    }),
    ("cost-based", |_| Box::new(cost_based::CostBased)),
    ("usage-based", |_| Box::new(usage_based::UsageBased)),
];

pub const DEFAULT_STRATEGY: &str = STRATEGIES[0].0;

/// The default strategy's balancer.
pub fn default_balancer() -> Box<dyn Balancer> {
    (STRATEGIES[0].1)(&BalancerOptions::default())
}

/// The balancer a config names, or `None` for an unknown name.
pub fn named(name: &str, options: &BalancerOptions) -> Option<Box<dyn Balancer>> {
    STRATEGIES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, make)| make(options))
}

/// One of `indices` into `candidates`, at random in proportion to the
/// candidates' weights.
fn weighted_among(candidates: &[Candidate<'_>], indices: &[usize], rng: &mut Rng) -> usize {
    let total: u64 = indices
        .iter()
        .map(|&index| u64::from(candidates[index].weight()))
        .sum();
    if total == 0 {
        return indices[rng.usize(..indices.len())];
    }
    let mut draw = rng.u64(..total);
    for &index in indices {
        let weight = u64::from(candidates[index].weight());
        if draw < weight {
            return index;
        }
        draw -= weight;
    }
    indices[indices.len() - 1]
}

/// The candidates with the lowest `score`, one of them by weight.
fn lowest_by<S: PartialOrd + Copy>(
    candidates: &[Candidate<'_>],
    rng: &mut Rng,
    score: impl Fn(&Candidate<'_>) -> S,
) -> usize {
    let scores: Vec<S> = candidates.iter().map(&score).collect();
    let mut best = scores[0];
    for &value in &scores[1..] {
        if value < best {
            best = value;
        }
    }
    let tied: Vec<usize> = (0..candidates.len())
        .filter(|&index| scores[index] == best)
        .collect();
    weighted_among(candidates, &tied, rng)
}

#[cfg(test)]
mod testing {
    //! A candidate list over canned deployments, for the strategies' tests.

    use super::super::candidate::Target;
    use super::*;
    use crate::testing::{deployment, ledger};

    pub fn targets(names: &[(&str, u32)]) -> Vec<Target> {
        let ledger = ledger("test");
        names
            .iter()
            .map(|(name, weight)| Target {
                deployment: deployment(name, &ledger),
                weight: *weight,
            })
            .collect()
    }

    pub fn candidates(targets: &[Target]) -> Vec<Candidate<'_>> {
        targets
            .iter()
            .map(|target| Candidate { target, now_ms: 0 })
            .collect()
    }

    /// How often each candidate is picked in `draws` tries.
    pub fn tally(
        balancer: &dyn Balancer,
        targets: &[Target],
        need: &Need,
        draws: usize,
    ) -> Vec<usize> {
        let candidates = candidates(targets);
        let mut rng = Rng::with_seed(7);
        let mut counts = vec![0; targets.len()];
        for _ in 0..draws {
            counts[balancer.pick(&candidates, need, &mut rng)] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_is_named_once_and_the_default_is_weighted() {
        let options = BalancerOptions::default();
        for (name, _) in STRATEGIES {
            assert!(named(name, &options).is_some(), "{name}");
            assert_eq!(
                STRATEGIES
                    .iter()
                    .filter(|(other, _)| *other == name)
                    .count(),
                1
            );
        }
        assert_eq!(DEFAULT_STRATEGY, "weighted");
        assert!(named("fastest", &options).is_none());
    }
}
