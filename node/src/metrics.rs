//! The node's Prometheus metrics, all named `chorus_*`, served at
//! `GET /metrics` in the text exposition format.
//!
//! The request path feeds them as requests end (through the actors'
//! [`RequestObserver`]) and as requests are refused; what other parts of
//! the node already keep — breakers, cluster members, gossip traffic, the
//! store's memory — is
//! read when the page is scraped. Labels are aliases, deployment names,
//! statuses and error codes only: never a key, a prompt or a secret.

use std::sync::Mutex;
use std::time::Duration;

use chorus_actors::clock::unix_millis;
use chorus_actors::routing::breaker::BreakerState;
use chorus_actors::{FinishedRequest, RequestObserver, Routes};
use prometheus::{
    CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::cluster::ClusterView;
use crate::recent::{Recent, Sample};
use crate::storage::StoreMemory;

/// Request durations, in seconds: from a cached or instant answer to a
/// long generation.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Time to first token, in seconds.
const TTFT_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// The gateway's own share of a request, in seconds: tens of microseconds
/// to a few milliseconds.
const OVERHEAD_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    overhead: Histogram,
    tokens: IntCounterVec,
    cost: CounterVec,
    rejections: IntCounterVec,
    cache_lookups: IntCounterVec,
    breakers: IntGaugeVec,
    members: IntGaugeVec,
    gossip_bytes: IntCounterVec,
    gossip_packets: IntCounterVec,
    gossip_auth_failures: IntCounter,
    gossip_dropped: IntCounterVec,
    request_log_dropped: IntCounter,
    store_memory: IntGaugeVec,
    /// The last ten minutes, for the status page's charts.
    recent: Recent,
    /// Scrapes bring the gossip counters up to date one at a time.
    scrape: Mutex<()>,
}

impl Metrics {
    /// The node's metrics, with a recent history of `routes`' aliases and
    /// deployments.
    pub fn new(routes: &Routes) -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("chorus".into()), None)?;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(counter.clone()))?;
            Ok::<_, prometheus::Error>(counter)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let histogram = HistogramVec::new(opts, labels)?;
            registry.register(Box::new(histogram.clone()))?;
            Ok::<_, prometheus::Error>(histogram)
        };
        let requests = counter(
            "requests_total",
            "Requests that reached routing, by alias, last deployment, status and outcome.",
            &["alias", "deployment", "status", "outcome"],
        )?;
        let duration = histogram(
            "request_duration_seconds",
            "Time from a request's arrival to its last byte.",
            &DURATION_BUCKETS,
            &["alias"],
        )?;
        let ttft = histogram(
            "time_to_first_token_seconds",
            "Time from a streaming call's start to its first content.",
            &TTFT_BUCKETS,
            &["alias"],
        )?;
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_overhead_seconds",
                "Time a request spent in the gateway itself, the upstream's share left out.",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(overhead.clone()))?;
        let tokens = counter(
            "tokens_total",
            "Tokens counted on calls, by alias, deployment and type: prompt (every input token), completion, and the parts of the prompt read from (cache_read) and written to (cache_write) a provider's prompt cache.",
            &["alias", "deployment", "type"],
        )?;
        let cost = CounterVec::new(
            Opts::new(
                "cost_usd_total",
                "What calls cost at their deployment's prices, in USD.",
            ),
            &["alias", "deployment"],
        )?;
        registry.register(Box::new(cost.clone()))?;
        let rejections = counter(
            "rejections_total",
            "Requests refused before any call, by error code (rate limits, budgets, keys, bad input).",
            &["code"],
        )?;
        let cache_lookups = counter(
            "cache_lookups_total",
            "Requests looked up in the response cache, by alias and result (hit, miss).",
            &["alias", "result"],
        )?;
        let breakers = IntGaugeVec::new(
            Opts::new(
                "breaker_state",
                "Each deployment's circuit breaker on this node: 0 closed, 1 half-open, 2 open.",
            ),
            &["deployment"],
        )?;
        registry.register(Box::new(breakers.clone()))?;
        let members = IntGaugeVec::new(
            Opts::new(
                "cluster_members",
                "Cluster members this node knows, by state (alive, dead).",
            ),
            &["state"],
        )?;
        registry.register(Box::new(members.clone()))?;
        let gossip_bytes = counter(
            "gossip_bytes_total",
            "Gossip bytes this node sent and received, sealed.",
            &["direction"],
        )?;
        let gossip_packets = counter(
            "gossip_packets_total",
            "Gossip datagrams this node sent and received.",
            &["direction"],
        )?;
        let gossip_auth_failures = IntCounter::new(
            "gossip_auth_failures_total",
            "Gossip datagrams dropped because their seal did not verify.",
        )?;
        registry.register(Box::new(gossip_auth_failures.clone()))?;
        let gossip_dropped = counter(
            "gossip_dropped_total",
            "Gossip datagrams or messages dropped, by cause: auth_failure (no accepted \
             secret, or sealed for another node), other_cluster, malformed, undecodable, \
             replayed, stale, wrong_sender, incomplete, queue_full.",
            &["cause"],
        )?;
        let request_log_dropped = IntCounter::new(
            "request_log_dropped_total",
            "Request log records dropped because the writer could not keep up.",
        )?;
        registry.register(Box::new(request_log_dropped.clone()))?;
        let store_memory = IntGaugeVec::new(
            Opts::new(
                "store_memory_bytes",
                "What the node's store holds in memory, by part: memtables, block_cache, \
                 table_readers.",
            ),
            &["part"],
        )?;
        registry.register(Box::new(store_memory.clone()))?;
        let recent = Recent::new(
            routes.aliases(),
            routes
                .deployments()
                .iter()
                .map(|deployment| deployment.name()),
        );
        Ok(Metrics {
            registry,
            requests,
            duration,
            ttft,
            overhead,
            tokens,
            cost,
            rejections,
            cache_lookups,
            breakers,
            members,
            gossip_bytes,
            gossip_packets,
            gossip_auth_failures,
            gossip_dropped,
            request_log_dropped,
            store_memory,
            recent,
            scrape: Mutex::new(()),
        })
    }

    /// A request refused before any call, with its error code, and its
    /// alias when it named one.
    pub fn rejected(&self, code: &str, alias: Option<&str>, latency: Duration) {
        self.rejections.with_label_values(&[code]).inc();
        if let Some(alias) = alias {
            let sample = Sample {
                rejected: true,
                latency: Some(latency),
                ..Sample::default()
            };
            self.recent.add(alias, None, sample, unix_millis());
        }
    }

    /// A request looked up in the response cache.
    pub fn cache_lookup(&self, alias: &str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache_lookups.with_label_values(&[alias, result]).inc();
    }

    /// A request answered from the cache: counted with the others, with
    /// no deployment, tokens or cost.
    pub fn served_from_cache(&self, alias: &str, duration: Duration) {
        self.cache_lookup(alias, true);
        self.requests
            .with_label_values(&[alias, "", "200", "cached"])
            .inc();
        self.duration
            .with_label_values(&[alias])
            .observe(duration.as_secs_f64());
        let sample = Sample {
            latency: Some(duration),
            ..Sample::default()
        };
        self.recent.add(alias, None, sample, unix_millis());
    }

    /// The counter of request log records dropped, for the log to count in.
    pub fn request_log_dropped(&self) -> IntCounter {
        self.request_log_dropped.clone()
    }

    /// The last ten minutes of traffic.
    pub fn recent(&self) -> &Recent {
        &self.recent
    }

    /// The gateway's own share of an answered request.
    pub fn overhead(&self, overhead: Duration) {
        self.overhead.observe(overhead.as_secs_f64());
    }

    /// The exposition text, with what the node keeps elsewhere read now.
    pub fn render(
        &self,
        routes: &Routes,
        cluster: Option<&ClusterView>,
        store: Option<StoreMemory>,
    ) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let now_ms = unix_millis();
        for deployment in routes.deployments() {
            let state = match deployment.breaker().state(now_ms) {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            self.breakers
                .with_label_values(&[deployment.name()])
                .set(state);
        }
        if let Some(view) = cluster {
            let alive = view.members.iter().filter(|member| member.alive).count();
            let dead = view.members.len() - alive;
            self.members.with_label_values(&["alive"]).set(gauge(alive));
            self.members.with_label_values(&["dead"]).set(gauge(dead));
            let gossip = &view.gossip;
            catch_up(
                &self.gossip_bytes.with_label_values(&["sent"]),
                gossip.bytes_sent,
            );
            catch_up(
                &self.gossip_bytes.with_label_values(&["received"]),
                gossip.bytes_received,
            );
            catch_up(
                &self.gossip_packets.with_label_values(&["sent"]),
                gossip.packets_sent,
            );
            catch_up(
                &self.gossip_packets.with_label_values(&["received"]),
                gossip.packets_received,
            );
            catch_up(&self.gossip_auth_failures, gossip.auth_failures);
            for (cause, total) in [
                ("auth_failure", gossip.auth_failures),
                ("other_cluster", gossip.other_cluster),
                ("malformed", gossip.malformed),
                ("undecodable", gossip.undecodable),
                ("replayed", gossip.replayed),
                ("stale", gossip.stale),
                ("wrong_sender", gossip.wrong_sender),
                ("incomplete", gossip.incomplete),
                ("queue_full", gossip.queue_full),
            ] {
                catch_up(&self.gossip_dropped.with_label_values(&[cause]), total);
            }
        }
        if let Some(store) = store {
            for (part, bytes) in [
                ("memtables", store.memtables),
                ("block_cache", store.block_cache),
                ("table_readers", store.table_readers),
            ] {
                self.store_memory
                    .with_label_values(&[part])
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        let mut text = String::new();
        if let Err(error) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text) {
            tracing::error!(%error, "could not encode the metrics");
        }
        text
    }
}

impl RequestObserver for Metrics {
    fn finished(&self, request: &FinishedRequest<'_>) {
        let deployment = request.deployment.unwrap_or("");
        let status = request.status.to_string();
        let outcome = request.outcome.as_str();
        self.requests
            .with_label_values(&[request.alias, deployment, &status, outcome])
            .inc();
        self.duration
            .with_label_values(&[request.alias])
            .observe(request.duration.as_secs_f64());
        if let Some(ttft) = request.ttft {
            self.ttft
                .with_label_values(&[request.alias])
                .observe(ttft.as_secs_f64());
        }
        if let Some(usage) = request.usage {
            self.tokens
                .with_label_values(&[request.alias, deployment, "prompt"])
                .inc_by(usage.prompt_tokens);
            self.tokens
                .with_label_values(&[request.alias, deployment, "completion"])
                .inc_by(usage.completion_tokens);
            for (kind, tokens) in [
                ("cache_read", usage.cache_read_tokens),
                ("cache_write", usage.cache_write_tokens),
            ] {
                if tokens > 0 {
                    self.tokens
                        .with_label_values(&[request.alias, deployment, kind])
                        .inc_by(tokens);
                }
            }
        }
        if let Some(cost) = request.cost_micros {
            self.cost
                .with_label_values(&[request.alias, deployment])
                .inc_by(cost as f64 / 1_000_000.0);
        }
        let sample = Sample {
            // A client that went away is no error of the gateway's.
            error: request.status >= 400 && request.status != 499,
            rejected: false,
            cost_micros: request.cost_micros.unwrap_or(0),
            latency: Some(request.duration),
            ttft: request.ttft,
        };
        self.recent
            .add(request.alias, request.deployment, sample, unix_millis());
    }
}

fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Brings a counter mirrored from elsewhere up to `total`.
fn catch_up(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_actors::CallOutcome;
    use chorus_proto::Usage;

    #[test]
    fn a_finished_request_feeds_its_series() {
        let metrics = Metrics::new(&Routes::default()).unwrap();
        metrics.finished(&FinishedRequest {
            alias: "fast",
            deployment: Some("up/m"),
            attempts: 1,
            status: 200,
            outcome: CallOutcome::Completed,
            duration: Duration::from_millis(120),
            ttft: Some(Duration::from_millis(30)),
            usage: Some(Usage::new(10, 20)),
            cost_micros: Some(1_500),
        });
        metrics.rejected(
            "rate_limit_exceeded",
            Some("fast"),
            Duration::from_millis(1),
        );
        let store = StoreMemory {
            memtables: 3,
            block_cache: 2,
            table_readers: 1,
        };
        let text = metrics.render(&Routes::default(), None, Some(store));
        for line in [
            "chorus_requests_total{alias=\"fast\",deployment=\"up/m\",outcome=\"completed\",status=\"200\"} 1",
            "chorus_tokens_total{alias=\"fast\",deployment=\"up/m\",type=\"completion\"} 20",
            "chorus_cost_usd_total{alias=\"fast\",deployment=\"up/m\"} 0.0015",
            "chorus_rejections_total{code=\"rate_limit_exceeded\"} 1",
            "chorus_time_to_first_token_seconds_count{alias=\"fast\"} 1",
            "chorus_store_memory_bytes{part=\"memtables\"} 3",
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
    }
}
