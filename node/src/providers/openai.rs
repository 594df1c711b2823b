//! Any OpenAI-compatible HTTP endpoint (OpenAI, Azure, vLLM, Ollama…): the
//! body goes out as the request actor prepared it; the answer comes back as a
//! whole body or as SSE events parsed by `eventsource-stream`.

use bytes::Bytes;
use chorus_actors::{EventStream, Provider, ProviderError, UpstreamCall, UpstreamReply};
use chorus_proto::ErrorBody;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::future::BoxFuture;
use futures::StreamExt;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

/// Upstream error bodies are read only this far: enough for any error
/// object, and a misbehaving upstream cannot make us buffer without end.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Largest non-streaming completion accepted from an upstream.
const MAX_COMPLETION_BYTES: usize = 32 * 1024 * 1024;

pub struct OpenAiProvider {
    http: reqwest::Client,
    completions_url: reqwest::Url,
    /// `Authorization` and the provider's configured headers, all marked
    /// sensitive so no debug output shows them.
    headers: HeaderMap,
    stream_usage: bool,
}

impl OpenAiProvider {
    /// Header names and values were checked when the config was validated;
    /// any that still fail to convert are skipped.
    pub fn new(
        http: reqwest::Client,
        completions_url: reqwest::Url,
        api_key: Option<&str>,
        extra_headers: &[(String, String)],
        stream_usage: bool,
    ) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let authorization =
            api_key.map(|key| (AUTHORIZATION.as_str().to_owned(), format!("Bearer {key}")));
        for (name, value) in extra_headers.iter().cloned().chain(authorization) {
            if let (Ok(name), Ok(mut value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        OpenAiProvider {
            http,
            completions_url,
            headers,
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
            let response = request
                .send()
                .await
                .map_err(|e| ProviderError::Unreachable(describe(e)))?;
            let status = response.status();
            if !status.is_success() {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                return Err(ProviderError::Status {
                    status: status.as_u16(),
                    body: read_capped(response).await,
                    retry_after,
                });
            }
            if call.stream {
                let events: EventStream = response
                    .bytes_stream()
                    .eventsource()
                    // Keep-alive events carry no data; skip them.
                    .filter(|event| {
                        std::future::ready(!matches!(event, Ok(e) if e.data.is_empty()))
                    })
                    .map(|event| match event {
                        Ok(event) if event.event == "error" => Err(ProviderError::Reported(
                            ErrorBody::parse_lenient(event.data.as_bytes())
                                .map_or(event.data, |body| body.error.message),
                        )),
                        Ok(event) => Ok(event.data),
                        Err(EventStreamError::Transport(e)) => {
                            Err(ProviderError::Broken(describe(e)))
                        }
                        Err(e) => Err(ProviderError::Malformed(e.to_string())),
                    })
                    .boxed();
                Ok(UpstreamReply::Stream(events))
            } else {
                read_completion(response).await.map(UpstreamReply::Complete)
            }
        })
    }
}

/// The whole body of a completion, refused past `MAX_COMPLETION_BYTES` so
/// a misbehaving upstream cannot make the node buffer without end.
async fn read_completion(mut response: reqwest::Response) -> Result<Bytes, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProviderError::Broken(describe(e)))?
    {
        if body.len() + chunk.len() > MAX_COMPLETION_BYTES {
            return Err(ProviderError::Malformed(format!(
                "the response body is larger than {MAX_COMPLETION_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

async fn read_capped(mut response: reqwest::Response) -> Bytes {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY_BYTES {
            break;
        }
    }
    body.into()
}

/// The error with its sources, but without the URL: reqwest puts the URL in
/// its messages, and a base URL may carry credentials or an internal host.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
