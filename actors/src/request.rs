//! `RequestActor`: one per request, and where its orchestration lives. It
//! runs the request's [`AttemptPlan`](crate::routing::AttemptPlan) and
//! stops itself when the request is over, so its lifetime is exactly the
//! request's; its [`Tracked`] guard lets shutdown wait for it. The work is
//! split along its seams:
//!
//! - [`attempt`]: the attempt loop — each attempt's call to the deployment
//!   the plan chooses, within its timeouts, and on a failure the plan's
//!   next attempt (a retry or a fallback);
//! - [`stream`]: a streamed answer on its way to the client, held back
//!   until its first content so a failure before then stays unseen;
//! - [`settle`]: how a call ended, recorded on its deployment (counts,
//!   tokens, cost), settled against the key's limits, told to the
//!   observer and logged.

mod attempt;
mod settle;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chorus_proto::{ApiFormat, ChatRequest};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{mpsc, oneshot};

use crate::error::RequestError;
use crate::limits::Admission;
use crate::observe::RequestObserver;
use crate::routes::AliasRoute;
use crate::routing::Fallbacks;
use crate::tracker::Tracked;

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
    /// Who sees a stream's usage chunk.
    pub usage_chunk: UsageChunk,
}

/// Who sees a streamed answer's usage chunk (its last, with no choices).
/// Decided once per request, by [`UsageChunk::of`]; the actor and the
/// response cache both act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageChunk {
    /// The client: it asked for it (`stream_options.include_usage`), or
    /// the answer is not a stream.
    Client,
    /// Nobody: the upstream is asked for it all the same, so the call's
    /// tokens are counted, and the actor drops it.
    Dropped,
    /// The caller, which keeps the answer with its usage (the response
    /// cache) and drops the chunk itself once it has it.
    Caller,
}

impl UsageChunk {
    /// Who sees `request`'s usage chunk, when the caller keeps its answer
    /// or not.
    pub fn of(request: &ChatRequest, caller_keeps: bool) -> Self {
        if !request.stream || request.include_usage {
            UsageChunk::Client
        } else if caller_keeps {
            UsageChunk::Caller
        } else {
            UsageChunk::Dropped
        }
    }
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
            attempt::run(args).await;
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
