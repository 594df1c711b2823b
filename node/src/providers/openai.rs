//! Any OpenAI-compatible HTTP endpoint (OpenAI, Azure, vLLM, Ollama…): the
//! body goes out as the request actor prepared it; the answer comes back as a
//! whole body or as SSE events, each event's data as it was sent. A call in
//! the Responses API's format goes to `/responses`, when the upstream
//! speaks it.

use chorus_actors::{Provider, ProviderError, UpstreamCall, UpstreamReply};
use chorus_proto::{ApiFormat, Endpoint};
use futures::future::BoxFuture;
use http::header::{HeaderMap, AUTHORIZATION};

use super::http::{post, read_completion, secret_headers, sse_events, with_client_headers};
use crate::config::endpoint_url;

pub struct OpenAiProvider {
    http: reqwest::Client,
    chat_url: reqwest::Url,
    completions_url: reqwest::Url,
    embeddings_url: reqwest::Url,
    responses_url: reqwest::Url,
    /// `Authorization` and the provider's configured headers.
    headers: HeaderMap,
    speaks: Speaks,
}

/// What an OpenAI-compatible upstream is known to take beyond plain chat
/// completions.
#[derive(Debug, Clone, Copy)]
pub struct Speaks {
    /// `stream_options.include_usage`.
    pub stream_usage: bool,
    /// The Responses API.
    pub responses: bool,
}

impl OpenAiProvider {
    pub fn new(
        http: reqwest::Client,
        base_url: &reqwest::Url,
        api_key: Option<&str>,
        extra_headers: &[(String, String)],
        speaks: Speaks,
    ) -> Self {
        let authorization =
            api_key.map(|key| (AUTHORIZATION.as_str().to_owned(), format!("Bearer {key}")));
        let url = |endpoint: Endpoint| endpoint_url(base_url.clone(), endpoint.path());
        OpenAiProvider {
            http,
            chat_url: url(Endpoint::ChatCompletions),
            completions_url: url(Endpoint::Completions),
            embeddings_url: url(Endpoint::Embeddings),
            responses_url: endpoint_url(base_url.clone(), "responses"),
            headers: secret_headers(extra_headers.iter().cloned().chain(authorization)),
            speaks,
        }
    }
}

impl Provider for OpenAiProvider {
    fn reports_stream_usage(&self) -> bool {
        self.speaks.stream_usage
    }

    fn speaks(&self, format: ApiFormat) -> bool {
        match format {
            ApiFormat::OpenAi => true,
            ApiFormat::Responses => self.speaks.responses,
            ApiFormat::Anthropic => false,
        }
    }

    fn send(&self, call: UpstreamCall) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
        let url = match call.endpoint {
            _ if call.format == ApiFormat::Responses => &self.responses_url,
            Endpoint::ChatCompletions => &self.chat_url,
            Endpoint::Completions => &self.completions_url,
            Endpoint::Embeddings => &self.embeddings_url,
        };
        let request = self
            .http
            .post(url.clone())
            .headers(with_client_headers(&self.headers, &call.client_headers))
            .header("x-request-id", call.request_id)
            .body(call.body);
        Box::pin(async move {
            let response = post(request).await?;
            if call.stream {
                Ok(UpstreamReply::Stream(sse_events(response)))
            } else {
                read_completion(response).await.map(UpstreamReply::Complete)
            }
        })
    }
}
