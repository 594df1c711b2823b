//! `DeploymentActor`: owns one provider deployment's latency EWMAs (total,
//! time to first token, per output token) and its run of failures. Request
//! actors tell it how each call ended; after each message it publishes a
//! snapshot that balancers and the health endpoint read without a message
//! hop. The snapshot lives in the [`DeploymentHandle`], outside the actor,
//! so a restarted actor resumes from it after a crash.
//!
//! Counts are kept outside the actor, where no lost message or restart can
//! drop them: the request path records each call's outcome, tokens and cost
//! on the handle and in the ledger before its client gets the answer, and
//! an [`InFlight`] guard held by the request counts it as in flight until
//! dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use chorus_proto::counter::{CounterKey, CounterKind};
use chorus_proto::{Price, Usage};

use crate::ewma::Ewma;
use crate::ledger::{Ledger, OwnCounter};
use crate::provider::Provider;
use crate::routing::breaker::{Breaker, BreakerPolicy};
use crate::routing::budget::RetryBudget;
use crate::stats::{ClusterDeploymentStats, DeploymentStats};

/// What a deployment is: which provider, which upstream model, at what price.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSpec {
    /// `provider/model`, unique in the node; used in logs and error messages.
    pub name: String,
    pub provider: String,
    pub upstream_model: String,
    pub price: Price,
    /// How long to wait for response headers, a whole non-streaming body, or
    /// the next stream event.
    pub timeout: Duration,
    /// The provider's quotas for it, which the whole cluster keeps under.
    pub quota: Quota,
    pub breaker: BreakerPolicy,
}

/// A provider's limits on one deployment, per minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// A deployment's quotas and its cluster-wide use of them this minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaUse {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Calls started in the sliding minute.
    pub requests: u64,
    /// Tokens the calls that ended in it used.
    pub tokens: u64,
}

/// How a call ended, as the request actor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Completed,
    Failed,
    Cancelled,
}

impl CallOutcome {
    /// Its name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Completed => "completed",
            CallOutcome::Failed => "failed",
            CallOutcome::Cancelled => "cancelled",
        }
    }
}

/// One finished call, as recorded on its deployment.
#[derive(Debug, Clone, Copy)]
pub struct CallEnded {
    pub outcome: CallOutcome,
    pub latency: Duration,
    /// Time to the first stream event, for streaming calls.
    pub ttft: Option<Duration>,
    pub usage: Option<Usage>,
}

/// Messages a `DeploymentActor` accepts.
#[derive(Debug)]
pub enum DeploymentMsg {
    /// A call ended: a sample for the latency averages and failure run.
    CallFinished(CallEnded),
    /// Fails the actor, so supervision can be exercised in tests.
    #[cfg(test)]
    Crash,
}

/// The node's entry for one deployment: its spec, its provider, the current
/// actor, its counts and its last published stats. Cheap to clone.
#[derive(Clone)]
pub struct DeploymentHandle(Arc<DeploymentShared>);

struct DeploymentShared {
    spec: DeploymentSpec,
    provider: Arc<dyn Provider>,
    /// The actor's latest averages and failure run.
    samples: ArcSwap<Samples>,
    actor: ArcSwapOption<ActorRef<DeploymentMsg>>,
    restarts: AtomicU64,
    in_flight: AtomicU64,
    finished: AtomicU64,
    errors: AtomicU64,
    cancelled: AtomicU64,
    /// The merged figures of every node, when the node is in a cluster.
    cluster: ArcSwapOption<ClusterDeploymentStats>,
    counters: LedgerCounters,
    /// For the number of live peers that quotas are shared among.
    ledger: Ledger,
    breaker: Breaker,
    retry_budget: RetryBudget,
}

/// What the actor publishes after each call.
#[derive(Debug, Clone, Copy, Default)]
struct Samples {
    latency_ms: Option<f64>,
    ttft_ms: Option<f64>,
    ms_per_output_token: Option<f64>,
    consecutive_failures: u32,
}

/// The deployment's durable, cluster-wide counters, resolved once.
struct LedgerCounters {
    calls: Arc<OwnCounter>,
    errors: Arc<OwnCounter>,
    prompt_tokens: Arc<OwnCounter>,
    completion_tokens: Arc<OwnCounter>,
    cost_micros: Arc<OwnCounter>,
    /// Calls started, counted as they start, for the `rpm` quota.
    calls_minute: Arc<OwnCounter>,
    /// Tokens used, for the `tpm` quota.
    tokens_minute: Arc<OwnCounter>,
    cost_micros_day: Arc<OwnCounter>,
}

impl LedgerCounters {
    fn of(deployment: &str, ledger: &Ledger) -> Self {
        let counter = |kind| ledger.counter(CounterKey::new(kind, deployment));
        LedgerCounters {
            calls: counter(CounterKind::Calls),
            errors: counter(CounterKind::Errors),
            prompt_tokens: counter(CounterKind::PromptTokens),
            completion_tokens: counter(CounterKind::CompletionTokens),
            cost_micros: counter(CounterKind::CostMicros),
            calls_minute: counter(CounterKind::CallsMinute),
            tokens_minute: counter(CounterKind::TokensMinute),
            cost_micros_day: counter(CounterKind::CostMicrosDay),
        }
    }
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
    pub fn new(spec: DeploymentSpec, provider: Arc<dyn Provider>, ledger: &Ledger) -> Self {
        let counters = LedgerCounters::of(&spec.name, ledger);
        DeploymentHandle(Arc::new(DeploymentShared {
            breaker: Breaker::new(spec.breaker),
            retry_budget: RetryBudget::default(),
            spec,
            provider,
            samples: ArcSwap::from_pointee(Samples::default()),
            actor: ArcSwapOption::empty(),
            restarts: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            cluster: ArcSwapOption::empty(),
            counters,
            ledger: ledger.clone(),
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
        let shared = &self.0;
        let samples = **shared.samples.load();
        DeploymentStats {
            in_flight: shared.in_flight.load(Ordering::Relaxed),
            finished: shared.finished.load(Ordering::Relaxed),
            errors: shared.errors.load(Ordering::Relaxed),
            cancelled: shared.cancelled.load(Ordering::Relaxed),
            latency_ms: samples.latency_ms,
            ttft_ms: samples.ttft_ms,
            ms_per_output_token: samples.ms_per_output_token,
            consecutive_failures: samples.consecutive_failures,
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

    /// Counts a call as in flight until the returned guard is dropped, and
    /// against the `rpm` quota as it starts, so calls under way count
    /// before they end; it earns the deployment's retry budget its share.
    pub fn start_call(&self, unix_ms: u64) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        self.0.counters.calls_minute.add(1, unix_ms);
        self.0.retry_budget.earn(unix_ms);
        InFlight(self.clone())
    }

    /// The quotas and what the whole cluster has used of them this minute.
    pub fn quota_use(&self, unix_ms: u64) -> QuotaUse {
        let Quota { rpm, tpm } = self.0.spec.quota;
        let used = |counter: &OwnCounter, limited: bool| {
            if limited {
                counter.cluster_buckets().value(unix_ms)
            } else {
                0
            }
        };
        let counters = &self.0.counters;
        QuotaUse {
            rpm,
            tpm,
            requests: used(&counters.calls_minute, rpm.is_some()),
            tokens: used(&counters.tokens_minute, tpm.is_some()),
        }
    }

    /// Whether a call of `tokens` fits the quotas now: under the
    /// cluster-wide figure, and within this node's share of what was left
    /// at the last gossip exchange, so nodes admitting calls at the same
    /// moment do not take the quota several times over.
    pub fn quota_allows(&self, tokens: u64, unix_ms: u64) -> bool {
        let quota = self.quota_use(unix_ms);
        if quota.rpm.is_none() && quota.tpm.is_none() {
            return true;
        }
        let peers = self.0.ledger.live_peers();
        let allows = |counter: &OwnCounter, limit: Option<u64>, used: u64, need: u64| {
            limit.is_none_or(|limit| {
                used.saturating_add(need) <= limit
                    && counter.within_share(
                        &counter.sync_view().cluster_at_sync,
                        limit,
                        need,
                        peers,
                        unix_ms,
                    )
            })
        };
        let counters = &self.0.counters;
        allows(&counters.calls_minute, quota.rpm, quota.requests, 1)
            && allows(&counters.tokens_minute, quota.tpm, quota.tokens, tokens)
    }

    pub fn breaker(&self) -> &Breaker {
        &self.0.breaker
    }

    pub fn retry_budget(&self) -> &RetryBudget {
        &self.0.retry_budget
    }

    /// The ledger its counts go to.
    pub fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    /// Records a finished call: its counts, tokens and cost go to this run's
    /// figures and the ledger at once, on the caller's thread; the timing
    /// goes to the actor as a sample. Returns the call's cost in micro-dollars.
    pub fn record(&self, ended: CallEnded, unix_ms: u64) -> Option<u64> {
        let shared = &self.0;
        let counters = &shared.counters;
        shared.finished.fetch_add(1, Ordering::Relaxed);
        counters.calls.add(1, unix_ms);
        match ended.outcome {
            CallOutcome::Completed => {}
            CallOutcome::Failed => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                counters.errors.add(1, unix_ms);
            }
            CallOutcome::Cancelled => {
                shared.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        let cost = ended.usage.map(|usage| {
            counters.prompt_tokens.add(usage.prompt_tokens, unix_ms);
            counters
                .completion_tokens
                .add(usage.completion_tokens, unix_ms);
            counters.tokens_minute.add(usage.total_tokens, unix_ms);
            let cost = shared.spec.price.cost_micros(&usage);
            counters.cost_micros.add(cost, unix_ms);
            counters.cost_micros_day.add(cost, unix_ms);
            cost
        });
        self.tell(DeploymentMsg::CallFinished(ended));
        cost
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
    /// forget: a sample lost while the actor restarts is one sample.
    fn tell(&self, message: DeploymentMsg) {
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

/// The actor's working state: the EWMAs in their mutable form.
pub struct DeploymentState {
    handle: DeploymentHandle,
    samples: Samples,
    latency: Ewma,
    ttft: Ewma,
    per_token: Ewma,
}

impl DeploymentState {
    fn record(&mut self, message: DeploymentMsg) -> Result<(), ActorProcessingErr> {
        match message {
            DeploymentMsg::CallFinished(CallEnded {
                outcome,
                latency,
                ttft,
                usage,
            }) => match outcome {
                CallOutcome::Completed => {
                    self.samples.consecutive_failures = 0;
                    let total_ms = millis(latency);
                    self.latency.observe(total_ms);
                    if let Some(ttft) = ttft {
                        self.ttft.observe(millis(ttft));
                    }
                    let output_tokens = usage.map(|usage| usage.completion_tokens);
                    if let Some(tokens) = output_tokens.filter(|tokens| *tokens > 0) {
                        let generation_ms = total_ms - ttft.map(millis).unwrap_or(0.0);
                        self.per_token.observe(generation_ms / tokens as f64);
                    }
                }
                CallOutcome::Failed => {
                    self.samples.consecutive_failures =
                        self.samples.consecutive_failures.saturating_add(1);
                }
                CallOutcome::Cancelled => {}
            },
            #[cfg(test)]
            DeploymentMsg::Crash => panic!("deployment actor crash requested by a test"),
        }
        self.samples.latency_ms = self.latency.value();
        self.samples.ttft_ms = self.ttft.value();
        self.samples.ms_per_output_token = self.per_token.value();
        self.handle.0.samples.store(Arc::new(self.samples));
        Ok(())
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl Actor for DeploymentActor {
    type Msg = DeploymentMsg;
    type State = DeploymentState;
    type Arguments = DeploymentHandle;

    /// Resumes from the last published samples, so a restart after a crash
    /// keeps the averages and the failure run.
    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        handle: DeploymentHandle,
    ) -> Result<Self::State, ActorProcessingErr> {
        let samples = **handle.0.samples.load();
        handle.attach(myself);
        Ok(DeploymentState {
            latency: Ewma::from_value(samples.latency_ms),
            ttft: Ewma::from_value(samples.ttft_ms),
            per_token: Ewma::from_value(samples.ms_per_output_token),
            handle,
            samples,
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
