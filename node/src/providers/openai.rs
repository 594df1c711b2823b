//! Any OpenAI-compatible HTTP endpoint (OpenAI, Azure, vLLM, Ollama…): the
//! body goes out as the request actor prepared it; the answer comes back as a
//! whole body or as SSE events, each event's data as it was sent.

use chorus_actors::{EventStream, Provider, ProviderError, UpstreamCall, UpstreamReply};
use futures::future::BoxFuture;
use futures::StreamExt;
use http::header::{HeaderMap, AUTHORIZATION};

use super::http::{post, read_completion, secret_headers, sse_events};

pub struct OpenAiProvider {
    http: reqwest::Client,
    completions_url: reqwest::Url,
    /// `Authorization` and the provider's configured headers.
    headers: HeaderMap,
    stream_usage: bool,
}

impl OpenAiProvider {
    pub fn new(
        http: reqwest::Client,
        completions_url: reqwest::Url,
        api_key: Option<&str>,
        extra_headers: &[(String, String)],
        stream_usage: bool,
    ) -> Self {
        let authorization =
            api_key.map(|key| (AUTHORIZATION.as_str().to_owned(), format!("Bearer {key}")));
        OpenAiProvider {
            http,
            completions_url,
            headers: secret_headers(extra_headers.iter().cloned().chain(authorization)),
            stream_usage,
        }
    }
}

impl Provider for OpenAiProvider {
    fn reports_stream_usage(&self) -> bool {
        self.stream_usage
    }

    fn send(&self, call: UpstreamCall) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
        let request = self
            .http
            .post(self.completions_url.clone())
            .headers(self.headers.clone())
            .header("x-request-id", call.request_id)
            .body(call.body);
        Box::pin(async move {
            let response = post(request).await?;
            if call.stream {
                let events: EventStream = sse_events(response)
                    .map(|event| event.map(|event| event.data))
                    .boxed();
                Ok(UpstreamReply::Stream(events))
            } else {
                read_completion(response).await.map(UpstreamReply::Complete)
            }
        })
    }
}
