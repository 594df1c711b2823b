//! `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and
//! `/v1/messages`, in the order a request meets its checks: authenticate
//! the key, read the body within the size limit, parse it in the client's
//! [`Dialect`], resolve the alias, check the key may use it, answer it from
//! the response cache when it holds the answer, admit it against the key's
//! and team's limits, then hand the call to a `RequestActor` and turn its
//! reply into a body or an SSE stream in that dialect, kept for the cache
//! on the way when the request takes part.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Extension;
use bytes::Bytes;
use chorus_actors::routing::Fallbacks;
use chorus_actors::{
    Admission, AliasRoute, Fit, Reply, ReplyBody, RequestActor, RequestArgs, RequestObserver,
    UsageChunk,
};
use chorus_proto::cache::is_finished_answer;
use chorus_proto::{ApiFormat, ChatRequest, Endpoint, ErrorType};
use futures::stream::BoxStream;
use futures::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::sync::oneshot;

use super::body::read_body;
use super::cache::{self, CACHE_HEADER};
use super::dialect::{Dialect, Writer};
use super::error::{ATTEMPTS_HEADER, DEPLOYMENT_HEADER};
use super::thread::{self, Thread};
use super::{limits, ApiError, AppState, Caller, RequestContext};
use crate::cache::{Directives, Lookup, Pending};
use crate::metrics::Metrics;
use crate::request_log::Trail;

/// The gateway's own share of a response's latency, in ms.
const OVERHEAD_HEADER: &str = "x-chorus-overhead-ms";

/// The `POST` route of an endpoint that speaks `dialect`: chat
/// completions, text completions and embeddings in OpenAI's, messages in
/// Anthropic's; all run the one pipeline below.
pub fn route(dialect: Dialect) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              Extension(context): Extension<RequestContext>,
              headers: HeaderMap,
              body: Body| async move { serve(dialect, &state, &context, &headers, body).await },
    )
}

async fn serve(
    dialect: Dialect,
    state: &AppState,
    context: &RequestContext,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let mut trail = Trail::start(
        state.request_log.as_ref(),
        &context.id,
        dialect.path(),
        context.received_at.elapsed(),
    );
    let mut response = match checked(dialect, state, context, headers, body, &mut trail).await {
        Ok(response) => response,
        Err((error, alias)) => {
            let code = error.body.error.code.as_deref();
            let latency = context.received_at.elapsed();
            state
                .metrics
                .rejected(code.unwrap_or("unknown"), alias.as_deref(), latency);
            trail.refused(error.status.as_u16(), code, latency);
            tracing::info!(
                target: "chorus::request",
                request_id = %context.id,
                alias = alias.as_deref(),
                status = error.status.as_u16(),
                code,
                latency_ms = latency.as_secs_f64() * 1000.0,
                "request rejected"
            );
            dialect.error(error)
        }
    };
    response
        .headers_mut()
        .entry(CACHE_HEADER)
        .or_insert(HeaderValue::from_static("miss"));
    response
}

/// A refusal before any call, with the alias when it was already known,
/// for the log line.
type Refusal = (ApiError, Option<String>);

/// The request once checked: answered from the cache, or admitted against
/// its limits and called; `trail` learns what it was and how it ended.
async fn checked(
    dialect: Dialect,
    state: &AppState,
    context: &RequestContext,
    headers: &HeaderMap,
    body: Body,
    trail: &mut Trail,
) -> Result<Response, Refusal> {
    let (caller, request, route, thread) = check(dialect, state, headers, body, trail).await?;
    let writer = dialect.writer(thread);
    let refused = |error: ApiError| (error, Some(request.model.clone()));
    // The answer's place in the cache, when the request takes part in it.
    let taking_part = match lookup(state, &caller, &request, headers)
        .await
        .map_err(refused)?
    {
        Lookup::Hit { body, age, refresh } => match cache::replay(&request, body) {
            Ok(answer) => {
                let response =
                    served_from_cache(&writer, &request, answer, age, context, state).await;
                trail.served_from_cache(response.status().as_u16(), context.received_at.elapsed());
                return Ok(response);
            }
            Err(error) => {
                tracing::warn!(request_id = %context.id, %error, "a cached answer could not be replayed; answering afresh");
                Some(refresh)
            }
        },
        Lookup::Miss(pending) => Some(pending),
        Lookup::Bypass => None,
    };
    let pending = taking_part.and_then(|pending| {
        state.metrics.cache_lookup(&request.model, false);
        trail.missed_cache();
        pending
    });
    let fallbacks = Fallbacks::resolve(&route, &state.routes, |alias| caller.allows_model(alias));
    let admission = limits::admit(state, &caller, &request, &route).map_err(refused)?;
    // An Anthropic client's stream that may come back translated reports
    // its prompt's size first: counted meanwhile, once it is sure to run.
    let writer = if dialect == Dialect::Anthropic && request.stream && translates(&route, &request)
    {
        writer.counting_prompt(&request)
    } else {
        writer
    };
    let admitted = Admitted {
        request,
        route,
        admission,
        fallbacks,
        pending,
        observer: trail.observer(&state.metrics),
    };
    Ok(call(writer, admitted, context, state).await)
}

/// What passed [`check`]: who asks, what, of which alias, and for a
/// Responses request its thread.
type Checked = (Caller, ChatRequest, Arc<AliasRoute>, Option<Thread>);

/// Every check before the cache and the limits: the key, the body (with
/// the thread a Responses request continues read into it), the alias and
/// the key's right to it.
async fn check(
    dialect: Dialect,
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    trail: &mut Trail,
) -> Result<Checked, Refusal> {
    let caller = state.authenticate(headers).map_err(|e| (e, None))?;
    trail.caller(|| caller.who());
    let bytes = read_body(body, headers, state.max_body_bytes)
        .await
        .map_err(|e| (e, None))?;
    let (bytes, thread) = match dialect {
        Dialect::Responses => {
            let (bytes, thread) = thread::resolve(state.stored.as_ref(), &caller, bytes)
                .await
                .map_err(|e| (e, None))?;
            (bytes, Some(thread))
        }
        _ => (bytes, None),
    };
    let request = dialect.parse(bytes, headers).map_err(|e| (e, None))?;
    let request = match thread.as_ref().and_then(Thread::affinity) {
        Some(name) => request.with_affinity(name),
        None => request,
    };
    let (route, request) = match state.routes.resolve(&request.model) {
        Some((route, None)) => (Arc::clone(route), request),
        // A pattern alias: the request routes, counts and logs by it.
        Some((route, Some(star))) => {
            let star = star.to_owned();
            let alias = route.alias.clone();
            (Arc::clone(route), request.matched_by(alias, star))
        }
        None => {
            let error = ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorType::InvalidRequest,
                "model_not_found",
                format!(
                    "the model `{}` does not exist: GET /v1/models lists the ones served here",
                    request.model
                ),
            )
            .with_param("model");
            return Err((error, Some(request.model)));
        }
    };
    // Only an alias that exists: clients do not get to name log entries.
    trail.request(&request);
    let fit = Fit::of(&request);
    if route.serves(Fit {
        format: None,
        ..fit
    }) && !route.serves(fit)
    {
        return Err((untranslatable(&request), Some(request.model)));
    }
    if !route.serves(fit) {
        let error = ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequest,
            "unsupported_endpoint",
            format!(
                "the model `{}` has no deployment that serves `/v1/{}`",
                request.model,
                request.endpoint.path()
            ),
        )
        .with_param("model");
        return Err((error, Some(request.model)));
    }
    if !caller.allows_model(&request.model) {
        let error = ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorType::Permission,
            "model_not_allowed",
            format!(
                "this API key may not use the model `{}`: GET /v1/models lists the ones it may",
                request.model
            ),
        )
        .with_param("model");
        return Err((error, Some(request.model)));
    }
    Ok((caller, request, route, thread))
}

/// Whether any of the alias's deployments speaks another API than the
/// request's client: only then may its answer be translated.
fn translates(route: &AliasRoute, request: &ChatRequest) -> bool {
    let format = request.client_format();
    route
        .targets
        .iter()
        .any(|target| !target.deployment.provider().speaks(format))
}

/// The 400 for a request that only deployments of its client's format
/// could take, to an alias with none: nothing was sent.
fn untranslatable(request: &ChatRequest) -> ApiError {
    let reason = request.untranslatable_reason();
    // A thread this cluster does not hold, which no upstream can look up.
    let missing = match reason.and_then(|reason| reason.param()) {
        Some("previous_response_id") => Some(("previous_response_id", "previous_response")),
        Some("conversation") => Some(("conversation", "conversation")),
        _ => None,
    };
    if let (Some((param, kind)), Some(reason)) = (missing, reason) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            &format!("{kind}_not_found"),
            reason.to_string(),
        )
        .with_param(param);
    }
    let error = ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorType::InvalidRequest,
        "unsupported_parameter",
        format!(
            "the model `{}` has no deployment that speaks the client's API, and the request cannot be translated: {}",
            request.model,
            reason.map(ToString::to_string).unwrap_or_default()
        ),
    );
    match reason.and_then(|reason| reason.param()) {
        Some(param) => error.with_param(param),
        None => error,
    }
}

/// The request in the response cache, when the node keeps one; a header
/// the cache cannot read is a 400.
async fn lookup(
    state: &AppState,
    caller: &Caller,
    request: &ChatRequest,
    headers: &HeaderMap,
) -> Result<Lookup, ApiError> {
    let Some(cache) = &state.cache else {
        return Ok(Lookup::Bypass);
    };
    let asked = Directives::from_headers(headers).map_err(|message| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequest,
            "invalid_cache_header",
            message,
        )
    })?;
    Ok(cache.lookup(|| caller.cache_scope(), request, asked).await)
}

/// Answers from the cache: no call, nothing against the key's limits or
/// budget, and the log line and metrics say so.
async fn served_from_cache(
    writer: &Writer,
    request: &ChatRequest,
    answer: Answer,
    age: Duration,
    context: &RequestContext,
    state: &AppState,
) -> Response {
    let mut response = write(writer, ApiFormat::OpenAi, answer).await;
    response.headers_mut().extend(
        cache::hit_headers(age)
            .into_iter()
            .map(|(name, value)| (HeaderName::from_static(name), value)),
    );
    let duration = context.received_at.elapsed();
    state.metrics.served_from_cache(&request.model, duration);
    tracing::info!(
        target: "chorus::request",
        request_id = %context.id,
        alias = %request.model,
        stream = request.stream,
        status = response.status().as_u16(),
        cache = "hit",
        age_s = age.as_secs(),
        cost_micros = 0,
        latency_ms = duration.as_secs_f64() * 1000.0,
        "request answered from the cache"
    );
    response
}

/// What passed every check: the request, its alias, its hold on limits,
/// the fallback aliases its key may use, where its answer is cached, and
/// who learns how it ended.
struct Admitted {
    request: ChatRequest,
    route: Arc<AliasRoute>,
    admission: Option<Admission>,
    fallbacks: Fallbacks,
    pending: Option<Pending>,
    observer: Arc<dyn RequestObserver>,
}

/// Runs the call in its own `RequestActor`, which also logs it.
async fn call(
    writer: Writer,
    admitted: Admitted,
    context: &RequestContext,
    state: &AppState,
) -> Response {
    let Admitted {
        request,
        route,
        admission,
        fallbacks,
        pending,
        observer,
    } = admitted;
    let mut rate_headers = HeaderMap::new();
    if let Some(admission) = &admission {
        limits::rate_headers(admission.headers(), &mut rate_headers);
    }
    let usage_chunk = UsageChunk::of(&request, pending.is_some());
    // Only a request whose answer is kept needs its alias again.
    let alias = pending.as_ref().map(|_| request.model.clone());
    let endpoint = request.endpoint;
    let (reply_tx, reply_rx) = oneshot::channel();
    let args = RequestArgs {
        request_id: context.id.clone(),
        request,
        route,
        received_at: context.received_at,
        reply_tx,
        tracked: state.requests.track(),
        admission,
        fallbacks,
        observer,
        usage_chunk,
    };
    if let Err(e) = RequestActor::start(args).await {
        tracing::error!(request_id = %context.id, error = %e, "could not start a request actor");
        return writer.error(gateway_unavailable());
    }
    let mut response = match reply_rx.await {
        Ok(Ok(reply)) => {
            // A fallback's answer is not the alias's own, and the cache
            // keeps answers in OpenAI's format.
            let keep = pending
                .filter(|_| alias.as_deref() == Some(reply.alias.as_str()))
                .filter(|_| reply.format == ApiFormat::OpenAi)
                .map(|pending| Keep {
                    pending,
                    endpoint,
                    usage_chunk,
                });
            respond(writer, reply, keep, context, &state.metrics).await
        }
        Ok(Err(error)) => writer.error(ApiError::from(error)),
        Err(_) => {
            tracing::error!(request_id = %context.id, "request actor stopped without an answer");
            writer.error(gateway_unavailable())
        }
    };
    response.headers_mut().extend(rate_headers);
    response
}

fn gateway_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorType::Upstream,
        "gateway_unavailable",
        "the gateway could not process the request; retry it",
    )
}

/// An answer before it is written in the client's format.
pub enum Answer {
    /// A whole completion, embeddings list or message, `model` the alias.
    Whole(Bytes),
    /// SSE frames, ending with the end of the stream or an `error` event.
    Stream(BoxStream<'static, Bytes>),
}

/// Where an answer goes in the cache, and what the client must not see.
struct Keep {
    pending: Pending,
    endpoint: Endpoint,
    /// Whether the client sees the stream's usage chunk, which the cache
    /// keeps.
    usage_chunk: UsageChunk,
}

/// The upstream's answer, kept for the cache on the way when `keep` says
/// where; only a finished answer is.
async fn respond(
    writer: Writer,
    reply: Reply,
    keep: Option<Keep>,
    context: &RequestContext,
    metrics: &Metrics,
) -> Response {
    let overhead = context
        .received_at
        .elapsed()
        .saturating_sub(reply.upstream_elapsed);
    metrics.overhead(overhead);
    let answer = match reply.body {
        ReplyBody::Complete(json) => {
            if let Some(keep) = keep.filter(|keep| is_finished_answer(keep.endpoint, &json)) {
                keep.pending.store(json.clone()).await;
            }
            Answer::Whole(json)
        }
        ReplyBody::Stream(mut frames_rx) => {
            let frames = futures::stream::poll_fn(move |cx| frames_rx.poll_recv(cx)).boxed();
            match keep {
                Some(keep) => Answer::Stream(cache::keep(
                    frames,
                    keep.endpoint,
                    keep.pending,
                    keep.usage_chunk,
                )),
                None => Answer::Stream(frames),
            }
        }
    };
    let mut response = write(&writer, reply.format, answer).await;
    let headers = response.headers_mut();
    let overhead_ms = format!("{:.3}", overhead.as_secs_f64() * 1000.0);
    if let Ok(value) = HeaderValue::from_str(&overhead_ms) {
        headers.insert(OVERHEAD_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&reply.deployment) {
        headers.insert(DEPLOYMENT_HEADER, value);
    }
    headers.insert(ATTEMPTS_HEADER, HeaderValue::from(reply.attempts));
    response
}

/// `answer`, in `format`, as a response in the client's format, stored
/// first when it is a Responses answer to keep.
async fn write(writer: &Writer, format: ApiFormat, answer: Answer) -> Response {
    match answer {
        Answer::Whole(json) => {
            let json = match writer.complete(format, json) {
                Ok(json) => json,
                Err(error) => return writer.error(error),
            };
            writer.keep(&json).await;
            let mut response = Body::from(json).into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Answer::Stream(frames) => {
            let mut response = writer.stream(format, frames).into_response();
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            response
        }
    }
}
