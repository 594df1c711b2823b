//! One request's record, filled in as the request goes: who asked and
//! for what as the handler learns it, then how it ended — refused,
//! answered from the cache, or told by the request actor through
//! [`Recorder`] — and written to the log once, at the end. A request
//! dropped on the way (its client gone before an answer, or an actor
//! that never answered) is still written, as cancelled or failed.
//! Requests without a valid key are counted in the metrics only: the log
//! is no place for a flood of strangers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_actors::clock::{millis, unix_millis};
use chorus_actors::{FinishedRequest, RequestObserver};
use chorus_proto::ChatRequest;

use super::{RequestLog, RequestRecord};
use crate::metrics::Metrics;

/// A request's record on its way to the log; does nothing when the node
/// keeps no log, or once the record is written or handed on.
pub struct Trail(Option<(RequestLog, Box<RequestRecord>)>);

/// Who sent a request, as the log names them: the key's id (a bootstrap
/// key's name), its name and its team.
pub struct Who {
    pub key: String,
    pub name: String,
    pub team: Option<String>,
}

impl Trail {
    /// The trail of request `id` to `endpoint`, which arrived `elapsed` ago.
    pub fn start(log: Option<&RequestLog>, id: &str, endpoint: &str, elapsed: Duration) -> Self {
        Trail(log.map(|log| {
            let record = RequestRecord {
                id: id.to_owned(),
                time_ms: unix_millis().saturating_sub(millis(elapsed)),
                node: log.node().to_owned(),
                endpoint: endpoint.to_owned(),
                key: None,
                key_name: None,
                team: None,
                alias: None,
                deployment: None,
                attempts: 0,
                stream: false,
                status: 0,
                outcome: String::new(),
                code: None,
                prompt_tokens: 0,
                completion_tokens: 0,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                usage_estimated: false,
                cost_micros: 0,
                latency_ms: 0.0,
                ttft_ms: None,
                cache: None,
            };
            (log.clone(), Box::new(record))
        }))
    }

    fn fill(&mut self, fill: impl FnOnce(&mut RequestRecord)) {
        if let Some((_, record)) = &mut self.0 {
            fill(record);
        }
    }

    /// Who sent the request; `who` is asked only when there is a log.
    pub fn caller(&mut self, who: impl FnOnce() -> Who) {
        self.fill(|record| {
            let who = who();
            record.key = Some(who.key);
            record.key_name = Some(who.name);
            record.team = who.team;
        });
    }

    pub fn request(&mut self, request: &ChatRequest) {
        self.fill(|record| {
            record.alias = Some(request.model.clone());
            record.stream = request.stream;
        });
    }

    /// The request took part in the cache, which did not hold its answer.
    pub fn missed_cache(&mut self) {
        self.fill(|record| record.cache = Some("miss".into()));
    }

    /// Ends a request refused before any call.
    pub fn refused(&mut self, status: u16, code: Option<&str>, latency: Duration) {
        self.fill(|record| {
            record.status = status;
            record.code = code.map(str::to_owned);
            record.outcome = "rejected".into();
            record.latency_ms = latency.as_secs_f64() * 1000.0;
        });
        self.write();
    }

    /// Ends a request answered from the cache: no call, no cost.
    pub fn served_from_cache(&mut self, status: u16, latency: Duration) {
        self.fill(|record| {
            record.cache = Some("hit".into());
            record.status = status;
            record.outcome = "cached".into();
            record.latency_ms = latency.as_secs_f64() * 1000.0;
        });
        self.write();
    }

    fn write(&mut self) {
        if let Some((log, record)) = self.0.take() {
            if record.key.is_some() {
                log.record(record);
            }
        }
    }

    /// What the request actor tells how the request ended: the node's
    /// metrics, and this trail when there is a log.
    pub fn observer(&mut self, metrics: &Arc<Metrics>) -> Arc<dyn RequestObserver> {
        match self.0.take() {
            None => metrics.clone(),
            Some((log, record)) => Arc::new(Recorder {
                metrics: metrics.clone(),
                log,
                record: Mutex::new(Some(record)),
            }),
        }
    }
}

impl Drop for Trail {
    /// The client went away while the handler was still at work.
    fn drop(&mut self) {
        if self.0.is_some() {
            let latency = Duration::from_millis(unix_millis().saturating_sub(self.arrived_ms()));
            self.fill(|record| {
                record.status = 499;
                record.outcome = "cancelled".into();
                record.latency_ms = latency.as_secs_f64() * 1000.0;
            });
            self.write();
        }
    }
}

impl Trail {
    fn arrived_ms(&self) -> u64 {
        self.0.as_ref().map_or(0, |(_, record)| record.time_ms)
    }
}

/// Feeds the metrics and, once, the log with how a call ended.
struct Recorder {
    metrics: Arc<Metrics>,
    log: RequestLog,
    record: Mutex<Option<Box<RequestRecord>>>,
}

impl RequestObserver for Recorder {
    fn finished(&self, request: &FinishedRequest<'_>) {
        self.metrics.finished(request);
        let taken = self.record.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut record) = taken else {
            return;
        };
        record.deployment = request.deployment.map(str::to_owned);
        record.attempts = request.attempts;
        record.status = request.status;
        record.outcome = request.outcome.as_str().to_owned();
        if let Some(usage) = request.usage {
            record.prompt_tokens = usage.prompt_tokens;
            record.completion_tokens = usage.completion_tokens;
            record.cache_read_tokens = usage.cache_read_tokens;
            record.cache_write_tokens = usage.cache_write_tokens;
            record.usage_estimated = usage.estimated;
        }
        record.cost_micros = request.cost_micros.unwrap_or(0);
        record.latency_ms = request.duration.as_secs_f64() * 1000.0;
        record.ttft_ms = request.ttft.map(|ttft| ttft.as_secs_f64() * 1000.0);
        self.log.record(record);
    }
}

impl Drop for Recorder {
    /// The request actor never said how the request ended: it could not
    /// start, or stopped without an answer; the client got a 503.
    fn drop(&mut self) {
        let held = self.record.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut record) = held {
            record.status = 503;
            record.outcome = "failed".into();
            record.code = Some("gateway_unavailable".into());
            let latency_ms = unix_millis().saturating_sub(record.time_ms);
            record.latency_ms = latency_ms as f64;
            self.log.record(record);
        }
    }
}
