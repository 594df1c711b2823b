//! `POST /v1/chat/completions`, in the order a request meets its checks:
//! authenticate the key, read the body within the size limit, parse it,
//! resolve the alias, then hand the call to a `RequestActor` and turn its
//! reply into a JSON body or an SSE stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chorus_actors::{AliasRoute, Reply, ReplyBody, RequestActor, RequestArgs};
use chorus_proto::{ChatRequest, ErrorType};
use futures::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::oneshot;

use super::{ApiError, AppState, RequestContext};

/// Most bytes reserved for a body before they arrive.
const INITIAL_BODY_CAPACITY: u64 = 64 * 1024;

/// A client that has not sent its whole body by then is cut off with 408.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The gateway's own share of a response's latency, in ms.
const OVERHEAD_HEADER: &str = "x-chorus-overhead-ms";

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (request, route) = match admit(&state, &headers, body).await {
        Ok(admitted) => admitted,
        Err((error, alias)) => {
            tracing::info!(
                target: "chorus::request",
                request_id = %context.id,
                alias = alias.as_deref(),
                status = error.status.as_u16(),
                code = error.body.error.code.as_deref(),
                latency_ms = context.received_at.elapsed().as_secs_f64() * 1000.0,
                "request rejected"
            );
            return error.into_response();
        }
    };
    call(request, route, &context, &state).await
}

/// Every check before the upstream call; a failure carries the alias when
/// it was already known, for the log line.
async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(ChatRequest, Arc<AliasRoute>), (ApiError, Option<String>)> {
    state.keys.authenticate(headers).map_err(|e| (e, None))?;
    let bytes = read_body(body, headers, state.max_body_bytes)
        .await
        .map_err(|e| (e, None))?;
    let request = ChatRequest::parse(&bytes).map_err(|e| {
        let mut error = ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequest,
            e.code(),
            e.to_string(),
        );
        if let Some(param) = e.param() {
            error = error.with_param(param);
        }
        (error, None)
    })?;
    let Some(route) = state.routes.get(&request.model).cloned() else {
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
    };
    Ok((request, route))
}

/// Reads the body, refusing it as soon as it passes `limit` bytes — before
/// reading anything when `content-length` already says so.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::InvalidRequest,
            "request_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let read = async {
        // The declared length only sizes the first allocation, up to a
        // bound: a client that declares 10 MiB and stalls holds no more.
        let capacity = declared.map_or(0, |length| length.min(INITIAL_BODY_CAPACITY) as usize);
        let mut collected = Vec::with_capacity(capacity);
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorType::InvalidRequest,
                    "unreadable_body",
                    format!("could not read the request body: {e}"),
                )
            })?;
            if collected.len() + chunk.len() > limit {
                return Err(too_large());
            }
            collected.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(collected))
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorType::InvalidRequest,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            ))
        })
}

/// Runs the call in its own `RequestActor`, which also logs it.
async fn call(
    request: ChatRequest,
    route: Arc<AliasRoute>,
    context: &RequestContext,
    state: &AppState,
) -> Response {
    let (reply_tx, reply_rx) = oneshot::channel();
    let args = RequestArgs {
        request_id: context.id.clone(),
        request,
        route,
        received_at: context.received_at,
        reply_tx,
        tracked: state.requests.track(),
    };
    if let Err(e) = RequestActor::start(args).await {
        tracing::error!(request_id = %context.id, error = %e, "could not start a request actor");
        return gateway_unavailable().into_response();
    }
    match reply_rx.await {
        Ok(Ok(reply)) => respond(reply, context),
        Ok(Err(error)) => ApiError::from(error).into_response(),
        Err(_) => {
            tracing::error!(request_id = %context.id, "request actor stopped without an answer");
            gateway_unavailable().into_response()
        }
    }
}

fn gateway_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorType::Upstream,
        "gateway_unavailable",
        "the gateway could not process the request; retry it",
    )
}

fn respond(reply: Reply, context: &RequestContext) -> Response {
    let overhead = context
        .received_at
        .elapsed()
        .saturating_sub(reply.upstream_elapsed);
    let mut response = match reply.body {
        ReplyBody::Complete(json) => {
            let mut response = Body::from(json).into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        ReplyBody::Stream(mut frames_rx) => {
            let frames = futures::stream::poll_fn(move |cx| frames_rx.poll_recv(cx))
                .map(Ok::<_, Infallible>);
            let mut response = Body::from_stream(frames).into_response();
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            response
        }
    };
    let overhead_ms = format!("{:.3}", overhead.as_secs_f64() * 1000.0);
    if let Ok(value) = HeaderValue::from_str(&overhead_ms) {
        response.headers_mut().insert(OVERHEAD_HEADER, value);
    }
    response
}
