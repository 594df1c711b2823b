//! The attempt loop: each attempt's call to the deployment the plan
//! chooses, within its timeouts; a call that fails before the client saw
//! anything goes back to the plan, which retries or falls back, and the
//! call that answers is settled.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_proto::rewrite::rewrite_whole;
use chorus_proto::ChatRequest;
use tokio::sync::{mpsc, oneshot};

use super::settle::{CallRecord, Ending, RequestFacts};
use super::stream::{ClientSide, Pumped, Stream, STREAM_BUFFER_FRAMES};
use super::{Reply, ReplyBody, RequestArgs, UsageChunk};
use crate::clock::{millis, unix_millis};
use crate::deployment::CallOutcome;
use crate::error::RequestError;
use crate::estimate;
use crate::provider::{ProviderError, UpstreamCall, UpstreamReply};
use crate::routing::AttemptPlan;

pub(super) type ReplyTx = oneshot::Sender<Result<Reply, RequestError>>;

/// The attempt plan, run: each attempt's call, and on a failure the plan
/// retries, the next attempt.
pub(super) async fn run(args: RequestArgs) {
    let RequestArgs {
        request_id,
        mut request,
        route,
        received_at,
        mut reply_tx,
        tracked: _tracked,
        admission,
        fallbacks,
        observer,
        usage_chunk,
    } = args;
    let facts = RequestFacts {
        request_id: &request_id,
        alias: &route.alias,
        received_at,
        deadline: route.timeouts.total.map(|total| received_at + total),
        stream: request.stream,
        admission: Mutex::new(admission),
        observer: observer.as_ref(),
        usage_chunk,
    };
    // The plan counts in wall-clock ms, as breakers and cooldowns do.
    let deadline_ms = facts.deadline.map(|deadline| {
        let left = deadline.saturating_duration_since(Instant::now());
        unix_millis().saturating_add(millis(left))
    });
    let mut plan =
        AttemptPlan::new(Arc::clone(&route), &request, fallbacks).with_deadline(deadline_ms);
    let mut attempt = match plan.first(&request, unix_millis()) {
        Ok(attempt) => attempt,
        Err(unavailable) => {
            facts.release_limits(unix_millis());
            facts.unanswered(503, CallOutcome::Failed, 0);
            tracing::info!(target: "chorus::request", request_id = %request_id,
                alias = %route.alias, status = 503, retry_after_ms = unavailable.retry_after_ms,
                "no deployment can take the request");
            let _ = reply_tx.send(Err(RequestError::Unavailable(unavailable)));
            return;
        }
    };
    loop {
        if !attempt.wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(attempt.wait) => {}
                () = reply_tx.closed() => {
                    // The reservation stands: earlier attempts may have been charged.
                    facts.settle_limits(None, None, unix_millis());
                    facts.unanswered(499, CallOutcome::Cancelled, plan.attempts().saturating_sub(1));
                    tracing::info!(target: "chorus::request", request_id = %request_id,
                        alias = %route.alias, attempts = plan.attempts().saturating_sub(1), status = 499,
                        "the client went away between attempts");
                    return;
                }
            }
        }
        let serving = Arc::clone(plan.route());
        let record = CallRecord {
            facts: &facts,
            alias: &serving.alias,
            deployment: &attempt.deployment,
            attempt: plan.attempts(),
            started: Instant::now(),
        };
        let Some((cause, unanswered)) = call(&record, &mut plan, &mut request, reply_tx).await
        else {
            return;
        };
        reply_tx = unanswered;
        let error = record.error(cause);
        match plan.after_failure(&attempt.deployment, &error.cause, &request, unix_millis()) {
            Some(next) => {
                record.retried(&error, &next);
                attempt = next;
            }
            None => {
                let _ = reply_tx.send(Err(RequestError::Upstream {
                    error: error.clone(),
                    attempts: record.attempt,
                }));
                record.finish(Ending::failed(error.status(), None, error));
                return;
            }
        }
    }
}

/// One attempt's call. Answers the client and records the request, unless
/// the call failed before anything was sent to the client: then the cause
/// and the unused reply channel come back for the plan to decide.
async fn call(
    record: &CallRecord<'_>,
    plan: &mut AttemptPlan,
    request: &mut ChatRequest,
    mut reply_tx: ReplyTx,
) -> Option<(ProviderError, ReplyTx)> {
    let deployment = record.deployment;
    let spec = deployment.spec();
    let timeouts = &plan.route().timeouts;
    let limits = CallLimits {
        // A stream's first content, or a whole body, within this.
        first: timeouts
            .ttft
            .filter(|_| request.stream)
            .unwrap_or(spec.timeout),
        idle: timeouts.idle.unwrap_or(spec.timeout),
        end: record.facts.deadline,
    };
    // Every streamed call gets counted tokens: ask for usage even when the
    // client did not, and drop the chunk unless the caller wants it.
    let ask_for_usage =
        request.stream && !request.include_usage && deployment.provider().reports_stream_usage();
    let hide_usage = ask_for_usage && record.facts.usage_chunk == UsageChunk::Dropped;
    let provider = deployment.provider();
    let upstream_model = request.upstream_model(&spec.upstream_model);
    // The client's own format when the upstream speaks it: a pass-through.
    let format = match request.client_format() {
        own if provider.speaks(own) => own,
        _ => provider.format(),
    };
    let body = match request.upstream_body(format, &upstream_model, ask_for_usage) {
        Ok(body) => body,
        Err(reason) => {
            let refusal = ProviderError::Refused(reason.to_error_body().to_json().into());
            return Some((refusal, reply_tx));
        }
    };
    let format = body.format;
    let call = UpstreamCall {
        request_id: record.facts.request_id.to_owned(),
        endpoint: request.endpoint,
        body: body.bytes,
        format,
        client_headers: request
            .forwarded_headers(provider.format())
            .cloned()
            .collect(),
        stream: request.stream,
    };
    let _in_flight = deployment.start_call(unix_millis());
    let (first_by, first_timeout) = limits.first_by(record.started);
    let answer = tokio::select! {
        answer = tokio::time::timeout_at(first_by.into(), provider.send(call)) => {
            answer.unwrap_or(Err(ProviderError::Timeout(first_timeout)))
        }
        () = reply_tx.closed() => {
            record.finish(Ending::cancelled(None));
            return None;
        }
    };
    let upstream_elapsed = record.started.elapsed();
    let reply = |body| Reply {
        alias: record.alias.to_owned(),
        deployment: deployment.name().to_owned(),
        attempts: record.attempt,
        upstream_elapsed,
        format,
        body,
    };
    let alias = request.answer_model(record.alias);
    match answer {
        Err(cause) => Some((cause, reply_tx)),
        Ok(UpstreamReply::Complete(body)) => {
            let mut text = String::new();
            let rewritten = match rewrite_whole(format, &body, alias, &mut text) {
                Ok(rewritten) => rewritten,
                Err(detail) => return Some((ProviderError::Malformed(detail), reply_tx)),
            };
            plan.succeeded(deployment, unix_millis());
            record.note_usage_error(rewritten.usage_error.as_deref());
            let usage = rewritten
                .usage
                .unwrap_or_else(|| estimate::usage(request, &text));
            let json = rewritten.json.unwrap_or_default();
            // Counted, and the counts on disk, before the client has the
            // answer: its next request sees this one's real cost, and a
            // node killed right after still counts it. The report and the
            // log line are not the client's wait.
            let counted = record.count(Ending::completed(None, Some(usage)));
            record.commit().await;
            let _ = reply_tx.send(Ok(reply(ReplyBody::Complete(json.into()))));
            record.report(counted);
            None
        }
        Ok(UpstreamReply::Stream(events)) => {
            let stream = Stream {
                record,
                alias,
                limits,
                format,
                hide_usage,
            };
            let (frames_tx, frames_rx) = mpsc::channel(STREAM_BUFFER_FRAMES);
            let opening = reply(ReplyBody::Stream(frames_rx));
            let client = ClientSide::Waiting(reply_tx, opening);
            let (ending, text, last_frame) = match stream.pump(events, client, &frames_tx).await {
                Pumped::Early(cause, reply_tx) => return Some((cause, reply_tx)),
                Pumped::Ended(ending, text) => (ending, text, None),
                Pumped::Finished(ending, text, last_frame) => (ending, text, Some(last_frame)),
            };
            match ending.outcome {
                CallOutcome::Completed => plan.succeeded(deployment, unix_millis()),
                CallOutcome::Failed => plan.broke_after_content(deployment, unix_millis()),
                CallOutcome::Cancelled => {}
            }
            // The upstream charged for what it produced, however it ended.
            let ending = match ending.usage {
                Some(_) => ending,
                None => {
                    let usage = estimate::usage(request, &text);
                    ending.with_usage(usage)
                }
            };
            let counted = record.count(ending);
            if let Some(last_frame) = last_frame {
                // The stream's end reaches the client once it is counted on
                // disk; a client gone by then was answered all the same.
                record.commit().await;
                let _ = frames_tx.send_timeout(last_frame, limits.idle).await;
            }
            record.report(counted);
            None
        }
    }
}

/// How long one call may take: its first content (or whole body) within
/// `first` of its start, each later stream event within `idle` of the
/// one before, and all of it by the request's deadline.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallLimits {
    pub(super) first: Duration,
    pub(super) idle: Duration,
    end: Option<Instant>,
}

impl CallLimits {
    /// When the first content is due, and the timeout that is.
    pub(super) fn first_by(&self, started: Instant) -> (Instant, Duration) {
        self.capped(started + self.first, self.first, started)
    }

    /// When the next event is due after one at `now`, and the timeout.
    pub(super) fn next_by(&self, now: Instant) -> (Instant, Duration) {
        self.capped(now + self.idle, self.idle, now)
    }

    /// `due`, or the request's deadline when that is sooner.
    fn capped(&self, due: Instant, timeout: Duration, from: Instant) -> (Instant, Duration) {
        match self.end {
            Some(end) if end < due => (end, end.saturating_duration_since(from)),
            _ => (due, timeout),
        }
    }
}
