//! `GET /status`: the operator's page. One self-contained HTML document
//! (no external assets) that holds no data itself: it asks for the admin
//! token once, keeps it for the tab, and renders `GET /v1/cluster` —
//! members, deployments, counters and gossip figures — and, as inline SVG
//! charts, `GET /v1/cluster/recent`: this node's last ten minutes per
//! alias and deployment. It refreshes itself. A node without an admin
//! token answers 404, as the admin API does.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use chorus_actors::clock::unix_millis;
use chorus_proto::ErrorType;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::{authenticate_admin, ApiError, AppState};

const PAGE: &str = include_str!("status.html");

pub async fn page(State(state): State<AppState>) -> Response {
    if state.admin_token_sha256.is_none() {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            "admin_disabled",
            "this node has no admin token: set `server.admin_token` to see the status page",
        )
        .into_response();
    }
    Html(PAGE).into_response()
}

/// `GET /v1/cluster/recent`: the charts' figures, behind the admin token.
pub async fn recent(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authenticate_admin(state.admin_token_sha256.as_ref(), &headers)?;
    Ok(Json(state.metrics.recent().to_json(unix_millis())))
}
