//! What the balancers rank: an alias's deployments still in the running
//! for an attempt, each with the figures a strategy may read, and what the
//! request needs. Every figure is cluster-wide where the cluster knows it:
//! this node's live figures plus what the other nodes last gossiped.

use crate::deployment::DeploymentHandle;

/// One deployment of an alias, with its weight in that alias: the same
/// deployment may carry more of one alias's traffic than another's.
#[derive(Debug, Clone)]
pub struct Target {
    pub deployment: DeploymentHandle,
    pub weight: u32,
}

/// A deployment of weight 1, as aliases configured without weights have.
impl From<DeploymentHandle> for Target {
    fn from(deployment: DeploymentHandle) -> Self {
        Target {
            deployment,
            weight: 1,
        }
    }
}

/// What a request asks of a deployment, as far as routing cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    pub stream: bool,
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// The most the reply may take.
    pub max_output_tokens: u64,
}

impl Need {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.max_output_tokens)
    }
}

/// A target a balancer may choose for this attempt: usable now, and not
/// yet tried by this request (unless every one has been).
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub target: &'a Target,
    pub now_ms: u64,
}

impl Candidate<'_> {
    pub fn deployment(&self) -> &DeploymentHandle {
        &self.target.deployment
    }

    pub fn weight(&self) -> u32 {
        self.target.weight
    }

    /// Requests in flight on the deployment across the cluster: this
    /// node's live figure plus the others' last published ones.
    pub fn in_flight(&self) -> u64 {
        let deployment = self.deployment();
        let peers = deployment
            .cluster_stats()
            .map_or(0, |cluster| cluster.peers_in_flight);
        deployment.stats().in_flight.saturating_add(peers)
    }

    /// The latency figure a request of this kind waits on, in ms: time to
    /// first token for a stream, time per output token otherwise (total
    /// latency while no call has reported tokens). `None` before the
    /// deployment has any sample.
    pub fn latency_ms(&self, need: &Need) -> Option<f64> {
        let deployment = self.deployment();
        let own = deployment.stats();
        let (ttft, per_token, total) = match deployment.cluster_stats() {
            Some(cluster) => (
                cluster.ttft_ms,
                cluster.ms_per_output_token,
                cluster.latency_ms,
            ),
            None => (own.ttft_ms, own.ms_per_output_token, own.latency_ms),
        };
        if need.stream {
            ttft.or(total)
        } else {
            per_token.or(total)
        }
    }

    /// What the request would cost here at most, in pico-dollars (exact,
    /// so cheap calls still compare).
    pub fn cost_pico(&self, need: &Need) -> u128 {
        let price = self.deployment().spec().price;
        u128::from(need.prompt_tokens) * u128::from(price.input_micros_per_mtok)
            + u128::from(need.max_output_tokens) * u128::from(price.output_micros_per_mtok)
    }

    /// The share of the deployment's quotas left after this request, the
    /// tighter of requests and tokens per minute: 1.0 with no quota, below
    /// 0.0 when the request does not fit.
    pub fn headroom(&self, need: &Need) -> f64 {
        let quota = self.deployment().quota_use(self.now_ms);
        let left = |used: u64, asked: u64, limit: Option<u64>| match limit {
            Some(limit) if limit > 0 => (limit as f64 - used as f64 - asked as f64) / limit as f64,
            Some(_) => -1.0,
            None => 1.0,
        };
        let requests = left(quota.requests, 1, quota.rpm);
        let tokens = left(quota.tokens, need.tokens(), quota.tpm);
        requests.min(tokens)
    }
}
