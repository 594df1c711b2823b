//! Latency based: the fastest deployment for this kind of request (time
//! to first token for a stream, time per output token otherwise), chosen
//! at random among all within a buffer of the fastest so that it is not
//! stampeded. Deployments with no sample yet count as fast, so they get
//! traffic and a figure.

use fastrand::Rng;

use super::{weighted_among, Balancer, Candidate, Need};

#[derive(Debug)]
pub struct LatencyBased {
    buffer: f64,
}

impl LatencyBased {
    pub fn new(buffer: f64) -> Self {
        LatencyBased { buffer }
    }
}

impl Balancer for LatencyBased {
    fn pick(&self, candidates: &[Candidate<'_>], need: &Need, rng: &mut Rng) -> usize {
        let figures: Vec<Option<f64>> = candidates
            .iter()
            .map(|candidate| candidate.latency_ms(need))
            .collect();
        let fastest = figures
            .iter()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let cutoff = fastest * (1.0 + self.buffer);
        let near: Vec<usize> = (0..candidates.len())
            .filter(|&index| figures[index].is_none_or(|figure| figure <= cutoff))
            .collect();
        weighted_among(candidates, &near, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{tally, targets};
    use super::*;
    use crate::stats::ClusterDeploymentStats;

    fn latency(ttft: f64, per_token: f64) -> ClusterDeploymentStats {
        ClusterDeploymentStats {
            ttft_ms: Some(ttft),
            ms_per_output_token: Some(per_token),
            ..Default::default()
        }
    }

    #[test]
    fn the_fastest_and_those_within_the_buffer_share_the_traffic() {
        let targets = targets(&[("fast", 1), ("close", 1), ("slow", 1)]);
        targets[0]
            .deployment
            .set_cluster_stats(latency(100.0, 10.0));
        targets[1]
            .deployment
            .set_cluster_stats(latency(500.0, 10.5));
        targets[2].deployment.set_cluster_stats(latency(50.0, 20.0));
        let balancer = LatencyBased::new(0.1);
        let chat = Need::default();
        let counts = tally(&balancer, &targets, &chat, 1_000);
        assert_eq!(counts[2], 0, "{counts:?}");
        assert!(counts[0] > 400 && counts[1] > 400, "{counts:?}");
        // A stream waits on the first token: there `slow` is the fastest.
        let stream = Need {
            stream: true,
            ..Need::default()
        };
        assert_eq!(tally(&balancer, &targets, &stream, 100), [0, 0, 100]);
    }

    #[test]
    fn a_deployment_without_samples_still_gets_traffic() {
        let targets = targets(&[("known", 1), ("new", 1)]);
        targets[0]
            .deployment
            .set_cluster_stats(latency(100.0, 10.0));
        let counts = tally(&LatencyBased::new(0.1), &targets, &Need::default(), 1_000);
        assert!(counts[1] > 400, "{counts:?}");
    }
}
