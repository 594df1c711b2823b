//! The built-in `mock` provider: deterministic OpenAI-shaped completions with
//! real `usage`, streamed token by token with a configurable delay. It makes
//! a node useful with no upstream and no API keys.

use std::time::Duration;

use bytes::Bytes;
use chorus_actors::{Provider, ProviderError, UpstreamCall, UpstreamReply};
use chorus_proto::mock::MockReply;
use chorus_proto::sse::{self, SseEvent};
use chorus_proto::ChatRequest;
use futures::future::BoxFuture;
use futures::StreamExt;

pub struct MockProvider {
    token_delay: Duration,
    output_tokens: u64,
}

impl MockProvider {
    pub fn new(token_delay: Duration, output_tokens: u64) -> Self {
        MockProvider {
            token_delay,
            output_tokens,
        }
    }
}

impl Provider for MockProvider {
    /// The mock honours `stream_options.include_usage` as OpenAI does.
    fn reports_stream_usage(&self) -> bool {
        true
    }

    fn send(&self, call: UpstreamCall) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
        let token_delay = self.token_delay;
        let output_tokens = self.output_tokens;
        Box::pin(async move {
            let request = ChatRequest::parse_at(call.endpoint, &call.body)
                .map_err(|e| ProviderError::Malformed(e.to_string()))?;
            let payloads = match MockReply::to(&request, output_tokens) {
                MockReply::Whole(body) => {
                    let tokens = request
                        .max_output_tokens()
                        .unwrap_or(output_tokens)
                        .min(output_tokens);
                    let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
                    tokio::time::sleep(token_delay.saturating_mul(tokens)).await;
                    return Ok(UpstreamReply::Complete(Bytes::from(body)));
                }
                MockReply::Chunks(payloads) => payloads,
            };
            let data = payloads
                .into_iter()
                .chain(std::iter::once(sse::DONE.as_bytes().to_vec()))
                .map(|payload| SseEvent::from_data(&payload));
            let events = futures::stream::iter(data)
                .then(move |data| async move {
                    if !token_delay.is_zero() {
                        tokio::time::sleep(token_delay).await;
                    }
                    Ok(data)
                })
                .boxed();
            Ok(UpstreamReply::Stream(events))
        })
    }
}
