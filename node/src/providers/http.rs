//! What the HTTP providers share: their secret headers, the POST with its
//! status check, and reading a body or an SSE stream within bounds,
//! whatever format the upstream speaks.

use bytes::Bytes;
use chorus_actors::{EventStream, ProviderError};
use chorus_proto::sse::{EventReader, SseEvent};
use chorus_proto::ErrorBody;
use futures::StreamExt;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

/// Upstream error bodies are read only this far: enough for any error
/// object, and a misbehaving upstream cannot make us buffer without end.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Largest non-streaming completion accepted from an upstream.
const MAX_COMPLETION_BYTES: usize = 32 * 1024 * 1024;

/// `Content-Type: application/json`, then `headers` in order (a later one
/// replaces an earlier one of the same name), all marked sensitive so no
/// debug output shows them. Names and values were checked when the config
/// was validated; any that still fail to convert are skipped.
pub fn secret_headers(headers: impl IntoIterator<Item = (String, String)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        if let (Ok(name), Ok(mut value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            value.set_sensitive(true);
            map.insert(name, value);
        }
    }
    map
}

/// The provider's headers with the client's that its API defines: a
/// client's version replaces the provider's default, and a client's beta
/// flags (`*-beta`, comma-separated lists) are joined by the provider's
/// configured ones rather than replaced.
pub fn with_client_headers(provider: &HeaderMap, client: &[(String, String)]) -> HeaderMap {
    let mut headers = provider.clone();
    for (name, value) in client {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            continue;
        };
        let joined = provider
            .get(&name)
            .filter(|_| name.as_str().ends_with("-beta"))
            .and_then(|configured| configured.to_str().ok())
            .and_then(|configured| {
                HeaderValue::from_str(&format!("{},{configured}", value.to_str().ok()?)).ok()
            });
        headers.insert(name, joined.unwrap_or(value));
    }
    headers
}

/// Sends the request; a 2xx answer comes back to be read, any other
/// status as [`ProviderError::Status`] with the start of its body.
pub async fn post(request: reqwest::RequestBuilder) -> Result<reqwest::Response, ProviderError> {
    let response = request
        .send()
        .await
        .map_err(|e| ProviderError::Unreachable(describe(e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Err(ProviderError::Status {
        status: status.as_u16(),
        body: read_capped(response).await,
        retry_after,
    })
}

/// The SSE events of a streamed answer as they arrive, each whole and as
/// it came. An `error` event is [`ProviderError::Reported`] with the
/// message of its error object (OpenAI's and Anthropic's both read); an
/// event past [`chorus_proto::sse::MAX_EVENT_BYTES`] is malformed.
pub fn sse_events(response: reqwest::Response) -> EventStream {
    let mut reader = EventReader::default();
    response
        .bytes_stream()
        .map(move |bytes| -> Vec<Result<SseEvent, ProviderError>> {
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(error) => return vec![Err(ProviderError::Broken(describe(error)))],
            };
            match reader.push(&bytes) {
                Ok(events) => events.into_iter().map(reported_error).collect(),
                Err(too_large) => vec![Err(ProviderError::Malformed(too_large.to_string()))],
            }
        })
        .flat_map(futures::stream::iter)
        .boxed()
}

/// An `error` event as the error it reports; any other event as it is.
fn reported_error(event: SseEvent) -> Result<SseEvent, ProviderError> {
    let Some(data) = event.data().filter(|_| event.name() == b"error") else {
        return Ok(event);
    };
    let message = ErrorBody::parse_lenient(data).map_or_else(
        || String::from_utf8_lossy(data).into_owned(),
        |body| body.error.message,
    );
    Err(ProviderError::Reported(message))
}

/// The whole body of a completion, refused past `MAX_COMPLETION_BYTES` so
/// a misbehaving upstream cannot make the node buffer without end.
pub async fn read_completion(mut response: reqwest::Response) -> Result<Bytes, ProviderError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_headers_join_beta_flags_and_replace_the_rest() {
        let provider = secret_headers([
            ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
            ("anthropic-beta".to_owned(), "configured-1".to_owned()),
            ("x-api-key".to_owned(), "sk-ant".to_owned()),
        ]);
        let client = [
            (
                "anthropic-beta".to_owned(),
                "interleaved-thinking-2025-05-14".to_owned(),
            ),
            ("anthropic-version".to_owned(), "2024-01-01".to_owned()),
        ];
        let headers = with_client_headers(&provider, &client);
        assert_eq!(
            headers["anthropic-beta"],
            "interleaved-thinking-2025-05-14,configured-1"
        );
        assert_eq!(headers["anthropic-version"], "2024-01-01");
        assert_eq!(headers["x-api-key"], "sk-ant");
        assert_eq!(with_client_headers(&provider, &[]), provider);
    }
}
