//! `mock-upstream`: an OpenAI-compatible and Anthropic-compatible upstream
//! for tests and benchmarks.
//!
//! It answers `POST /v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, OpenAI's `/v1/responses` and Anthropic's
//! `/v1/messages` (streaming and not) with the same deterministic completions as the
//! node's built-in mock, with real SSE framing and `usage`. Messages
//! requests are checked as strictly as Anthropic checks them, so a
//! translation that Anthropic would refuse fails here too, and answered
//! with signed thinking and prompt-cache usage where asked for
//! (`chorus_bench::mock_messages`). Latency, time to first token, inter-token delay and
//! output length are flags, overridable per request with `x-mock-*` headers.
//! `x-mock-fault` injects failures: `500`, `429` (with `retry-after`),
//! `400` (a request error no retry can fix), `context` and `content-filter`
//! (400s worded as OpenAI words a prompt too long and a filtered prompt),
//! `hang`, `reset` (connection closed before headers), `cut` (stream closed
//! after `x-mock-cut-after` chunks), `garbage` (malformed body),
//! `error-event` (an SSE `error` event mid-stream), `failed` (a Responses
//! stream ended by `response.failed`) and `overloaded` (Anthropic's 529).
//! Errors come in the format of the endpoint called.
//! `GET /mock/stats` counts requests and streams (including streams the
//! client abandoned); `GET /mock/last-request` shows the last request's
//! body (parsed, and as text), credential headers and `anthropic-*` and
//! `openai-*` headers — unauthenticated, so a test tool only: never point
//! it at real keys.
//!
//! Built on bare hyper so it is never the bottleneck of a benchmark.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use bytes::BytesMut;
use chorus_bench::mock_messages::{self, CacheUse, PromptCache};
use chorus_proto::anthropic::{self, stream::ToEvents};
use chorus_proto::mock::{MockCompletion, MockReply};
use chorus_proto::{responses, sse, ChatRequest, Endpoint, ErrorBody, ErrorType};
use clap::Parser;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "mock-upstream",
    about = "OpenAI-compatible mock upstream with latency knobs and fault injection"
)]
struct Args {
    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Non-streaming: delay before the response, in ms. Header `x-mock-latency-ms`.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Streaming: delay before the first chunk, in ms. Header `x-mock-ttft-ms`.
    #[arg(long, default_value_t = 0)]
    ttft_ms: u64,
    /// Streaming: delay between chunks, in ms. Header `x-mock-token-delay-ms`.
    #[arg(long, default_value_t = 0)]
    token_delay_ms: u64,
    /// Tokens per completion (capped by max_tokens). Header `x-mock-output-tokens`.
    #[arg(long, default_value_t = 16)]
    output_tokens: u64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

type Body = BoxBody<Bytes, std::io::Error>;

/// What a request may change with headers; the flags are the defaults.
#[derive(Debug, Clone, Copy)]
struct Knobs {
    latency: Duration,
    ttft: Duration,
    token_delay: Duration,
    output_tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Status400,
    ContextLength,
    ContentFilter,
    Status500,
    Status429,
    Hang,
    Reset,
    Cut {
        after_chunks: usize,
    },
    Garbage,
    /// Streams only: an SSE `error` event, in the endpoint's format, after
    /// two frames, then the rest of the stream.
    ErrorEvent,
    /// Anthropic's 529 `overloaded_error`.
    Overloaded,
    /// Responses streams only: `response.failed` after two frames, as the
    /// stream's last event.
    Failed,
}

/// The API an endpoint speaks: its request, answer and error formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    OpenAi,
    Anthropic,
    /// OpenAI's Responses API.
    Responses,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_cancelled: AtomicU64,
}

struct Mock {
    defaults: Knobs,
    stats: Stats,
    /// The last request: its body and credential headers.
    last_request: Mutex<serde_json::Value>,
    /// Prompt prefixes cached by Messages requests.
    prompt_cache: PromptCache,
}

/// Returned by the service to make hyper drop the connection without a response.
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by x-mock-fault")
    }
}

impl std::error::Error for ResetConnection {}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let mock = Arc::new(Mock {
        defaults: Knobs {
            latency: Duration::from_millis(args.latency_ms),
            ttft: Duration::from_millis(args.ttft_ms),
            token_delay: Duration::from_millis(args.token_delay_ms),
            output_tokens: args.output_tokens.max(1),
        },
        stats: Stats::default(),
        last_request: Mutex::new(serde_json::Value::Null),
        prompt_cache: PromptCache::default(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "mock-upstream listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("accept failed: {error}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mock = mock.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(mock.clone(), request));
            // Errors here are connections the client or a fault closed.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    mock: Arc<Mock>,
    request: Request<Incoming>,
) -> Result<Response<Body>, ResetConnection> {
    match (request.method(), request.uri().path()) {
        (&Method::POST, "/v1/chat/completions") => {
            chat(mock, request, Format::OpenAi, Endpoint::ChatCompletions).await
        }
        (&Method::POST, "/v1/completions") => {
            chat(mock, request, Format::OpenAi, Endpoint::Completions).await
        }
        (&Method::POST, "/v1/embeddings") => {
            chat(mock, request, Format::OpenAi, Endpoint::Embeddings).await
        }
        (&Method::POST, "/v1/messages") => {
            chat(mock, request, Format::Anthropic, Endpoint::ChatCompletions).await
        }
        (&Method::POST, "/v1/responses") => {
            chat(mock, request, Format::Responses, Endpoint::ChatCompletions).await
        }
        (&Method::GET, "/v1/models") => Ok(json_response(
            StatusCode::OK,
            json!({"object": "list", "data": [{"id": "mock", "object": "model", "created": 0, "owned_by": "mock-upstream"}]}),
        )),
        (&Method::GET, "/mock/stats") => {
            let stats = &mock.stats;
            Ok(json_response(
                StatusCode::OK,
                json!({
                    "requests": stats.requests.load(Ordering::Relaxed),
                    "streams_started": stats.streams_started.load(Ordering::Relaxed),
                    "streams_completed": stats.streams_completed.load(Ordering::Relaxed),
                    "streams_cancelled": stats.streams_cancelled.load(Ordering::Relaxed),
                }),
            ))
        }
        (&Method::GET, "/mock/last-request") => {
            let last = mock
                .last_request
                .lock()
                .map(|last| last.clone())
                .unwrap_or_default();
            Ok(json_response(StatusCode::OK, last))
        }
        _ => Ok(error_response(
            Format::OpenAi,
            StatusCode::NOT_FOUND,
            "unknown route",
        )),
    }
}

async fn chat(
    mock: Arc<Mock>,
    request: Request<Incoming>,
    format: Format,
    endpoint: Endpoint,
) -> Result<Response<Body>, ResetConnection> {
    mock.stats.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let knobs = knobs(&parts.headers, mock.defaults);
    let fault = fault(&parts.headers);
    let Ok(body) = body.collect().await.map(|collected| collected.to_bytes()) else {
        return Err(ResetConnection);
    };
    let header = |name| header_text(&parts.headers, name);
    if let Ok(mut last) = mock.last_request.lock() {
        let api_headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .filter(|(name, _)| {
                name.as_str().starts_with("anthropic-") || name.as_str().starts_with("openai-")
            })
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.into())))
            .collect();
        *last = json!({
            "body": serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
            "body_text": String::from_utf8_lossy(&body),
            "authorization": header("authorization"),
            "x-api-key": header("x-api-key"),
            "anthropic-version": header("anthropic-version"),
            "headers": api_headers,
        });
    }
    let error = |status, body: ErrorBody| Ok(error_body_response(format, status, &body));
    match fault {
        Some(Fault::Reset) => return Err(ResetConnection),
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Err(ResetConnection);
        }
        Some(Fault::Status400) => {
            return Ok(error_response(
                format,
                StatusCode::BAD_REQUEST,
                "injected bad request",
            ));
        }
        Some(Fault::ContextLength) => {
            let message = match format {
                Format::OpenAi | Format::Responses => {
                    "This model's maximum context length is 16 tokens (injected)"
                }
                Format::Anthropic => "prompt is too long: 17 tokens > 16 maximum (injected)",
            };
            let body = ErrorBody::new(ErrorType::InvalidRequest, message)
                .with_code("context_length_exceeded");
            return error(StatusCode::BAD_REQUEST, body);
        }
        Some(Fault::ContentFilter) => {
            let body = ErrorBody::new(
                ErrorType::InvalidRequest,
                "The prompt was filtered by the content management policy (injected)",
            )
            .with_code("content_filter");
            return error(StatusCode::BAD_REQUEST, body);
        }
        Some(Fault::Status500) => {
            return Ok(error_response(
                format,
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected server error",
            ));
        }
        Some(Fault::Overloaded) => {
            let mut body = ErrorBody::new(ErrorType::Upstream, "Overloaded (injected)");
            body.error.kind = "overloaded_error".into();
            let status = StatusCode::from_u16(anthropic::error::OVERLOADED)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return error(status, body);
        }
        Some(Fault::Status429) => {
            let mut response =
                error_response(format, StatusCode::TOO_MANY_REQUESTS, "injected rate limit");
            let retry_after = header("x-mock-retry-after").unwrap_or("1");
            if let Ok(value) = HeaderValue::from_str(retry_after) {
                response.headers_mut().insert("retry-after", value);
            }
            return Ok(response);
        }
        _ => {}
    }
    let parsed = match format {
        Format::OpenAi => ChatRequest::parse_at(endpoint, &body).map_err(|e| e.to_string()),
        Format::Anthropic => messages_request(&parts.headers, &body),
        Format::Responses => responses_request(&body),
    };
    let chat = match parsed {
        Ok(chat) => chat,
        Err(message) => return Ok(error_response(format, StatusCode::BAD_REQUEST, &message)),
    };
    // What a Messages request asked beyond the completion.
    let mut thinking = false;
    let mut cache = CacheUse::default();
    let mut prompt_tokens = 0;
    let reply = match format {
        Format::OpenAi => MockReply::to(&chat, knobs.output_tokens),
        Format::Responses => {
            let completion = MockCompletion::for_request(&chat, knobs.output_tokens);
            let envelope = responses_envelope(&mock, &body);
            if chat.stream {
                let events = responses_frames(&completion.chunk_payloads(true), envelope);
                let frames = events.into_iter().map(|frame| frame.to_vec()).collect();
                MockReply::Chunks(frames)
            } else {
                let completion = completion.completion_json();
                let response = responses::reply::to_response(&completion, &envelope);
                MockReply::Whole(response.unwrap_or_default())
            }
        }
        Format::Anthropic => {
            let completion = MockCompletion::for_request(&chat, knobs.output_tokens);
            if let Ok(serde_json::Value::Object(messages)) = serde_json::from_slice(&body) {
                thinking = mock_messages::thinking_on(&messages);
                cache = mock.prompt_cache.use_for(&messages);
            }
            prompt_tokens = completion.usage.prompt_tokens;
            if chat.stream {
                MockReply::Chunks(completion.chunk_payloads(true))
            } else {
                let message = anthropic::reply::to_message(&completion.completion_json());
                let mut message: serde_json::Value = message
                    .ok()
                    .and_then(|message| serde_json::from_slice(&message).ok())
                    .unwrap_or_default();
                mock_messages::patch_message(&mut message, thinking, cache);
                MockReply::Whole(message.to_string().into_bytes())
            }
        }
    };
    let payloads = match reply {
        MockReply::Whole(body) => {
            sleep_unless_zero(knobs.latency).await;
            if fault == Some(Fault::Garbage) {
                return Ok(body_response(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from_static(b"{\"id\": \"chatcmpl-garb"),
                ));
            }
            return Ok(body_response(
                StatusCode::OK,
                "application/json",
                Bytes::from(body),
            ));
        }
        MockReply::Chunks(payloads) => payloads,
    };
    let frames = match format {
        Format::OpenAi => openai_frames(&payloads, header("x-mock-sse-extras").is_some()),
        Format::Responses => payloads.into_iter().map(Bytes::from).collect(),
        Format::Anthropic => {
            mock_messages::patch_stream(anthropic_frames(&payloads), prompt_tokens, thinking, cache)
        }
    };
    let usage_last = format == Format::OpenAi && chat.include_usage;
    Ok(stream_response(
        mock, frames, format, usage_last, knobs, fault,
    ))
}

/// A Messages request, checked as Anthropic checks one, as the chat
/// request the mock completion is made from.
fn messages_request(headers: &HeaderMap, body: &[u8]) -> Result<ChatRequest, String> {
    if header_text(headers, "anthropic-version").is_none() {
        return Err("anthropic-version: header is required".into());
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Some(messages) = value.as_object() else {
        return Err("the body must be a JSON object".into());
    };
    mock_messages::check(messages)?;
    // Blocks with no chat counterpart (documents, server tools) still
    // get an answer: one made from the request's text.
    let chat = anthropic::request::to_chat(messages)
        .unwrap_or_else(|_| anthropic::request::to_chat_text(messages));
    ChatRequest::from_body(chat).map_err(|e| e.to_string())
}

/// A Responses request, checked as chat completions would take it, as
/// the chat request the mock completion is made from.
fn responses_request(body: &[u8]) -> Result<ChatRequest, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Some(fields) = value.as_object() else {
        return Err("the body must be a JSON object".into());
    };
    let chat = responses::request::to_chat(fields).map_err(|e| e.to_string())?;
    ChatRequest::from_body(chat).map_err(|e| e.to_string())
}

/// The envelope of the mock's next response, numbered by the requests it
/// has taken, so a client can tell the upstream's ids from a gateway's.
fn responses_envelope(mock: &Mock, body: &[u8]) -> responses::Envelope {
    let fields = serde_json::from_slice(body).unwrap_or_default();
    let number = mock.stats.requests.load(Ordering::Relaxed);
    responses::Envelope::new(format!("resp_mock{number:08}"), 1_700_000_000, &fields)
}

/// The completion's chunks as Responses events, one frame of events per
/// chunk so pacing applies as it does to OpenAI streams.
fn responses_frames(payloads: &[Vec<u8>], envelope: responses::Envelope) -> Vec<Bytes> {
    let mut events = responses::stream::ToResponseEvents::new(envelope);
    let mut frames: Vec<Bytes> = payloads
        .iter()
        .map(|payload| {
            let mut out = BytesMut::new();
            // The mock's own chunks are always JSON.
            let _ = events.chunk(payload, &mut out);
            out.freeze()
        })
        .filter(|frame| !frame.is_empty())
        .collect();
    let mut end = BytesMut::new();
    events.done(&mut end);
    frames.push(end.freeze());
    frames
}

/// The stream's frames. With `extras` (header `x-mock-sse-extras`), as
/// some servers send them: an `id:` line on each event, a `: keep-alive`
/// comment after the first content, and a number no 64-bit type holds in each
/// chunk, for checking that a gateway passes all of it on untouched.
fn openai_frames(payloads: &[Vec<u8>], extras: bool) -> Vec<Bytes> {
    let mut frames: Vec<Bytes> = payloads
        .iter()
        .enumerate()
        .map(|(index, payload)| {
            if !extras {
                return sse::data_frame(payload);
            }
            let big = br#"{"x_big":123456789012345678901234567890,"#;
            let payload = [&big[..], payload.get(1..).unwrap_or_default()].concat();
            let event = [
                format!("id: {index}\n").as_bytes(),
                &sse::data_frame(&payload),
            ]
            .concat();
            Bytes::from(event)
        })
        .collect();
    if extras && frames.len() > 2 {
        frames.insert(2, Bytes::from_static(b": keep-alive\n\n"));
    }
    frames.push(sse::done_frame());
    frames
}

/// The completion's chunks as Anthropic events, one frame of events per
/// chunk so pacing applies as it does to OpenAI streams, with a `ping`
/// after the start as Anthropic sends one.
fn anthropic_frames(payloads: &[Vec<u8>]) -> Vec<Bytes> {
    let mut events = ToEvents::default();
    let mut frames: Vec<Bytes> = payloads
        .iter()
        .map(|payload| {
            let mut out = BytesMut::new();
            // The mock's own chunks are always JSON.
            let _ = events.chunk(payload, &mut out);
            if out.starts_with(b"event: message_start") {
                out.extend_from_slice(b"event: ping\ndata: {\"type\": \"ping\"}\n\n");
            }
            out.freeze()
        })
        .filter(|frame| !frame.is_empty())
        .collect();
    let mut end = BytesMut::new();
    events.done(&mut end);
    frames.push(end.freeze());
    frames
}

/// Sends `frames` paced by `knobs`, with the stream faults applied.
/// `usage_last`: the frame before the last is OpenAI's usage chunk.
fn stream_response(
    mock: Arc<Mock>,
    mut frames: Vec<Bytes>,
    format: Format,
    usage_last: bool,
    knobs: Knobs,
    fault: Option<Fault>,
) -> Response<Body> {
    let cut_after = match fault {
        Some(Fault::Cut { after_chunks }) => Some(after_chunks),
        Some(Fault::Garbage) => {
            frames.insert(2, Bytes::from_static(b"data: {\"id\": not json at all\n\n"));
            None
        }
        Some(Fault::ErrorEvent) => {
            let mut error = ErrorBody::new(ErrorType::Upstream, "injected overload mid-stream");
            let frame = match format {
                Format::OpenAi => sse::error_frame(&error),
                // The Responses API's own error event, next in sequence.
                Format::Responses => {
                    let event = serde_json::json!({"type": "error", "sequence_number": 2,
                        "code": "server_error", "message": error.error.message, "param": null});
                    Bytes::from(format!("event: error\ndata: {event}\n\n"))
                }
                Format::Anthropic => {
                    error.error.kind = "overloaded_error".into();
                    anthropic::stream::error_event_for(anthropic::error::OVERLOADED, &error)
                }
            };
            frames.insert(2, frame);
            None
        }
        Some(Fault::Failed) if format == Format::Responses => {
            let failed = serde_json::json!({"type": "response.failed", "sequence_number": 99,
                "response": {"id": "resp_mock_failed", "object": "response", "status": "failed",
                    "model": "mock", "output": [],
                    "error": {"code": "server_error", "message": "injected failure"},
                    "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}});
            frames.truncate(2);
            frames.push(Bytes::from(format!(
                "event: response.failed\ndata: {failed}\n\n"
            )));
            None
        }
        _ => None,
    };
    mock.stats.streams_started.fetch_add(1, Ordering::Relaxed);
    let guard = StreamGuard {
        mock,
        completed: false,
    };
    let total = frames.len();
    // The usage chunk follows the last one at once, as OpenAI sends it:
    // it carries no token to wait for.
    let usage_frame = usage_last.then(|| total - 2);
    let events = futures::stream::iter(frames.into_iter().enumerate()).then(
        move |(index, frame)| async move {
            let delay = if index == 0 {
                knobs.ttft
            } else if Some(index) == usage_frame {
                Duration::ZERO
            } else {
                knobs.token_delay
            };
            sleep_unless_zero(delay).await;
            (index, frame)
        },
    );
    let body = futures::stream::unfold(
        (Box::pin(events), guard),
        move |(mut events, mut guard)| async move {
            let (index, frame) = events.next().await?;
            if cut_after.is_some_and(|after| index >= after) {
                // Let the chunks already sent reach the client first, then end
                // the body with an error: no chunked terminator, so the client
                // sees the connection break mid-stream.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Some((
                    Err(std::io::Error::other("stream cut by x-mock-fault")),
                    (events, guard),
                ));
            }
            if index + 1 == total {
                guard.completed = true;
            }
            Some((Ok(Frame::data(frame)), (events, guard)))
        },
    );
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(body)));
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// Counts a stream as cancelled when its body is dropped before the last frame.
struct StreamGuard {
    mock: Arc<Mock>,
    completed: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let counter = if self.completed {
            &self.mock.stats.streams_completed
        } else {
            &self.mock.stats.streams_cancelled
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn knobs(headers: &HeaderMap, defaults: Knobs) -> Knobs {
    let number =
        |name: &str| header_text(headers, name).and_then(|value| value.parse::<u64>().ok());
    let millis =
        |name: &str, default: Duration| number(name).map_or(default, Duration::from_millis);
    Knobs {
        latency: millis("x-mock-latency-ms", defaults.latency),
        ttft: millis("x-mock-ttft-ms", defaults.ttft),
        token_delay: millis("x-mock-token-delay-ms", defaults.token_delay),
        output_tokens: number("x-mock-output-tokens").map_or(defaults.output_tokens, |n| n.max(1)),
    }
}

fn fault(headers: &HeaderMap) -> Option<Fault> {
    Some(match header_text(headers, "x-mock-fault")? {
        "400" => Fault::Status400,
        "context" => Fault::ContextLength,
        "content-filter" => Fault::ContentFilter,
        "500" => Fault::Status500,
        "429" => Fault::Status429,
        "hang" => Fault::Hang,
        "reset" => Fault::Reset,
        "cut" => Fault::Cut {
            after_chunks: header_text(headers, "x-mock-cut-after")
                .and_then(|value| value.parse().ok())
                .unwrap_or(3),
        },
        "garbage" => Fault::Garbage,
        "error-event" => Fault::ErrorEvent,
        "overloaded" => Fault::Overloaded,
        "failed" => Fault::Failed,
        _ => return None,
    })
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

async fn sleep_unless_zero(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

fn body_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(
        Full::new(body).map_err(|never: Infallible| match never {}),
    ));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    body_response(status, "application/json", Bytes::from(value.to_string()))
}

fn error_response(format: Format, status: StatusCode, message: &str) -> Response<Body> {
    let kind = if status.is_server_error() {
        ErrorType::Upstream
    } else {
        ErrorType::InvalidRequest
    };
    error_body_response(
        format,
        status,
        &ErrorBody::new(kind, message).with_code(status.as_str()),
    )
}

fn error_body_response(format: Format, status: StatusCode, body: &ErrorBody) -> Response<Body> {
    let body = match format {
        Format::OpenAi | Format::Responses => body.to_json(),
        Format::Anthropic => anthropic::error::body(status.as_u16(), body)
            .to_string()
            .into_bytes(),
    };
    body_response(status, "application/json", Bytes::from(body))
}
