//! How a request's calls end up counted: each call recorded on its
//! deployment, the request's hold on its key's limits settled with what
//! the last call used, the observer told, and one log line per request
//! (and one per failed attempt that another followed).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chorus_proto::Usage;

use super::UsageChunk;
use crate::clock::unix_millis;
use crate::deployment::{CallEnded, CallOutcome, DeploymentHandle};
use crate::error::CallError;
use crate::limits::{Admission, Reservation};
use crate::observe::{FinishedRequest, RequestObserver};
use crate::provider::ProviderError;
use crate::routing::Attempt;

/// How a call ended: what the deployment and the log line learn.
pub(super) struct Ending {
    pub(super) outcome: CallOutcome,
    /// The status the client got; 499 when it went away first.
    status: u16,
    ttft: Option<Duration>,
    pub(super) usage: Option<Usage>,
    /// Why the upstream call failed, for the log line.
    error: Option<CallError>,
}

impl Ending {
    pub(super) fn completed(ttft: Option<Duration>, usage: Option<Usage>) -> Self {
        Ending {
            outcome: CallOutcome::Completed,
            status: 200,
            ttft,
            usage,
            error: None,
        }
    }

    pub(super) fn cancelled(ttft: Option<Duration>) -> Self {
        Ending {
            outcome: CallOutcome::Cancelled,
            status: 499,
            ttft,
            usage: None,
            error: None,
        }
    }

    /// The tokens a call that ended early had used.
    pub(super) fn with_usage(self, usage: Usage) -> Self {
        Ending {
            usage: Some(usage),
            ..self
        }
    }

    /// `status` is what the client saw: the error's own status, or 200 for
    /// a stream that had already started.
    pub(super) fn failed(status: u16, ttft: Option<Duration>, error: CallError) -> Self {
        Ending {
            outcome: CallOutcome::Failed,
            status,
            ttft,
            usage: None,
            error: Some(error),
        }
    }
}

/// The facts of the request that every attempt's record shares.
pub(super) struct RequestFacts<'a> {
    pub(super) request_id: &'a str,
    pub(super) alias: &'a str,
    pub(super) received_at: Instant,
    /// When the request must be over, retries and fallbacks included.
    pub(super) deadline: Option<Instant>,
    pub(super) stream: bool,
    /// Taken and settled when the request's last call is recorded.
    pub(super) admission: Mutex<Option<Admission>>,
    pub(super) observer: &'a dyn RequestObserver,
    pub(super) usage_chunk: UsageChunk,
}

impl RequestFacts<'_> {
    /// Replaces what admission reserved with what the call used and cost,
    /// once: with no figure (a call that failed before any usage), the
    /// reservation stands — the upstream may have charged for it.
    pub(super) fn settle_limits(
        &self,
        usage: Option<Usage>,
        cost_micros: Option<u64>,
        now_ms: u64,
    ) {
        let admission = self
            .admission
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(admission) = admission else {
            return;
        };
        let used = match (usage, cost_micros) {
            (Some(usage), Some(cost_micros)) => Reservation {
                tokens: usage.total_tokens,
                cost_micros,
            },
            _ => admission.reservation(),
        };
        admission.settle(used, now_ms);
    }

    /// No call was made: nothing was used.
    pub(super) fn release_limits(&self, now_ms: u64) {
        self.settle_limits(Some(Usage::default()), Some(0), now_ms);
    }

    /// Tells the observer of a request that ended with no call to record,
    /// after `attempts` calls that failed.
    pub(super) fn unanswered(&self, status: u16, outcome: CallOutcome, attempts: u32) {
        self.observer.finished(&FinishedRequest {
            alias: self.alias,
            deployment: None,
            attempts,
            status,
            outcome,
            duration: self.received_at.elapsed(),
            ttft: None,
            usage: None,
            cost_micros: None,
        });
    }
}

/// One call of a request to one deployment: what its report and log line
/// are made of.
pub(super) struct CallRecord<'a> {
    pub(super) facts: &'a RequestFacts<'a>,
    /// The alias the call serves: the request's own, or a fallback.
    pub(super) alias: &'a str,
    pub(super) deployment: &'a DeploymentHandle,
    /// This call's number among the request's attempts, from 1.
    pub(super) attempt: u32,
    pub(super) started: Instant,
}

/// The request's last call, counted and settled; what its report says.
pub(super) struct Counted {
    ending: Ending,
    cost_micros: Option<u64>,
}

impl CallRecord<'_> {
    /// Records the request's last call and logs the request.
    pub(super) fn finish(&self, ending: Ending) {
        let counted = self.count(ending);
        self.report(counted);
    }

    /// Counts the request's last call on its deployment and settles the
    /// request's limits with what it used: in memory, at once.
    pub(super) fn count(&self, ending: Ending) -> Counted {
        let now_ms = unix_millis();
        let cost_micros = self.record(ending.outcome, ending.ttft, ending.usage, now_ms);
        self.facts.settle_limits(ending.usage, cost_micros, now_ms);
        Counted {
            ending,
            cost_micros,
        }
    }

    /// Waits until what was counted is in the node's store: before the
    /// answer's last byte leaves, so a node killed then still counts it.
    pub(super) async fn commit(&self) {
        self.deployment.ledger().committed().await;
    }

    /// Tells the observer how the request ended, and logs it.
    pub(super) fn report(&self, counted: Counted) {
        let Counted {
            ending:
                Ending {
                    outcome,
                    status,
                    ttft,
                    usage,
                    error,
                },
            cost_micros,
        } = counted;
        let facts = self.facts;
        facts.observer.finished(&FinishedRequest {
            alias: facts.alias,
            deployment: Some(self.deployment.name()),
            attempts: self.attempt,
            status,
            outcome,
            duration: facts.received_at.elapsed(),
            ttft,
            usage,
            cost_micros,
        });
        tracing::info!(
            target: "chorus::request",
            request_id = %facts.request_id,
            alias = %facts.alias,
            fallback = (self.alias != facts.alias).then_some(self.alias),
            deployment = %self.deployment.name(),
            attempts = self.attempt,
            stream = facts.stream,
            status,
            outcome = ?outcome,
            prompt_tokens = usage.map(|usage| usage.prompt_tokens),
            completion_tokens = usage.map(|usage| usage.completion_tokens),
            usage_estimated = usage.map(|usage| usage.estimated),
            cost_micros,
            ttft_ms = ttft.map(|ttft| ttft.as_secs_f64() * 1000.0),
            latency_ms = facts.received_at.elapsed().as_secs_f64() * 1000.0,
            error = error.as_ref().map(tracing::field::display),
            "request finished"
        );
    }

    /// Records a failed call that another attempt follows, and logs it.
    pub(super) fn retried(&self, error: &CallError, next: &Attempt) {
        self.record(CallOutcome::Failed, None, None, unix_millis());
        tracing::info!(
            target: "chorus::request",
            request_id = %self.facts.request_id,
            alias = %self.alias,
            deployment = %self.deployment.name(),
            attempt = self.attempt,
            status = error.status(),
            %error,
            next_deployment = %next.deployment.name(),
            wait_ms = next.wait.as_millis() as u64,
            "attempt failed, retrying"
        );
    }

    fn record(
        &self,
        outcome: CallOutcome,
        ttft: Option<Duration>,
        usage: Option<Usage>,
        now_ms: u64,
    ) -> Option<u64> {
        let ended = CallEnded {
            outcome,
            latency: self.started.elapsed(),
            ttft,
            usage,
        };
        self.deployment.record(ended, now_ms)
    }

    /// Logs an upstream `usage` object that could not be read: the call is
    /// then counted with an estimate, and the log says why.
    pub(super) fn note_usage_error(&self, error: Option<&str>) {
        if let Some(error) = error {
            tracing::warn!(request_id = %self.facts.request_id, deployment = %self.deployment.name(),
                %error, "the upstream's usage could not be read; tokens will be estimated");
        }
    }

    pub(super) fn error(&self, cause: ProviderError) -> CallError {
        CallError {
            deployment: self.deployment.name().to_owned(),
            cause,
        }
    }
}
