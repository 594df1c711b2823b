//! The formats clients speak: OpenAI's (chat completions, text
//! completions, embeddings) and Anthropic's messages. A request in any
//! runs the same pipeline (keys, limits, routing, any provider); only
//! reading the body and writing the answer, stream or error differ, and
//! they are here. An answer already in the client's format (it passed
//! through from an upstream that speaks it) is written as it came.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use chorus_proto::anthropic::stream::{error_event_for, ToEvents};
use chorus_proto::anthropic::{reply, request};
use chorus_proto::sse::{self, SseEvent};
use chorus_proto::{ApiFormat, ChatRequest, Endpoint, ErrorBody, ErrorType, RequestError};
use futures::stream::BoxStream;
use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::ApiError;

/// The format of a client's request and of everything it gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An OpenAI endpoint: passed through as it is.
    OpenAi(Endpoint),
    /// `POST /v1/messages`: passed through to Anthropic upstreams; for
    /// any other, translated to a chat request on the way in and back into
    /// a message, events or an Anthropic error on the way out.
    Anthropic,
}

impl Dialect {
    /// The endpoint's path under `/v1/`.
    pub fn path(self) -> &'static str {
        match self {
            Dialect::OpenAi(endpoint) => endpoint.path(),
            Dialect::Anthropic => "messages",
        }
    }

    /// The API format the client speaks.
    pub fn format(self) -> ApiFormat {
        match self {
            Dialect::OpenAi(_) => ApiFormat::OpenAi,
            Dialect::Anthropic => ApiFormat::Anthropic,
        }
    }

    /// The request in `body`, which is kept for upstreams of the client's
    /// format, with the client's `headers` that some API defines.
    pub fn parse(self, body: Bytes, headers: &HeaderMap) -> Result<ChatRequest, ApiError> {
        let parsed = match self {
            Dialect::OpenAi(endpoint) => ChatRequest::parse_at(endpoint, &body),
            Dialect::Anthropic => parse_messages(&body),
        };
        let request = parsed.map_err(|e| ApiError::bad_request(e.to_error_body()))?;
        Ok(request
            .sent_as(self.format(), body)
            .with_forwarded_headers(forwarded_headers(headers)))
    }

    pub fn error(self, error: ApiError) -> Response {
        match self {
            Dialect::OpenAi(_) => error.into_response(),
            Dialect::Anthropic => error.into_anthropic_response(),
        }
    }

    /// A whole answer in `format`, `model` already the alias, in this
    /// dialect's.
    pub fn complete(self, format: ApiFormat, completion: Bytes) -> Result<Bytes, ApiError> {
        match self {
            _ if format == self.format() => Ok(completion),
            Dialect::OpenAi(_) => Err(not_translated(format)),
            Dialect::Anthropic => {
                reply::to_message(&completion)
                    .map(Bytes::from)
                    .map_err(|detail| {
                        ApiError::new(
                            StatusCode::BAD_GATEWAY,
                            ErrorType::Upstream,
                            "upstream_malformed_response",
                            format!("the completion could not be written as a message: {detail}"),
                        )
                    })
            }
        }
    }

    /// The body of a stream of SSE frames in `format`, in this dialect:
    /// as it came when the formats are one, else translated.
    pub fn stream(self, format: ApiFormat, frames: BoxStream<'static, Bytes>) -> Body {
        match self {
            Dialect::OpenAi(_) => Body::from_stream(frames.map(Ok::<_, std::convert::Infallible>)),
            Dialect::Anthropic if format == ApiFormat::Anthropic => {
                Body::from_stream(frames.map(Ok::<_, std::convert::Infallible>))
            }
            Dialect::Anthropic => {
                let mut events = ToEvents::default();
                let translated = frames
                    .map(move |frame| {
                        Ok::<_, std::convert::Infallible>(anthropic_events(&mut events, frame))
                    })
                    .filter(|events| {
                        std::future::ready(!matches!(events, Ok(bytes) if bytes.is_empty()))
                    });
                Body::from_stream(translated)
            }
        }
    }
}

/// A Messages request as the chat request the pipeline runs. One that
/// has no OpenAI counterpart (documents, server tools, …) is still a
/// request, for Anthropic upstreams only: its chat body is then its text
/// alone, for estimating tokens.
fn parse_messages(body: &[u8]) -> Result<ChatRequest, RequestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    let Value::Object(messages) = value else {
        return Err(RequestError::NotAnObject);
    };
    match request::to_chat(&messages) {
        Ok(chat) => ChatRequest::from_body(chat),
        Err(reason @ RequestError::Untranslatable { .. }) => {
            ChatRequest::from_body(request::to_chat_text(&messages))
                .map(|request| request.untranslatable(reason))
        }
        Err(invalid) => Err(invalid),
    }
}

/// The client's headers that some API defines, lowercase, for upstreams
/// of that API; values that are not text are left out.
fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| ApiFormat::of_forwarded_header(name.as_str()).is_some())
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

/// An answer in a format this dialect cannot write; routing sends no
/// request where it would come from.
fn not_translated(format: ApiFormat) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorType::Upstream,
        "upstream_malformed_response",
        format!("the answer came in the {format:?} format, which this endpoint cannot write"),
    )
}

/// The Anthropic events for one frame of the OpenAI stream.
fn anthropic_events(events: &mut ToEvents, frame: Bytes) -> Bytes {
    let mut out = BytesMut::new();
    let event = SseEvent::parse(frame);
    let upstream_error =
        |detail: String| error_event_for(502, &ErrorBody::new(ErrorType::Upstream, detail));
    match event.data() {
        _ if event.name() == b"error" => {
            let payload = event.data().map(|data| &data[..]).unwrap_or_default();
            return match ErrorBody::parse_lenient(payload) {
                Some(error) => error_event_for(502, &error),
                None => upstream_error("the stream broke".into()),
            };
        }
        Some(data) if data == sse::DONE.as_bytes() => events.done(&mut out),
        Some(payload) => {
            if let Err(detail) = events.chunk(payload, &mut out) {
                return upstream_error(format!("unreadable chunk: {detail}"));
            }
        }
        // Comments and keep-alives have no Anthropic counterpart.
        None => {}
    }
    out.freeze()
}
