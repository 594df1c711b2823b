//! The response cache in the HTTP layer: an answer served from it, as a
//! body or replayed as a stream, and a streamed answer kept for it as it
//! passes to the client.

use std::time::Duration;

use bytes::Bytes;
use chorus_actors::UsageChunk;
use chorus_proto::cache::{replay_chunks, Assembler, ChunkRole};
use chorus_proto::sse::{self, SseEvent};
use chorus_proto::{ChatRequest, Endpoint};
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use http::header::AGE;
use http::HeaderValue;

use super::chat::Answer;
use crate::cache::Pending;

/// `hit` or `miss`, on every response of the endpoints the cache serves.
pub const CACHE_HEADER: &str = "x-chorus-cache";

/// The cached completion `body` as the answer `request` asked for: the
/// body itself, or a stream replaying it. An error says why it cannot be
/// replayed.
pub fn replay(request: &ChatRequest, body: Bytes) -> Result<Answer, String> {
    if !request.stream {
        return Ok(Answer::Whole(body));
    }
    let frames: Vec<Bytes> = replay_chunks(&body, request.include_usage)?
        .iter()
        .map(|chunk| sse::data_frame(chunk))
        .chain(std::iter::once(sse::done_frame()))
        .collect();
    Ok(Answer::Stream(stream::iter(frames).boxed()))
}

/// The headers of an answer from the cache: `x-chorus-cache: hit` and
/// the standard `age`, in whole seconds.
pub fn hit_headers(age: Duration) -> [(&'static str, HeaderValue); 2] {
    [
        (CACHE_HEADER, HeaderValue::from_static("hit")),
        (AGE.as_str(), HeaderValue::from(age.as_secs())),
    ]
}

/// Passes a stream of OpenAI frames from `endpoint` on unchanged while
/// assembling the whole completion, which is stored as `[DONE]` passes,
/// before the client gets it — a stream that breaks, or a client that
/// leaves, stores nothing. The usage chunk, which the cache keeps, is
/// passed on only when the client is to see it (`usage_chunk`).
pub fn keep(
    frames: BoxStream<'static, Bytes>,
    endpoint: Endpoint,
    pending: Pending,
    usage_chunk: UsageChunk,
) -> BoxStream<'static, Bytes> {
    let keeping = Keeping {
        assembler: Assembler::new(endpoint),
        pending: Some(pending),
        usage_chunk,
    };
    stream::unfold((frames, keeping), |(mut frames, mut keeping)| async move {
        let frame = frames.next().await?;
        let pass = keeping.take(&frame).await;
        Some((pass.then_some(frame), (frames, keeping)))
    })
    .filter_map(std::future::ready)
    .boxed()
}

/// A stream's answer on its way into the cache.
struct Keeping {
    assembler: Assembler,
    /// `None` once the answer is stored, or cannot be.
    pending: Option<Pending>,
    usage_chunk: UsageChunk,
}

impl Keeping {
    /// Takes one frame; whether the client gets it.
    async fn take(&mut self, frame: &Bytes) -> bool {
        let event = SseEvent::parse(frame.clone());
        match event.data() {
            _ if event.name() == b"error" => self.pending = None,
            Some(data) if data.trim_ascii() == sse::DONE.as_bytes() => {
                let whole = std::mem::take(&mut self.assembler).finish();
                if let (Some(pending), Some(whole)) = (self.pending.take(), whole) {
                    pending.store(whole.into()).await;
                }
            }
            Some(data) => match self.assembler.push(data) {
                Ok(ChunkRole::UsageOnly) => return self.usage_chunk == UsageChunk::Client,
                Ok(ChunkRole::Answer) => {}
                Err(error) => {
                    if self.pending.take().is_some() {
                        tracing::warn!(%error, "a streamed answer could not be cached");
                    }
                }
            },
            None => {}
        }
        true
    }
}
