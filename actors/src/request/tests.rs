//! The request actor against a scripted provider, on tokio's paused clock:
//! timeouts pass in no real time, so every deadline is exact.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_proto::sse::SseEvent;
use chorus_proto::{ChatRequest, Price, Usage};
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Reply, ReplyBody, RequestActor, RequestArgs, UsageChunk};
use crate::deployment::{CallOutcome, DeploymentHandle, DeploymentSpec, Quota};
use crate::error::RequestError;
use crate::observe::{FinishedRequest, RequestObserver};
use crate::provider::{Provider, ProviderError, UpstreamCall, UpstreamReply};
use crate::routes::{AliasRoute, RouteOptions, Timeouts};
use crate::routing::breaker::BreakerPolicy;
use crate::routing::RetryPolicy;
use crate::testing::ledger;
use crate::tracker::RequestTracker;

const ROLE: &str = r#"{"model":"up","choices":[{"index":0,"delta":{"role":"assistant"}}]}"#;
const HELLO: &str = r#"{"model":"up","choices":[{"index":0,"delta":{"content":"Hello"}}]}"#;
const STOP: &str = r#"{"model":"up","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
const USAGE: &str = r#"{"model":"up","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}"#;
const DONE: &str = "[DONE]";

/// What one call of a [`Scripted`] provider does.
enum Script {
    /// Streams each event after its delay, then ends the stream — or,
    /// `hang`, keeps it open with nothing more.
    Stream {
        events: Vec<(Duration, &'static str)>,
        hang: bool,
    },
}

fn stream(events: &[(u64, &'static str)]) -> Script {
    Script::Stream {
        events: events
            .iter()
            .map(|(ms, data)| (Duration::from_millis(*ms), *data))
            .collect(),
        hang: false,
    }
}

fn hanging(events: &[(u64, &'static str)]) -> Script {
    match stream(events) {
        Script::Stream { events, .. } => Script::Stream { events, hang: true },
    }
}

/// Answers its calls with its scripts, in order, and keeps their bodies.
#[derive(Default)]
struct Scripted {
    scripts: Mutex<VecDeque<Script>>,
    bodies: Mutex<Vec<serde_json::Value>>,
}

impl Scripted {
    fn new(scripts: Vec<Script>) -> Arc<Self> {
        Arc::new(Scripted {
            scripts: Mutex::new(scripts.into()),
            bodies: Mutex::default(),
        })
    }
}

impl Provider for Scripted {
    fn send(&self, call: UpstreamCall) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
        if let Ok(body) = serde_json::from_slice(&call.body) {
            self.bodies.lock().unwrap().push(body);
        }
        let script = self.scripts.lock().unwrap().pop_front();
        Box::pin(async move {
            let Some(Script::Stream { events, hang }) = script else {
                return Err(ProviderError::Broken("no script left".into()));
            };
            let events = futures::stream::iter(events).then(|(delay, data)| async move {
                tokio::time::sleep(delay).await;
                Ok(SseEvent::from_data(data.as_bytes()))
            });
            let tail = futures::stream::once(async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                None
            })
            .filter_map(std::future::ready);
            Ok(UpstreamReply::Stream(events.chain(tail).boxed()))
        })
    }

    fn reports_stream_usage(&self) -> bool {
        true
    }
}

/// How a request ended, as the node's metrics would hear it: status,
/// outcome, attempts and usage.
type Ended = (u16, CallOutcome, u32, Option<Usage>);

/// Every request's [`Ended`].
#[derive(Default)]
struct Heard(Mutex<Vec<Ended>>);

impl RequestObserver for Heard {
    fn finished(&self, request: &FinishedRequest<'_>) {
        let heard = (
            request.status,
            request.outcome,
            request.attempts,
            request.usage,
        );
        self.0.lock().unwrap().push(heard);
    }
}

impl Heard {
    /// The one request heard of, once its actor has finished with it.
    async fn only(&self) -> Ended {
        loop {
            if let Some(heard) = self.0.lock().unwrap().first() {
                return *heard;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn deployment(provider: Arc<Scripted>) -> DeploymentHandle {
    let spec = DeploymentSpec {
        name: "p/m".into(),
        provider: "p".into(),
        upstream_model: "m".into(),
        price: Price::default(),
        timeout: Duration::from_secs(30),
        quota: Quota::default(),
        breaker: BreakerPolicy::default(),
    };
    DeploymentHandle::new(spec, provider, &ledger("n"))
}

fn streamed_request() -> ChatRequest {
    let body = r#"{"model":"a","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    ChatRequest::parse(body.as_bytes()).unwrap()
}

/// One streamed request through an alias of one deployment on `provider`,
/// with `timeouts` and one retry: its reply and the observer.
async fn ask(
    provider: &Arc<Scripted>,
    timeouts: Timeouts,
    usage_chunk: UsageChunk,
) -> (Result<Reply, RequestError>, Arc<Heard>) {
    let options = RouteOptions {
        timeouts,
        retry: RetryPolicy {
            max_retries: 1,
            backoff: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
        },
        ..RouteOptions::default()
    };
    let targets = vec![deployment(Arc::clone(provider)).into()];
    let route = Arc::new(AliasRoute::new("a".into(), targets, options).unwrap());
    let heard = Arc::new(Heard::default());
    let (reply_tx, reply_rx) = oneshot::channel();
    let args = RequestArgs {
        request_id: "r".into(),
        request: streamed_request(),
        route,
        received_at: std::time::Instant::now(),
        reply_tx,
        tracked: RequestTracker::default().track(),
        admission: None,
        fallbacks: Default::default(),
        observer: heard.clone(),
        usage_chunk,
    };
    RequestActor::start(args).await.unwrap();
    (reply_rx.await.unwrap(), heard)
}

/// Every frame of a streamed reply, as text, until the stream closes.
async fn frames(reply: Reply) -> Vec<String> {
    let ReplyBody::Stream(mut frames) = reply.body else {
        panic!("not a stream");
    };
    let mut seen = Vec::new();
    while let Some(frame) = frames.recv().await {
        seen.push(String::from_utf8_lossy(&frame).into_owned());
    }
    seen
}

fn idle(ms: u64) -> Timeouts {
    Timeouts {
        idle: Some(Duration::from_millis(ms)),
        ..Timeouts::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_breaks_before_content_is_retried_unseen() {
    let provider = Scripted::new(vec![
        stream(&[(0, ROLE)]),
        stream(&[(0, ROLE), (5, HELLO), (5, STOP), (0, DONE)]),
    ]);
    let (reply, heard) = ask(&provider, Timeouts::default(), UsageChunk::Dropped).await;
    let reply = reply.unwrap();
    assert_eq!(reply.attempts, 2);
    let seen = frames(reply).await;
    let roles = seen
        .iter()
        .filter(|frame| frame.contains("\"role\""))
        .count();
    assert_eq!(
        roles, 1,
        "the broken attempt's opening never reached the client"
    );
    assert!(seen.iter().any(|frame| frame.contains("Hello")));
    assert_eq!(seen.last().map(String::as_str), Some("data: [DONE]\n\n"));
    let (status, outcome, attempts, _) = heard.only().await;
    assert_eq!(
        (status, outcome, attempts),
        (200, CallOutcome::Completed, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn no_first_content_within_the_ttft_timeout_is_retried() {
    let provider = Scripted::new(vec![
        hanging(&[(0, ROLE)]),
        stream(&[(0, HELLO), (0, STOP), (0, DONE)]),
    ]);
    let timeouts = Timeouts {
        ttft: Some(Duration::from_secs(2)),
        ..Timeouts::default()
    };
    let started = Instant::now();
    let (reply, heard) = ask(&provider, timeouts, UsageChunk::Dropped).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited out the TTFT"
    );
    assert_eq!(reply.unwrap().attempts, 2);
    assert_eq!(heard.only().await.1, CallOutcome::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_stall_after_content_ends_with_an_error_event_never_done() {
    let provider = Scripted::new(vec![hanging(&[(0, ROLE), (0, HELLO)])]);
    let started = Instant::now();
    let (reply, heard) = ask(&provider, idle(1_000), UsageChunk::Dropped).await;
    let seen = frames(reply.unwrap()).await;
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(2)).contains(&waited),
        "ended by the idle timeout, not the call's: {waited:?}"
    );
    assert!(seen.iter().any(|frame| frame.contains("Hello")));
    let last = seen.last().unwrap();
    assert!(last.starts_with("event: error"), "{last}");
    assert!(!seen.iter().any(|frame| frame.contains("[DONE]")));
    let (status, outcome, _, usage) = heard.only().await;
    assert_eq!((status, outcome), (200, CallOutcome::Failed));
    assert!(
        usage.unwrap().estimated,
        "what it produced is still counted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_mid_stream_cancels_the_call() {
    let provider = Scripted::new(vec![stream(&[
        (0, HELLO),
        (1_000, HELLO),
        (1_000, HELLO),
        (0, DONE),
    ])]);
    let (reply, heard) = ask(&provider, idle(5_000), UsageChunk::Dropped).await;
    let ReplyBody::Stream(mut frames) = reply.unwrap().body else {
        panic!("not a stream");
    };
    assert!(frames.recv().await.is_some());
    drop(frames);
    let (status, outcome, _, _) = heard.only().await;
    assert_eq!((status, outcome), (499, CallOutcome::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn the_usage_chunk_reaches_whom_usage_chunk_names_and_is_counted_either_way() {
    for (usage_chunk, shown) in [(UsageChunk::Dropped, false), (UsageChunk::Caller, true)] {
        let provider = Scripted::new(vec![stream(&[
            (0, HELLO),
            (0, STOP),
            (0, USAGE),
            (0, DONE),
        ])]);
        let (reply, heard) = ask(&provider, Timeouts::default(), usage_chunk).await;
        let seen = frames(reply.unwrap()).await;
        assert_eq!(
            seen.iter().any(|frame| frame.contains("\"usage\"")),
            shown,
            "{usage_chunk:?}"
        );
        let asked = provider.bodies.lock().unwrap()[0].clone();
        assert_eq!(asked["stream_options"]["include_usage"], true);
        let usage = heard.only().await.3.unwrap();
        assert_eq!((usage.prompt_tokens, usage.estimated), (7, false));
    }
    let whole = ChatRequest::parse(br#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#)
        .unwrap();
    assert_eq!(UsageChunk::of(&whole, true), UsageChunk::Client);
    let asked =
        br#"{"model":"a","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let asked = ChatRequest::parse(asked).unwrap();
    assert_eq!(UsageChunk::of(&asked, true), UsageChunk::Client);
    assert_eq!(
        UsageChunk::of(&streamed_request(), true),
        UsageChunk::Caller
    );
    assert_eq!(
        UsageChunk::of(&streamed_request(), false),
        UsageChunk::Dropped
    );
}
