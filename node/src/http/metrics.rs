//! `GET /metrics`: the node's Prometheus metrics. Open like the health
//! endpoints, so a scraper needs no token; the labels hold no key, prompt
//! or secret.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::HeaderValue;

use super::AppState;

/// The text exposition format's content type.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn scrape(State(state): State<AppState>) -> Response {
    let view = state.cluster.as_ref().map(|cluster| cluster.view());
    let store = state.storage.as_ref().and_then(|storage| {
        storage
            .memory()
            .map_err(|error| tracing::warn!(%error, "cannot read the store's memory use"))
            .ok()
    });
    let text = state.metrics.render(&state.routes, view.as_deref(), store);
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(EXPOSITION));
    response
}
