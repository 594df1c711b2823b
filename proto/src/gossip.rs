//! What nodes tell each other by gossip. Each node writes only its own
//! reports; readers merge them (see `chorus_actors::cluster_view`). Counter
//! tallies are in [`crate::counter`].

use serde::{Deserialize, Serialize};

/// One node's live figures for one deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentReport {
    pub in_flight: u64,
    pub finished: u64,
    pub errors: u64,
    pub cancelled: u64,
    pub latency_ms: Option<f32>,
    pub ttft_ms: Option<f32>,
    pub ms_per_output_token: Option<f32>,
    /// Failed calls in a row, most recent first; 0 after any success.
    pub consecutive_failures: u32,
    /// Until when (unix ms) this node's calls opened the deployment's
    /// circuit breaker: the others stop sending to it too.
    pub breaker_open_until_ms: Option<u64>,
}

impl DeploymentReport {
    /// Hex of the bincode encoding: gossip values are strings.
    pub fn encode(&self) -> String {
        crate::codec::encode(self)
            .map(hex::encode)
            .unwrap_or_default()
    }

    /// `None` for a value that is not a report (garbage, or an older or
    /// newer node's format).
    pub fn decode(value: &str) -> Option<DeploymentReport> {
        crate::codec::decode(&hex::decode(value).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_garbage_is_ignored() {
        let report = DeploymentReport {
            in_flight: 3,
            finished: 1 << 40,
            latency_ms: Some(12.5),
            ..DeploymentReport::default()
        };
        assert_eq!(DeploymentReport::decode(&report.encode()), Some(report));
        assert_eq!(DeploymentReport::decode("zz"), None);
        assert_eq!(DeploymentReport::decode("00"), None);
    }
}
