//! What the request path tells the node's metrics about each request. A
//! trait, so the actors know nothing of the metrics library: the node
//! implements it over Prometheus, tests and benchmarks with [`Unobserved`].

use std::time::Duration;

use chorus_proto::Usage;

use crate::deployment::CallOutcome;

/// One request as it ended. No key and no prompt: only what may become a
/// metric label or value.
#[derive(Debug, Clone, Copy)]
pub struct FinishedRequest<'a> {
    /// The alias the client asked for.
    pub alias: &'a str,
    /// The deployment of its last call; `None` when no deployment could
    /// take it.
    pub deployment: Option<&'a str>,
    /// Calls made for it, retries and fallbacks included.
    pub attempts: u32,
    /// The status the client got; 499 when it went away first.
    pub status: u16,
    pub outcome: CallOutcome,
    /// From arrival to the last byte.
    pub duration: Duration,
    /// A stream's time to first content.
    pub ttft: Option<Duration>,
    pub usage: Option<Usage>,
    pub cost_micros: Option<u64>,
}

pub trait RequestObserver: Send + Sync {
    fn finished(&self, request: &FinishedRequest<'_>);
}

/// Observes nothing: for tests and benchmarks without metrics.
#[derive(Debug, Default)]
pub struct Unobserved;

impl RequestObserver for Unobserved {
    fn finished(&self, _request: &FinishedRequest<'_>) {}
}
