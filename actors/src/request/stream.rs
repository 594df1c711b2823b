//! A streamed answer on its way to the client: events forwarded as they
//! come, `model` rewritten, held back until the first content so that a
//! stream failing before then can be retried unseen, and ended with an
//! SSE `error` event, never a normal finish, when it breaks after — or,
//! when the upstream ended it with an error of its own, with that.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chorus_proto::rewrite::StreamRewriter;
use chorus_proto::ApiFormat;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::attempt::{CallLimits, ReplyTx};
use super::settle::{CallRecord, Ending};
use super::Reply;
use crate::provider::{EventStream, ProviderError};

/// SSE frames buffered between the upstream and a slow client. Small, so a
/// client that stops reading stops the upstream read too.
pub(super) const STREAM_BUFFER_FRAMES: usize = 32;

/// Chunks without content (role-only openings) held back before the
/// first content; an upstream that sends more is not streaming a reply.
const MAX_HELD_FRAMES: usize = 64;

/// How a stream went.
pub(super) enum Pumped {
    /// It failed before any content reached the client, who saw nothing:
    /// the cause, and the reply channel for another attempt.
    Early(ProviderError, ReplyTx),
    /// The client got the stream: how it ended and the text it carried,
    /// for estimating tokens when no usage came.
    Ended(Ending, String),
    /// The stream reached its end, in order or not: as `Ended`, with its
    /// last frame (`[DONE]`, `message_stop`, `response.completed`, … or
    /// the `error` event) not yet sent, for the caller to send once the
    /// call is counted.
    Finished(Ending, String, Bytes),
}

/// Before its first content, a stream's reply is not yet sent.
pub(super) enum ClientSide {
    Waiting(ReplyTx, Reply),
    Open,
}

/// One streamed call on its way to the client.
pub(super) struct Stream<'a> {
    pub(super) record: &'a CallRecord<'a>,
    pub(super) alias: &'a str,
    pub(super) limits: CallLimits,
    /// The stream's format, which its events and an error event are in.
    pub(super) format: ApiFormat,
    /// The client did not ask for usage: hold the usage chunk back.
    pub(super) hide_usage: bool,
}

impl Stream<'_> {
    /// Forwards upstream events to the client as they arrive, `model`
    /// rewritten. Nothing is sent — not even the response headers — until
    /// the first event with content (a role-only first chunk, Anthropic's
    /// `message_start`, wait for it), so a stream that fails before then
    /// can be retried or fall back unseen. A stream counts as complete
    /// only when the upstream ended it in order (`[DONE]`, `message_stop`,
    /// `response.completed`); one the upstream ended with its own failure
    /// (`response.failed`) reaches the client as it came but counts as
    /// failed; any other end after content (closed early, broken,
    /// stalled, garbage, past the deadline) reaches the client as an SSE
    /// `error` event, never as a normal finish. A client that goes away,
    /// or stops reading for the idle timeout, cancels the stream.
    pub(super) async fn pump(
        &self,
        mut events: EventStream,
        mut client: ClientSide,
        frames_tx: &mpsc::Sender<Bytes>,
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
                () = client_gone(&mut client, frames_tx) => {
                    return Pumped::Ended(Ending::cancelled(ttft), text);
                }
            };
            let (frame, done, failure) = match next {
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
                                return self.fail(client, cause, ttft, text, &rewriter);
                            }
                        };
                        self.record
                            .note_usage_error(rewritten.usage_error.as_deref());
                        usage = rewritten.usage.or(usage);
                        let Some(json) = rewritten.json else {
                            continue;
                        };
                        // The upstream's own error before any content: a
                        // failure like any other, retried unseen.
                        if let (ClientSide::Waiting(..), Some(detail)) =
                            (&client, rewritten.failure.as_ref())
                        {
                            let cause = ProviderError::Broken(detail.clone());
                            return self.fail(client, cause, ttft, text, &rewriter);
                        }
                        let frame = event.with_data(&json);
                        if matches!(client, ClientSide::Waiting(..)) && !rewritten.starts_reply {
                            if held.len() == MAX_HELD_FRAMES {
                                let cause = ProviderError::Malformed(format!(
                                    "more than {MAX_HELD_FRAMES} chunks before any content"
                                ));
                                return self.fail(client, cause, ttft, text, &rewriter);
                            }
                            held.push(frame);
                            continue;
                        }
                        (frame, rewritten.ends_stream, rewritten.failure)
                    }
                },
                Ok(Some(Err(cause))) => return self.fail(client, cause, ttft, text, &rewriter),
                Ok(None) => {
                    let cause = ProviderError::Broken("the stream ended without `[DONE]`".into());
                    return self.fail(client, cause, ttft, text, &rewriter);
                }
                Err(_) => {
                    let cause = ProviderError::Timeout(timeout);
                    return self.fail(client, cause, ttft, text, &rewriter);
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
            // The last frame waits for the call to be counted.
            let (frame, last_frame) = if done {
                (None, Some(frame))
            } else {
                (Some(frame), None)
            };
            for frame in held.drain(..).chain(frame) {
                if frames_tx.send_timeout(frame, idle).await.is_err() {
                    return Pumped::Ended(Ending::cancelled(ttft), text);
                }
            }
            if let Some(last_frame) = last_frame {
                let ending = match failure {
                    None => Ending::completed(ttft, usage),
                    // It reached the client as the upstream wrote it; the
                    // call still failed, and what it used is counted.
                    Some(detail) => {
                        let error = self.record.error(ProviderError::Broken(detail));
                        let ending = Ending::failed(200, ttft, error);
                        match usage {
                            Some(usage) => ending.with_usage(usage),
                            None => ending,
                        }
                    }
                };
                return Pumped::Finished(ending, text, last_frame);
            }
            (due, timeout) = self.limits.next_by(Instant::now());
        }
    }

    /// The stream failed: unseen before content, an SSE `error` event after
    /// (left for the caller to send).
    fn fail(
        &self,
        client: ClientSide,
        cause: ProviderError,
        ttft: Option<Duration>,
        text: String,
        rewriter: &StreamRewriter,
    ) -> Pumped {
        if let ClientSide::Waiting(reply_tx, _) = client {
            return Pumped::Early(cause, reply_tx);
        }
        let error = self.record.error(cause);
        let frame = rewriter.error_frame(error.status(), &error.to_error_body());
        Pumped::Finished(Ending::failed(200, ttft, error), text, frame)
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
