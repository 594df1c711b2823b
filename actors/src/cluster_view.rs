//! The cluster-wide view of a deployment, merged from the reports every
//! node gossips about its current run: in-flight summed over live nodes,
//! this-run counts summed over every node known (a dead node's last run
//! still happened), latencies averaged weighted by each node's finished
//! calls, health the worst any live node reports. The durable, all-time
//! counts are the ledger's.

use chorus_proto::gossip::DeploymentReport;

use crate::stats::{ClusterDeploymentStats, Health};

/// One node's report on one deployment, as read from gossip.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeReport {
    pub node_id: String,
    pub alive: bool,
    pub deployment: String,
    pub report: DeploymentReport,
}

/// A weighted mean of the values that exist.
#[derive(Default)]
struct WeightedMean {
    sum: f64,
    weight: f64,
}

impl WeightedMean {
    /// Values that are not finite (a peer's bug or garbage) are left out.
    fn add(&mut self, value: Option<f32>, weight: u64) {
        if let Some(value) = value.filter(|value| value.is_finite()) {
            // A node with a figure but no finished calls yet still counts once.
            let weight = weight.max(1) as f64;
            self.sum += f64::from(value) * weight;
            self.weight += weight;
        }
    }

    fn value(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.sum / self.weight)
    }
}

pub fn merge<'a>(reports: impl IntoIterator<Item = &'a NodeReport>) -> ClusterDeploymentStats {
    let mut merged = ClusterDeploymentStats::default();
    let (mut latency, mut ttft, mut per_token) = (
        WeightedMean::default(),
        WeightedMean::default(),
        WeightedMean::default(),
    );
    for NodeReport { alive, report, .. } in reports {
        merged.nodes += 1;
        // Peer figures are untrusted input: saturate rather than overflow.
        merged.finished = merged.finished.saturating_add(report.finished);
        merged.errors = merged.errors.saturating_add(report.errors);
        merged.cancelled = merged.cancelled.saturating_add(report.cancelled);
        latency.add(report.latency_ms, report.finished);
        ttft.add(report.ttft_ms, report.finished);
        per_token.add(report.ms_per_output_token, report.finished);
        if *alive {
            merged.in_flight = merged.in_flight.saturating_add(report.in_flight);
            merged.health = merged.health.max(Health::from_consecutive_failures(
                report.consecutive_failures,
            ));
        }
    }
    merged.latency_ms = latency.value();
    merged.ttft_ms = ttft.value();
    merged.ms_per_output_token = per_token.value();
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        node: &str,
        alive: bool,
        in_flight: u64,
        finished: u64,
        latency: Option<f32>,
        failures: u32,
    ) -> NodeReport {
        NodeReport {
            node_id: node.into(),
            alive,
            deployment: "p/m".into(),
            report: DeploymentReport {
                in_flight,
                finished,
                errors: failures.into(),
                latency_ms: latency,
                consecutive_failures: failures,
                ..DeploymentReport::default()
            },
        }
    }

    #[test]
    fn sums_live_load_keeps_dead_counts_and_takes_the_worst_health() {
        let reports = [
            report("a", true, 2, 10, Some(100.0), 0),
            report("b", true, 3, 30, Some(200.0), 1),
            report("c", false, 9, 60, Some(50.0), 5),
        ];
        let merged = merge(&reports);
        assert_eq!(merged.nodes, 3);
        assert_eq!(
            merged.in_flight, 5,
            "a dead node's in-flight calls are gone"
        );
        assert_eq!(
            merged.finished, 100,
            "a dead node's finished calls still count"
        );
        assert_eq!(
            merged.health,
            Health::Degraded,
            "a dead node's failures do not mark the deployment"
        );
        let expected = (100.0 * 10.0 + 200.0 * 30.0 + 50.0 * 60.0) / 100.0;
        assert!((merged.latency_ms.unwrap() - expected).abs() < 1e-9);
        assert_eq!(merge(&[]).latency_ms, None);
    }
}
