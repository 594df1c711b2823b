//! The formats clients speak: OpenAI's (chat completions, text
//! completions, embeddings), OpenAI's Responses API and Anthropic's
//! messages. A request in any runs the same pipeline (keys, limits,
//! routing, any provider); only reading the body and writing the answer,
//! stream or error differ, and they are here. An answer already in the
//! client's format (it passed through from an upstream that speaks it)
//! is written as it came.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use chorus_proto::anthropic::stream::{error_event_for, ToEvents};
use chorus_proto::anthropic::{reply, request};
use chorus_proto::responses::stream::ToResponseEvents;
use chorus_proto::responses::{self, Envelope};
use chorus_proto::sse::{self, SseEvent};
use chorus_proto::{ApiFormat, ChatRequest, Endpoint, ErrorBody, ErrorType, RequestError};
use futures::future::{BoxFuture, Shared};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::thread::{Keeper, Thread};
use super::ApiError;
use crate::stored::records::new_id;

/// The format of a client's request and of everything it gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An OpenAI endpoint: passed through as it is.
    OpenAi(Endpoint),
    /// `POST /v1/messages`: passed through to Anthropic upstreams; for
    /// any other, translated to a chat request on the way in and back into
    /// a message, events or an Anthropic error on the way out.
    Anthropic,
    /// `POST /v1/responses`: passed through to upstreams that speak the
    /// Responses API; for any other, translated to a chat request on the
    /// way in and back into a `response` or its events on the way out.
    /// Its errors are OpenAI's.
    Responses,
}

impl Dialect {
    /// The endpoint's path under `/v1/`.
    pub fn path(self) -> &'static str {
        match self {
            Dialect::OpenAi(endpoint) => endpoint.path(),
            Dialect::Anthropic => "messages",
            Dialect::Responses => "responses",
        }
    }

    /// The API format the client speaks.
    pub fn format(self) -> ApiFormat {
        match self {
            Dialect::OpenAi(_) => ApiFormat::OpenAi,
            Dialect::Anthropic => ApiFormat::Anthropic,
            Dialect::Responses => ApiFormat::Responses,
        }
    }

    /// The request in `body`, which is kept for upstreams of the client's
    /// format, with the client's `headers` that some API defines.
    pub fn parse(self, body: Bytes, headers: &HeaderMap) -> Result<ChatRequest, ApiError> {
        let parsed = match self {
            Dialect::OpenAi(endpoint) => ChatRequest::parse_at(endpoint, &body),
            Dialect::Anthropic => parse_translated(&body, request::to_chat, request::to_chat_text),
            Dialect::Responses => parse_translated(
                &body,
                responses::request::to_chat,
                responses::request::to_chat_text,
            ),
        };
        let request = parsed.map_err(|e| ApiError::bad_request(e.to_error_body()))?;
        Ok(request
            .sent_as(self.format(), body)
            .with_forwarded_headers(forwarded_headers(headers)))
    }

    pub fn error(self, error: ApiError) -> Response {
        match self {
            Dialect::OpenAi(_) | Dialect::Responses => error.into_response(),
            Dialect::Anthropic => error.into_anthropic_response(),
        }
    }

    /// The writer of a request's answers; a Responses request's `thread`
    /// names the response it becomes, made now, and keeps it when asked.
    pub fn writer(self, thread: Option<Thread>) -> Writer {
        let (envelope, keeper) = match thread.filter(|_| self == Dialect::Responses) {
            Some(Thread { echo, keeper }) => {
                let created_at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs());
                let envelope = Envelope::new(new_id("resp"), created_at, &echo);
                (Some(envelope), keeper)
            }
            None => (None, None),
        };
        Writer {
            dialect: self,
            envelope,
            keeper,
            prompt_tokens: None,
        }
    }
}

/// Writes one request's answer in its client's dialect.
pub struct Writer {
    dialect: Dialect,
    /// What a Responses answer translated from a chat one is named by.
    envelope: Option<Envelope>,
    /// Stores a Responses answer once it is whole.
    keeper: Option<Arc<Keeper>>,
    /// The prompt's tokens, counted in the background, for the
    /// `message_start` of a stream translated into Anthropic's events.
    prompt_tokens: Option<Shared<BoxFuture<'static, u64>>>,
}

impl Writer {
    /// The writer, counting `request`'s prompt in the background (off
    /// the async threads) as `/v1/messages/count_tokens` counts it, for
    /// the `message_start` of an Anthropic stream written translated.
    pub fn counting_prompt(mut self, request: &ChatRequest) -> Self {
        let messages = request.messages().to_vec();
        let tools = request.field("tools").cloned();
        let count = tokio::task::spawn_blocking(move || {
            super::count_tokens::prompt_tokens(&messages, tools.as_ref())
        });
        let count = count.map(|counted| counted.unwrap_or(0)).boxed().shared();
        self.prompt_tokens = Some(count);
        self
    }

    pub fn error(&self, error: ApiError) -> Response {
        self.dialect.error(error)
    }

    /// A whole answer in `format`, `model` already the alias, in the
    /// client's dialect.
    pub fn complete(&self, format: ApiFormat, completion: Bytes) -> Result<Bytes, ApiError> {
        let translated = match (self.dialect, &self.envelope) {
            _ if format == self.dialect.format() => return Ok(completion),
            (_, _) if format != ApiFormat::OpenAi => return Err(not_translated(format)),
            (Dialect::Anthropic, _) => reply::to_message(&completion),
            (Dialect::Responses, Some(envelope)) => {
                responses::reply::to_response(&completion, envelope)
            }
            (Dialect::OpenAi(_) | Dialect::Responses, _) => return Err(not_translated(format)),
        };
        translated.map(Bytes::from).map_err(|detail| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorType::Upstream,
                "upstream_malformed_response",
                format!(
                    "the completion could not be written as the client's API's answer: {detail}"
                ),
            )
        })
    }

    /// Stores `response`, a whole answer in the client's dialect, when it
    /// is a `response` to keep: one passed through as well as one
    /// translated, so either can be continued.
    pub async fn keep(&self, response: &[u8]) {
        let Some(keeper) = &self.keeper else {
            return;
        };
        if let Ok(response) = serde_json::from_slice::<Value>(response) {
            keeper.keep(&response).await;
        }
    }

    /// The body of a stream of SSE frames in `format`, in the client's
    /// dialect: as it came when the formats are one, else translated.
    pub fn stream(&self, format: ApiFormat, frames: BoxStream<'static, Bytes>) -> Body {
        let translated = match (self.dialect, self.envelope.clone(), self.keeper.clone()) {
            (Dialect::Responses, _, Some(keeper)) if format == ApiFormat::Responses => {
                let frames = frames.map(|frame| {
                    let ended = passed_response_end(&frame);
                    (frame, ended)
                });
                kept(frames.boxed(), keeper)
            }
            _ if format == self.dialect.format() || format != ApiFormat::OpenAi => {
                return Body::from_stream(frames.map(Ok::<_, std::convert::Infallible>))
            }
            (Dialect::Anthropic, _, _) => {
                let start = (frames, ToEvents::default(), self.prompt_tokens.clone());
                futures::stream::unfold(start, |(mut frames, mut events, estimate)| async move {
                    let frame = frames.next().await?;
                    // Before the first frame's `message_start`.
                    if let Some(estimate) = estimate {
                        events = ToEvents::with_input_tokens(estimate.await);
                    }
                    let out = anthropic_events(&mut events, frame);
                    Some((out, (frames, events, None)))
                })
                .boxed()
            }
            (Dialect::Responses, Some(envelope), keeper) => {
                let mut events = ToResponseEvents::new(envelope);
                match keeper {
                    Some(keeper) => {
                        let frames = frames.map(move |frame| {
                            let out = response_events(&mut events, frame);
                            (out, events.take_ended())
                        });
                        kept(frames.boxed(), keeper)
                    }
                    None => frames
                        .map(move |frame| response_events(&mut events, frame))
                        .boxed(),
                }
            }
            (Dialect::OpenAi(_) | Dialect::Responses, _, _) => {
                return Body::from_stream(frames.map(Ok::<_, std::convert::Infallible>))
            }
        };
        let translated = translated
            .filter(|events| std::future::ready(!events.is_empty()))
            .map(Ok::<_, std::convert::Infallible>);
        Body::from_stream(translated)
    }
}

/// `frames`, each with the response it ends, if any: that response is
/// stored before the frame leaves, so a client that has the end of a
/// stream can continue it through any node.
fn kept(
    frames: BoxStream<'static, (Bytes, Option<Value>)>,
    keeper: Arc<Keeper>,
) -> BoxStream<'static, Bytes> {
    frames
        .then(move |(frame, ended)| {
            let keeper = Arc::clone(&keeper);
            async move {
                if let Some(response) = ended {
                    keeper.keep(&response).await;
                }
                frame
            }
        })
        .boxed()
}

/// The response a passed-through Responses event ends the stream with:
/// that of `response.completed` or `response.incomplete`, by the data's
/// `type` (an upstream may leave out `event:` lines). Only a frame that
/// names one is parsed.
fn passed_response_end(frame: &Bytes) -> Option<Value> {
    let names = |needle: &[u8]| frame.windows(needle.len()).any(|window| window == needle);
    if !names(b"response.completed") && !names(b"response.incomplete") {
        return None;
    }
    let mut data: Value = serde_json::from_slice(SseEvent::parse(frame.clone()).data()?).ok()?;
    match data["type"].as_str() {
        Some("response.completed" | "response.incomplete") => Some(data["response"].take()),
        _ => None,
    }
}

/// A JSON request body's members.
type Members = Map<String, Value>;

/// A request in another API's body as the chat request the pipeline
/// runs, by `to_chat`. One that chat completions cannot express (an
/// Anthropic document, a built-in Responses tool, …) is still a request,
/// for upstreams of the client's API only: its chat body is then its text
/// alone (`to_chat_text`), for estimating tokens.
fn parse_translated(
    body: &[u8],
    to_chat: fn(&Members) -> Result<Members, RequestError>,
    to_chat_text: fn(&Members) -> Members,
) -> Result<ChatRequest, RequestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(RequestError::NotAnObject);
    };
    match to_chat(&fields) {
        Ok(chat) => ChatRequest::from_body(chat),
        Err(reason @ RequestError::Untranslatable { .. }) => {
            ChatRequest::from_body(to_chat_text(&fields))
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
        .filter(|(name, _)| ApiFormat::is_forwarded(name.as_str()))
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

/// The Responses events for one frame of the OpenAI stream: an `error`
/// event ends the response as failed.
fn response_events(events: &mut ToResponseEvents, frame: Bytes) -> Bytes {
    let mut out = BytesMut::new();
    let event = SseEvent::parse(frame);
    match event.data() {
        _ if event.name() == b"error" => {
            let payload = event.data().map(|data| &data[..]).unwrap_or_default();
            let error = ErrorBody::parse_lenient(payload)
                .unwrap_or_else(|| ErrorBody::new(ErrorType::Upstream, "the stream broke"));
            events.failed(&error, &mut out);
        }
        Some(data) if data == sse::DONE.as_bytes() => events.done(&mut out),
        Some(payload) => {
            if let Err(detail) = events.chunk(payload, &mut out) {
                let error =
                    ErrorBody::new(ErrorType::Upstream, format!("unreadable chunk: {detail}"));
                events.failed(&error, &mut out);
            }
        }
        None => {}
    }
    out.freeze()
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
