//! Gives each request an id — the client's `x-request-id` when it sent a
//! sane one, a fresh UUID otherwise — and echoes it on every response, so a
//! client's report can be matched to the node's log line.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

pub const REQUEST_ID: &str = "x-request-id";

/// Longest client-supplied id we keep; longer ones are replaced.
const MAX_CLIENT_ID_LEN: usize = 128;

/// Per-request facts the handlers need, set before any of them runs.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub id: String,
    pub received_at: Instant,
}

pub async fn assign(mut request: Request, next: Next) -> Response {
    let received_at = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= MAX_CLIENT_ID_LEN)
        .filter(|id| id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let header = HeaderValue::from_str(&id).ok();
    request
        .extensions_mut()
        .insert(RequestContext { id, received_at });
    let mut response = next.run(request).await;
    if let Some(header) = header {
        response.headers_mut().insert(REQUEST_ID, header);
    }
    response
}
