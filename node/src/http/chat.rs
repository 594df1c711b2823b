//! `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and
//! `/v1/messages`, in the order a request meets its checks: authenticate the key, read the body within
//! the size limit, parse it in the client's [`Dialect`], resolve the alias,
//! check the key may use it, admit it against the key's and team's limits,
//! then hand the call to a `RequestActor` and turn its reply into a body or
//! an SSE stream in that dialect.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Extension;
use chorus_actors::routing::Fallbacks;
use chorus_actors::{Admission, AliasRoute, Reply, ReplyBody, RequestActor, RequestArgs};
use chorus_proto::{ChatRequest, ErrorType};
use futures::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::oneshot;

use super::body::read_body;
use super::dialect::Dialect;
use super::error::{ATTEMPTS_HEADER, DEPLOYMENT_HEADER};
use super::{limits, ApiError, AppState, RequestContext};
use crate::metrics::Metrics;

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
    let admitted = match admit(dialect, state, headers, body).await {
        Ok(admitted) => admitted,
        Err((error, alias)) => {
            state
                .metrics
                .rejected(error.body.error.code.as_deref().unwrap_or("unknown"));
            tracing::info!(
                target: "chorus::request",
                request_id = %context.id,
                alias = alias.as_deref(),
                status = error.status.as_u16(),
                code = error.body.error.code.as_deref(),
                latency_ms = context.received_at.elapsed().as_secs_f64() * 1000.0,
                "request rejected"
            );
            return dialect.error(error);
        }
    };
    call(dialect, admitted, context, state).await
}

/// What passed every check: the request, its alias, its hold on limits,
/// and the fallback aliases its key may use.
type Admitted = (ChatRequest, Arc<AliasRoute>, Option<Admission>, Fallbacks);

/// Every check before the upstream call; a failure carries the alias when
/// it was already known, for the log line.
async fn admit(
    dialect: Dialect,
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Admitted, (ApiError, Option<String>)> {
    let caller = state.authenticate(headers).map_err(|e| (e, None))?;
    let bytes = read_body(body, headers, state.max_body_bytes)
        .await
        .map_err(|e| (e, None))?;
    let request = dialect.parse(&bytes).map_err(|e| (e, None))?;
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
    if !route.serves(request.endpoint) {
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
    let fallbacks = Fallbacks::resolve(&route, &state.routes, |alias| caller.allows_model(alias));
    match limits::admit(state, &caller, &request, &route) {
        Ok(admission) => Ok((request, route, admission, fallbacks)),
        Err(error) => Err((error, Some(request.model))),
    }
}

/// Runs the call in its own `RequestActor`, which also logs it.
async fn call(
    dialect: Dialect,
    admitted: Admitted,
    context: &RequestContext,
    state: &AppState,
) -> Response {
    let (request, route, admission, fallbacks) = admitted;
    let mut rate_headers = HeaderMap::new();
    if let Some(admission) = &admission {
        limits::rate_headers(admission.headers(), &mut rate_headers);
    }
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
        observer: state.metrics.clone(),
    };
    if let Err(e) = RequestActor::start(args).await {
        tracing::error!(request_id = %context.id, error = %e, "could not start a request actor");
        return dialect.error(gateway_unavailable());
    }
    let mut response = match reply_rx.await {
        Ok(Ok(reply)) => respond(dialect, reply, context, &state.metrics),
        Ok(Err(error)) => dialect.error(ApiError::from(error)),
        Err(_) => {
            tracing::error!(request_id = %context.id, "request actor stopped without an answer");
            dialect.error(gateway_unavailable())
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

fn respond(
    dialect: Dialect,
    reply: Reply,
    context: &RequestContext,
    metrics: &Metrics,
) -> Response {
    let overhead = context
        .received_at
        .elapsed()
        .saturating_sub(reply.upstream_elapsed);
    metrics.overhead(overhead);
    let mut response = match reply.body {
        ReplyBody::Complete(json) => {
            let json = match dialect.complete(json) {
                Ok(json) => json,
                Err(error) => return dialect.error(error),
            };
            let mut response = Body::from(json).into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        ReplyBody::Stream(mut frames_rx) => {
            let frames = futures::stream::poll_fn(move |cx| frames_rx.poll_recv(cx)).boxed();
            let mut response = dialect.stream(frames).into_response();
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            response
        }
    };
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
