//! `RequestActor`: one per chat completion, and where its orchestration
//! lives. It runs the request's [`AttemptPlan`]: it calls the deployment
//! the plan chooses; when that call fails and the plan has another attempt
//! (a retry or a fallback), it records the failed call on its deployment,
//! logs it and makes the next one. The call
//! that answers hands the HTTP layer either the rewritten body or a channel
//! of SSE frames; the actor pumps the stream to its end, records the call
//! on its deployment (counts, tokens, cost) and writes the request's log
//! line. It stops itself when the request is over, so its lifetime is
//! exactly the request's; its [`Tracked`] guard lets shutdown wait for it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chorus_proto::rewrite::{rewrite_whole, StreamRewriter};
use chorus_proto::{ApiFormat, ChatRequest, Usage};
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{mpsc, oneshot};

use crate::clock::{millis, unix_millis};
use crate::deployment::{CallEnded, CallOutcome, DeploymentHandle};
use crate::error::{CallError, RequestError};
use crate::estimate;
use crate::limits::{Admission, Reservation};
use crate::observe::{FinishedRequest, RequestObserver};
use crate::provider::{EventStream, ProviderError, UpstreamCall, UpstreamReply};
use crate::routes::AliasRoute;
use crate::routing::{Attempt, AttemptPlan, Fallbacks};
use crate::tracker::Tracked;

/// SSE frames buffered between the upstream and a slow client. Small, so a
/// client that stops reading stops the upstream read too.
const STREAM_BUFFER_FRAMES: usize = 32;

/// Chunks without content (role-only openings) held back before the
/// first content; an upstream that sends more is not streaming a reply.
const MAX_HELD_FRAMES: usize = 64;

pub struct RequestArgs {
    pub request_id: String,
    pub request: ChatRequest,
    pub route: Arc<AliasRoute>,
    /// When the HTTP request arrived: the start of the logged latency.
    pub received_at: Instant,
    pub reply_tx: oneshot::Sender<Result<Reply, RequestError>>,
    /// Held until the call is recorded.
    pub tracked: Tracked,
    /// The request's hold on its key's and team's limits, settled with
    /// what the call used once it is recorded.
    pub admission: Option<Admission>,
    /// The aliases it may fall back to.
    pub fallbacks: Fallbacks,
    /// Told how the request ended, for the node's metrics.
    pub observer: Arc<dyn RequestObserver>,
    /// The caller wants a stream's usage chunk even when the client did
    /// not ask for one, and hides it from the client itself: the response
    /// cache keeps the usage with the answer.
    pub pass_usage_chunk: bool,
}

/// What the HTTP layer sends back to the client.
#[derive(Debug)]
pub struct Reply {
    /// The alias that answered: the request's own, or a fallback.
    pub alias: String,
    pub deployment: String,
    /// Calls made for the request, this one included.
    pub attempts: u32,
    /// Time spent waiting on the upstream before this reply was ready, so
    /// the HTTP layer can tell the gateway's own share of the latency.
    pub upstream_elapsed: Duration,
    /// The format of the body: the client's own when it passed through,
    /// else OpenAI's, for the HTTP layer to write in the client's.
    pub format: ApiFormat,
    pub body: ReplyBody,
}

#[derive(Debug)]
pub enum ReplyBody {
    /// A complete answer (a `chat.completion`, a `message`, …), `model`
    /// already set to the alias.
    Complete(Bytes),
    /// SSE frames to write as they come; the channel closes after `[DONE]`
    /// or after an `error` event.
    Stream(mpsc::Receiver<Bytes>),
}

pub struct RequestActor;

impl RequestActor {
    /// Starts the actor for one request; the answer arrives on `reply_tx`.
    pub async fn start(args: RequestArgs) -> Result<(), ractor::SpawnErr> {
        Actor::spawn(None, RequestActor, args).await.map(|_| ())
    }
}

impl Actor for RequestActor {
    type Msg = ();
    type State = Option<RequestArgs>;
    type Arguments = RequestArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RequestArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Some(args))
    }

    /// The whole call runs here, after `spawn` has returned to the HTTP
    /// handler, which waits on the reply channel instead.
    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(args) = state.take() {
            run(args).await;
        }
        myself.stop(None);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        _message: (),
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// How a call ended: what the deployment and the log line learn.
struct Ending {
    outcome: CallOutcome,
    /// The status the client got; 499 when it went away first.
    status: u16,
    ttft: Option<Duration>,
    usage: Option<Usage>,
    /// Why the upstream call failed, for the log line.
    error: Option<CallError>,
}

impl Ending {
    fn completed(ttft: Option<Duration>, usage: Option<Usage>) -> Self {
        Ending {
            outcome: CallOutcome::Completed,
            status: 200,
            ttft,
            usage,
            error: None,
        }
    }

    fn cancelled(ttft: Option<Duration>) -> Self {
        Ending {
            outcome: CallOutcome::Cancelled,
            status: 499,
            ttft,
            usage: None,
            error: None,
        }
    }

    /// The tokens a call that ended early had used.
    fn with_usage(self, usage: Usage) -> Self {
        Ending {
            usage: Some(usage),
            ..self
        }
    }

    /// `status` is what the client saw: the error's own status, or 200 for
    /// a stream that had already started.
    fn failed(status: u16, ttft: Option<Duration>, error: CallError) -> Self {
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
struct RequestFacts<'a> {
    request_id: &'a str,
    alias: &'a str,
    received_at: Instant,
    /// When the request must be over, retries and fallbacks included.
    deadline: Option<Instant>,
    stream: bool,
    /// Taken and settled when the request's last call is recorded.
    admission: Mutex<Option<Admission>>,
    observer: &'a dyn RequestObserver,
    pass_usage_chunk: bool,
}

impl RequestFacts<'_> {
    /// Replaces what admission reserved with what the call used and cost,
    /// once: with no figure (a call that failed before any usage), the
    /// reservation stands — the upstream may have charged for it.
    fn settle_limits(&self, usage: Option<Usage>, cost_micros: Option<u64>, now_ms: u64) {
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
    fn release_limits(&self, now_ms: u64) {
        self.settle_limits(Some(Usage::default()), Some(0), now_ms);
    }

    /// Tells the observer of a request that ended with no call to record,
    /// after `attempts` calls that failed.
    fn unanswered(&self, status: u16, outcome: CallOutcome, attempts: u32) {
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
struct CallRecord<'a> {
    facts: &'a RequestFacts<'a>,
    /// The alias the call serves: the request's own, or a fallback.
    alias: &'a str,
    deployment: &'a DeploymentHandle,
    /// This call's number among the request's attempts, from 1.
    attempt: u32,
    started: Instant,
}

impl CallRecord<'_> {
    /// Records the request's last call and logs the request.
    fn finish(&self, ending: Ending) {
        let Ending {
            outcome,
            status,
            ttft,
            usage,
            error,
        } = ending;
        let now_ms = unix_millis();
        let cost_micros = self.record(outcome, ttft, usage, now_ms);
        let facts = self.facts;
        facts.settle_limits(usage, cost_micros, now_ms);
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
    fn retried(&self, error: &CallError, next: &Attempt) {
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
    fn note_usage_error(&self, error: Option<&str>) {
        if let Some(error) = error {
            tracing::warn!(request_id = %self.facts.request_id, deployment = %self.deployment.name(),
                %error, "the upstream's usage could not be read; tokens will be estimated");
        }
    }

    fn error(&self, cause: ProviderError) -> CallError {
        CallError {
            deployment: self.deployment.name().to_owned(),
            cause,
        }
    }
}

type ReplyTx = oneshot::Sender<Result<Reply, RequestError>>;

/// The attempt plan, run: each attempt's call, and on a failure the plan
/// retries, the next attempt.
async fn run(args: RequestArgs) {
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
        pass_usage_chunk,
    } = args;
    let facts = RequestFacts {
        request_id: &request_id,
        alias: &route.alias,
        received_at,
        deadline: route.timeouts.total.map(|total| received_at + total),
        stream: request.stream,
        admission: Mutex::new(admission),
        observer: observer.as_ref(),
        pass_usage_chunk,
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
    // client did not, and hide it from that client again (unless the
    // caller hides it).
    let ask_for_usage =
        request.stream && !request.include_usage && deployment.provider().reports_stream_usage();
    let hide_usage = ask_for_usage && !record.facts.pass_usage_chunk;
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
            // Limits first, so the client's next request sees this one's
            // real cost; the record and the log line are not the client's
            // wait.
            let cost = spec.price.cost_micros(&usage);
            record
                .facts
                .settle_limits(Some(usage), Some(cost), unix_millis());
            let _ = reply_tx.send(Ok(reply(ReplyBody::Complete(json.into()))));
            record.finish(Ending::completed(None, Some(usage)));
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
            let (ending, text) = match stream.pump(events, client, frames_tx).await {
                Pumped::Early(cause, reply_tx) => return Some((cause, reply_tx)),
                Pumped::Ended(ending, text) => (ending, text),
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
            record.finish(ending);
            None
        }
    }
}

/// How long one call may take: its first content (or whole body) within
/// `first` of its start, each later stream event within `idle` of the
/// one before, and all of it by the request's deadline.
#[derive(Debug, Clone, Copy)]
struct CallLimits {
    first: Duration,
    idle: Duration,
    end: Option<Instant>,
}

impl CallLimits {
    /// When the first content is due, and the timeout that is.
    fn first_by(&self, started: Instant) -> (Instant, Duration) {
        self.capped(started + self.first, self.first, started)
    }

    /// When the next event is due after one at `now`, and the timeout.
    fn next_by(&self, now: Instant) -> (Instant, Duration) {
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

/// How a stream went.
enum Pumped {
    /// It failed before any content reached the client, who saw nothing:
    /// the cause, and the reply channel for another attempt.
    Early(ProviderError, ReplyTx),
    /// The client got the stream: how it ended and the text it carried,
    /// for estimating tokens when no usage came.
    Ended(Ending, String),
}

/// Before its first content, a stream's reply is not yet sent.
enum ClientSide {
    Waiting(ReplyTx, Reply),
    Open,
}

/// One streamed call on its way to the client.
struct Stream<'a> {
    record: &'a CallRecord<'a>,
    alias: &'a str,
    limits: CallLimits,
    /// The stream's format, which its events and an error event are in.
    format: ApiFormat,
    /// The client did not ask for usage: hold the usage chunk back.
    hide_usage: bool,
}

impl Stream<'_> {
    /// Forwards upstream events to the client as they arrive, `model`
    /// rewritten. Nothing is sent — not even the response headers — until
    /// the first event with content (a role-only first chunk, Anthropic's
    /// `message_start`, wait for it), so a stream that fails before then
    /// can be retried or fall back unseen. A stream counts as complete
    /// only when the upstream ended it (`[DONE]`, `message_stop`); any
    /// other end after content (closed early, broken,
    /// stalled, garbage, past the deadline) reaches the client as an SSE
    /// `error` event, never as a normal finish. A client that goes away,
    /// or stops reading for the idle timeout, cancels the stream.
    async fn pump(
        &self,
        mut events: EventStream,
        mut client: ClientSide,
        frames_tx: mpsc::Sender<Bytes>,
    ) -> Pumped {
        let mut held: Vec<Bytes> = Vec::new();
        let mut rewriter = StreamRewriter::new(self.format, self.hide_usage);
        let mut ttft = None;
        let mut usage = None;
        let mut text = String::new();
        let idle = self.limits.idle;
        let (mut due, mut timeout) = self.limits.first_by(self.record.started);
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(due.into(), events.next()) => next,
                () = client_gone(&mut client, &frames_tx) => {
                    return Pumped::Ended(Ending::cancelled(ttft), text);
                }
            };
            let (frame, done) = match next {
                Ok(Some(Ok(event))) => match event.data() {
                    // A comment or keep-alive: passed on once the client
                    // has its answer; it is no progress, so the idle timer
                    // runs on.
                    None if matches!(client, ClientSide::Waiting(..)) => continue,
                    None => {
                        if frames_tx
                            .send_timeout(event.raw().clone(), idle)
                            .await
                            .is_err()
                        {
                            return Pumped::Ended(Ending::cancelled(ttft), text);
                        }
                        continue;
                    }
                    Some(data) => {
                        let rewritten = match rewriter.event(data, self.alias, &mut text) {
                            Ok(rewritten) => rewritten,
                            Err(detail) => {
                                let cause = ProviderError::Malformed(detail);
                                return self
                                    .fail(client, cause, ttft, text, &frames_tx, &rewriter)
                                    .await;
                            }
                        };
                        self.record
                            .note_usage_error(rewritten.usage_error.as_deref());
                        usage = rewritten.usage.or(usage);
                        let Some(json) = rewritten.json else {
                            continue;
                        };
                        let frame = event.with_data(&json);
                        if matches!(client, ClientSide::Waiting(..)) && !rewritten.starts_reply {
                            if held.len() == MAX_HELD_FRAMES {
                                let cause = ProviderError::Malformed(format!(
                                    "more than {MAX_HELD_FRAMES} chunks before any content"
                                ));
                                return self
                                    .fail(client, cause, ttft, text, &frames_tx, &rewriter)
                                    .await;
                            }
                            held.push(frame);
                            continue;
                        }
                        (frame, rewritten.ends_stream)
                    }
                },
                Ok(Some(Err(cause))) => {
                    return self
                        .fail(client, cause, ttft, text, &frames_tx, &rewriter)
                        .await
                }
                Ok(None) => {
                    let cause = ProviderError::Broken("the stream ended without `[DONE]`".into());
                    return self
                        .fail(client, cause, ttft, text, &frames_tx, &rewriter)
                        .await;
                }
                Err(_) => {
                    let cause = ProviderError::Timeout(timeout);
                    return self
                        .fail(client, cause, ttft, text, &frames_tx, &rewriter)
                        .await;
                }
            };
            if let ClientSide::Waiting(reply_tx, mut opening) =
                std::mem::replace(&mut client, ClientSide::Open)
            {
                // The first content: the client gets its answer now.
                let elapsed = self.record.started.elapsed();
                ttft = Some(elapsed);
                opening.upstream_elapsed = elapsed;
                if reply_tx.send(Ok(opening)).is_err() {
                    return Pumped::Ended(Ending::cancelled(ttft), text);
                }
            }
            for frame in held.drain(..).chain(std::iter::once(frame)) {
                if frames_tx.send_timeout(frame, idle).await.is_err() {
                    return Pumped::Ended(Ending::cancelled(ttft), text);
                }
            }
            if done {
                return Pumped::Ended(Ending::completed(ttft, usage), text);
            }
            (due, timeout) = self.limits.next_by(Instant::now());
        }
    }

    /// The stream failed: unseen before content, an SSE `error` event after.
    async fn fail(
        &self,
        client: ClientSide,
        cause: ProviderError,
        ttft: Option<Duration>,
        text: String,
        frames_tx: &mpsc::Sender<Bytes>,
        rewriter: &StreamRewriter,
    ) -> Pumped {
        if let ClientSide::Waiting(reply_tx, _) = client {
            return Pumped::Early(cause, reply_tx);
        }
        let error = self.record.error(cause);
        let frame = rewriter.error_frame(error.status(), &error.to_error_body());
        if frames_tx
            .send_timeout(frame, self.limits.idle)
            .await
            .is_err()
        {
            return Pumped::Ended(Ending::cancelled(ttft), text);
        }
        Pumped::Ended(Ending::failed(200, ttft, error), text)
    }
}

/// Resolves when the client is gone: its reply channel dropped before the
/// stream opened, its frames channel after.
async fn client_gone(client: &mut ClientSide, frames_tx: &mpsc::Sender<Bytes>) {
    match client {
        ClientSide::Waiting(reply_tx, _) => reply_tx.closed().await,
        ClientSide::Open => frames_tx.closed().await,
    }
}
