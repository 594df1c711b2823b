//! Anthropic's Messages API, called with `x-api-key`, `anthropic-version`
//! and the client's `anthropic-*` headers. An Anthropic client's body is
//! sent as it came and its answer comes back untranslated; an OpenAI body
//! is translated into a Messages request, and the answer, whole or
//! streamed, back into an OpenAI completion or chunks. A 529 (overloaded)
//! becomes a 503, which is retried.

use bytes::Bytes;
use chorus_actors::{EventStream, Provider, ProviderError, UpstreamCall, UpstreamReply};
use chorus_proto::anthropic::stream::ToChunks;
use chorus_proto::anthropic::{self, reply};
use chorus_proto::sse::SseEvent;
use chorus_proto::{ApiFormat, Endpoint};
use futures::future::BoxFuture;
use futures::StreamExt;
use http::header::HeaderMap;
use serde_json::{Map, Value};

use super::http::{post, read_completion, secret_headers, sse_events, with_client_headers};

pub struct AnthropicProvider {
    http: reqwest::Client,
    messages_url: reqwest::Url,
    /// `x-api-key`, `anthropic-version` and the configured headers.
    headers: HeaderMap,
    /// `max_tokens` for requests that set none; Anthropic requires one.
    default_max_tokens: u64,
}

impl AnthropicProvider {
    pub fn new(
        http: reqwest::Client,
        messages_url: reqwest::Url,
        api_key: Option<&str>,
        version: &str,
        extra_headers: &[(String, String)],
        default_max_tokens: u64,
    ) -> Self {
        let fixed = [("anthropic-version".to_owned(), version.to_owned())];
        let key = api_key.map(|key| ("x-api-key".to_owned(), key.to_owned()));
        AnthropicProvider {
            http,
            messages_url,
            headers: secret_headers(
                fixed
                    .into_iter()
                    .chain(extra_headers.iter().cloned())
                    .chain(key),
            ),
            default_max_tokens,
        }
    }

    /// The Messages body for an OpenAI body, or the 400 a request that
    /// cannot be translated gets, worded as the client's error.
    fn messages_body(&self, chat: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let refused = |error: chorus_proto::RequestError| {
            ProviderError::Refused(error.to_error_body().to_json().into())
        };
        let chat: Map<String, Value> = serde_json::from_slice(chat)
            .map_err(|e| ProviderError::Malformed(format!("the request to translate: {e}")))?;
        let messages =
            anthropic::request::to_messages(&chat, self.default_max_tokens).map_err(refused)?;
        serde_json::to_vec(&messages).map_err(|e| ProviderError::Malformed(e.to_string()))
    }
}

impl Provider for AnthropicProvider {
    fn format(&self) -> ApiFormat {
        ApiFormat::Anthropic
    }

    /// Anthropic streams always end with usage; the translation turns it
    /// into the usage chunk, hidden from clients that did not ask.
    fn reports_stream_usage(&self) -> bool {
        true
    }

    /// The Messages API has no text completions and no embeddings.
    fn serves(&self, endpoint: Endpoint) -> bool {
        endpoint == Endpoint::ChatCompletions
    }

    fn send(&self, call: UpstreamCall) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
        let passed_through = call.format == ApiFormat::Anthropic;
        let body = match call.endpoint {
            _ if passed_through => Ok(call.body),
            Endpoint::ChatCompletions => self.messages_body(&call.body),
            other => Err(chat_only(other)),
        };
        let request = self
            .http
            .post(self.messages_url.clone())
            .headers(with_client_headers(&self.headers, &call.client_headers))
            .header("x-request-id", call.request_id);
        Box::pin(async move {
            let response = post(request.body(body?)).await.map_err(overloaded_as_503)?;
            if passed_through {
                return if call.stream {
                    Ok(UpstreamReply::Stream(sse_events(response)))
                } else {
                    read_completion(response).await.map(UpstreamReply::Complete)
                };
            }
            let created = chorus_actors::clock::unix_millis() / 1_000;
            if !call.stream {
                let message = read_completion(response).await?;
                let completion =
                    reply::to_completion(&message, created).map_err(ProviderError::Malformed)?;
                return Ok(UpstreamReply::Complete(Bytes::from(completion)));
            }
            let mut chunks = ToChunks::new(created);
            let events: EventStream = sse_events(response)
                .flat_map(move |event| {
                    let payloads = match event {
                        Ok(event) => chunk_events(&mut chunks, &event),
                        Err(error) => vec![Err(error)],
                    };
                    futures::stream::iter(payloads)
                })
                .boxed();
            Ok(UpstreamReply::Stream(events))
        })
    }
}

/// The OpenAI chunk events for one Anthropic event; none for a comment.
fn chunk_events(chunks: &mut ToChunks, event: &SseEvent) -> Vec<Result<SseEvent, ProviderError>> {
    let Some(data) = event.data() else {
        return Vec::new();
    };
    let translated = std::str::from_utf8(data)
        .map_err(|e| e.to_string())
        .and_then(|data| chunks.event(data));
    match translated {
        Ok(payloads) => payloads
            .iter()
            .map(|payload| Ok(SseEvent::from_data(payload.as_bytes())))
            .collect(),
        Err(detail) => vec![Err(ProviderError::Malformed(detail))],
    }
}

/// The 400 for a text completion or embeddings request, which the
/// Messages API has no endpoint for.
fn chat_only(endpoint: Endpoint) -> ProviderError {
    let error = chorus_proto::RequestError::Untranslatable {
        field: "model",
        reason: format!(
            "this model is served by Anthropic, which has no `/v1/{}` endpoint",
            endpoint.path()
        ),
    };
    ProviderError::Refused(error.to_error_body().to_json().into())
}

fn overloaded_as_503(error: ProviderError) -> ProviderError {
    match error {
        ProviderError::Status {
            status,
            body,
            retry_after,
        } => ProviderError::Status {
            status: anthropic::error::openai_status(status),
            body,
            retry_after,
        },
        other => other,
    }
}
