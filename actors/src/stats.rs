//! The figures of a deployment that several modules read: one node's live
//! stats, its health, and the cluster-wide merge of every node's. A leaf
//! module, so the deployment actor and the cluster view both depend on it
//! rather than on each other.

use chorus_proto::gossip::DeploymentReport;
use serde::Serialize;

/// A point-in-time view of one deployment on this node, cheap to read from
/// any thread.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeploymentStats {
    /// Calls under way now.
    pub in_flight: u64,
    /// Calls that ended in this run, whatever the outcome.
    pub finished: u64,
    /// Calls that failed upstream (error status, timeout, broken stream).
    pub errors: u64,
    /// Calls the client abandoned before the upstream finished.
    pub cancelled: u64,
    pub latency_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub ms_per_output_token: Option<f64>,
    /// Failed calls in a row; 0 after any success.
    pub consecutive_failures: u32,
}

impl DeploymentStats {
    pub fn health(&self) -> Health {
        Health::from_consecutive_failures(self.consecutive_failures)
    }

    /// This node's figures as gossiped.
    pub fn report(&self) -> DeploymentReport {
        DeploymentReport {
            in_flight: self.in_flight,
            finished: self.finished,
            errors: self.errors,
            cancelled: self.cancelled,
            latency_ms: self.latency_ms.map(|v| v as f32),
            ttft_ms: self.ttft_ms.map(|v| v as f32),
            ms_per_output_token: self.ms_per_output_token.map(|v| v as f32),
            consecutive_failures: self.consecutive_failures,
            // The breaker is not a figure of the run: gossip adds it.
            breaker_open_until_ms: None,
        }
    }
}

/// How a deployment is doing, from its recent failures. Ordered from best
/// to worst, so the cluster view can take the worst any node reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    #[default]
    Healthy,
    /// One or two failures in a row.
    Degraded,
    /// Three or more failures in a row.
    Failing,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Failing => "failing",
        }
    }

    pub fn from_consecutive_failures(failures: u32) -> Self {
        match failures {
            0 => Health::Healthy,
            1 | 2 => Health::Degraded,
            _ => Health::Failing,
        }
    }
}

/// One deployment's figures merged over every node's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ClusterDeploymentStats {
    /// Nodes that reported on this deployment, alive or not.
    pub nodes: usize,
    pub in_flight: u64,
    /// In flight on the other live nodes only: a balancer adds this node's
    /// live figure to it, rather than the one it last published.
    pub peers_in_flight: u64,
    pub finished: u64,
    pub errors: u64,
    pub cancelled: u64,
    pub latency_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub ms_per_output_token: Option<f64>,
    pub health: Health,
}
