//! `DeploymentActor`: owns one provider deployment's live figures — latency
//! EWMAs (total, time to first token, per output token) and outcome counts.
//! Request actors tell it how each call ended; after each message it
//! publishes a [`DeploymentStats`] snapshot that balancers and the health
//! endpoint read without a message hop. The snapshot lives in the
//! [`DeploymentHandle`], outside the actor, so a restarted actor resumes from
//! it after a crash.
//!
//! The in-flight count is the one figure kept outside the actor: an
//! [`InFlight`] guard held by the request counts it and uncounts it when
//! dropped, so no lost message, crashed actor or panicked request can leave
//! it too high.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use chorus_proto::gossip::DeploymentReport;
use chorus_proto::Usage;

use crate::cluster_view::ClusterDeploymentStats;
use crate::ewma::Ewma;
use crate::ledger::Ledger;
use crate::provider::Provider;

/// What a deployment is: which provider, which upstream model, at what price.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSpec {
    /// `provider/model`, unique in the node; used in logs and error messages.
    pub name: String,
    pub provider: String,
    pub upstream_model: String,
    /// USD per million prompt tokens.
    pub input_per_mtok: f64,
    /// USD per million completion tokens.
    pub output_per_mtok: f64,
    /// How long to wait for response headers, a whole non-streaming body, or
    /// the next stream event.
    pub timeout: Duration,
}

/// A point-in-time view of one deployment, cheap to read from any thread.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeploymentStats {
    /// Calls under way now (from the in-flight guards, not the actor).
    pub in_flight: u64,
    /// Calls that ended, whatever the outcome.
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

/// How a deployment is doing, from its recent failures. Ordered from best
/// to worst, so the cluster view can take the worst any node reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
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
        }
    }
}

/// How a call ended, as the request actor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Completed,
    Failed,
    Cancelled,
}

/// Messages a `DeploymentActor` accepts.
#[derive(Debug)]
pub enum DeploymentMsg {
    /// A call ended.
    CallFinished {
        outcome: CallOutcome,
        latency: Duration,
        /// Time to the first stream event, for streaming calls.
        ttft: Option<Duration>,
        usage: Option<Usage>,
    },
    /// Fails the actor, so supervision can be exercised in tests.
    #[cfg(test)]
    Crash,
}

/// The node's entry for one deployment: its spec, its provider, the current
/// actor and its last published stats. Cheap to clone.
#[derive(Clone)]
pub struct DeploymentHandle(Arc<DeploymentShared>);

struct DeploymentShared {
    spec: DeploymentSpec,
    provider: Arc<dyn Provider>,
    stats: ArcSwap<DeploymentStats>,
    actor: ArcSwapOption<ActorRef<DeploymentMsg>>,
    restarts: AtomicU64,
    in_flight: AtomicU64,
    /// The merged figures of every node, when the node is in a cluster.
    cluster: ArcSwapOption<ClusterDeploymentStats>,
    ledger: Ledger,
}

/// Counts one call as in flight for as long as it lives.
#[derive(Debug)]
pub struct InFlight(DeploymentHandle);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0 .0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for DeploymentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentHandle")
            .field("spec", &self.0.spec)
            .finish_non_exhaustive()
    }
}

impl DeploymentHandle {
    /// `ledger` keeps the deployment's durable counts.
    pub fn new(spec: DeploymentSpec, provider: Arc<dyn Provider>, ledger: Ledger) -> Self {
        DeploymentHandle(Arc::new(DeploymentShared {
            spec,
            provider,
            stats: ArcSwap::from_pointee(DeploymentStats::default()),
            actor: ArcSwapOption::empty(),
            restarts: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            cluster: ArcSwapOption::empty(),
            ledger,
        }))
    }

    pub fn spec(&self) -> &DeploymentSpec {
        &self.0.spec
    }

    pub fn name(&self) -> &str {
        &self.0.spec.name
    }

    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.0.provider
    }

    pub fn stats(&self) -> DeploymentStats {
        DeploymentStats {
            in_flight: self.0.in_flight.load(Ordering::Relaxed),
            ..**self.0.stats.load()
        }
    }

    /// The cluster-wide figures, merged from every node's gossip; `None`
    /// on a node without a cluster, where [`Self::stats`] is the whole view.
    pub fn cluster_stats(&self) -> Option<ClusterDeploymentStats> {
        self.0.cluster.load().as_deref().copied()
    }

    pub(crate) fn set_cluster_stats(&self, stats: ClusterDeploymentStats) {
        self.0.cluster.store(Some(Arc::new(stats)));
    }

    /// Counts a call as in flight until the returned guard is dropped.
    pub fn start_call(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// How often the supervisor has restarted this deployment's actor.
    pub fn restarts(&self) -> u64 {
        self.0.restarts.load(Ordering::Relaxed)
    }

    /// Whether an actor is running for this deployment.
    pub fn is_running(&self) -> bool {
        self.0.actor.load().is_some()
    }

    /// Sends to whichever actor currently serves the deployment. Fire and
    /// forget: a report lost while the actor restarts costs one sample.
    pub fn tell(&self, message: DeploymentMsg) {
        if let Some(actor) = self.0.actor.load().as_ref() {
            if let Err(err) = actor.cast(message) {
                tracing::debug!(deployment = %self.name(), %err, "deployment actor unavailable");
            }
        }
    }

    pub(crate) fn attach(&self, actor: ActorRef<DeploymentMsg>) {
        self.0.actor.store(Some(Arc::new(actor)));
    }

    pub(crate) fn detach(&self) {
        self.0.actor.store(None);
    }

    pub(crate) fn count_restart(&self) {
        self.0.restarts.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn actor(&self) -> Option<ActorRef<DeploymentMsg>> {
        self.0.actor.load().as_deref().cloned()
    }
}

pub struct DeploymentActor;

/// The actor's working state: the stats plus EWMAs in their mutable form.
pub struct DeploymentState {
    handle: DeploymentHandle,
    stats: DeploymentStats,
    latency: Ewma,
    ttft: Ewma,
    per_token: Ewma,
    counters: CounterNames,
}

/// The ledger counter names of one deployment, built once.
struct CounterNames {
    calls: String,
    errors: String,
    prompt_tokens: String,
    completion_tokens: String,
}

impl CounterNames {
    fn of(deployment: &str) -> Self {
        CounterNames {
            calls: counter_name(CALLS, deployment),
            errors: counter_name(ERRORS, deployment),
            prompt_tokens: counter_name(PROMPT_TOKENS, deployment),
            completion_tokens: counter_name(COMPLETION_TOKENS, deployment),
        }
    }
}

impl DeploymentState {
    /// The durable, cluster-wide counts; the stats above are this run's.
    fn count_in_ledger(&self, outcome: CallOutcome, usage: Option<Usage>) {
        let ledger = &self.handle.0.ledger;
        let names = &self.counters;
        ledger.add(&names.calls, 1);
        if outcome == CallOutcome::Failed {
            ledger.add(&names.errors, 1);
        }
        if let Some(usage) = usage {
            ledger.add(&names.prompt_tokens, usage.prompt_tokens);
            ledger.add(&names.completion_tokens, usage.completion_tokens);
        }
    }

    fn record(&mut self, message: DeploymentMsg) -> Result<(), ActorProcessingErr> {
        match message {
            DeploymentMsg::CallFinished {
                outcome,
                latency,
                ttft,
                usage,
            } => {
                self.stats.finished += 1;
                self.count_in_ledger(outcome, usage);
                let output_tokens = usage.map(|usage| usage.completion_tokens);
                match outcome {
                    CallOutcome::Completed => {
                        self.stats.consecutive_failures = 0;
                        let total_ms = millis(latency);
                        self.latency.observe(total_ms);
                        if let Some(ttft) = ttft {
                            self.ttft.observe(millis(ttft));
                        }
                        if let Some(tokens) = output_tokens.filter(|tokens| *tokens > 0) {
                            let generation_ms = total_ms - ttft.map(millis).unwrap_or(0.0);
                            self.per_token.observe(generation_ms / tokens as f64);
                        }
                    }
                    CallOutcome::Failed => {
                        self.stats.errors += 1;
                        self.stats.consecutive_failures += 1;
                    }
                    CallOutcome::Cancelled => self.stats.cancelled += 1,
                }
            }
            #[cfg(test)]
            DeploymentMsg::Crash => panic!("deployment actor crash requested by a test"),
        }
        self.stats.latency_ms = self.latency.value();
        self.stats.ttft_ms = self.ttft.value();
        self.stats.ms_per_output_token = self.per_token.value();
        self.handle.0.stats.store(Arc::new(self.stats));
        Ok(())
    }
}

/// Ledger counters kept per deployment, named `<kind>/<deployment>`.
pub const CALLS: &str = "calls";
pub const ERRORS: &str = "errors";
pub const PROMPT_TOKENS: &str = "prompt_tokens";
pub const COMPLETION_TOKENS: &str = "completion_tokens";

pub fn counter_name(kind: &str, deployment: &str) -> String {
    format!("{kind}/{deployment}")
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl Actor for DeploymentActor {
    type Msg = DeploymentMsg;
    type State = DeploymentState;
    type Arguments = DeploymentHandle;

    /// Resumes from the last published snapshot, so a restart after a crash
    /// keeps in-flight counts and averages.
    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        handle: DeploymentHandle,
    ) -> Result<Self::State, ActorProcessingErr> {
        let stats = handle.stats();
        handle.attach(myself);
        Ok(DeploymentState {
            counters: CounterNames::of(handle.name()),
            latency: Ewma::from_value(stats.latency_ms),
            ttft: Ewma::from_value(stats.ttft_ms),
            per_token: Ewma::from_value(stats.ms_per_output_token),
            handle,
            stats,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.record(message)
    }
}
