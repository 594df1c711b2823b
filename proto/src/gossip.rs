//! What nodes tell each other by gossip. Each node writes only its own
//! reports; readers merge them (see `chorus_actors::cluster_view`).

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
}
