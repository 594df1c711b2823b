//! `GET /v1/models`: the aliases this node serves that the caller's key
//! may use, in OpenAI's list shape. Pattern aliases (`claude-*`) are not
//! model names and are left out.

use axum::extract::State;
use axum::Json;
use http::HeaderMap;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use chorus_actors::routes::is_pattern;

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.authenticate(&headers)?;
    let data: Vec<Value> = state
        .routes
        .aliases()
        .filter(|alias| !is_pattern(alias) && caller.allows_model(alias))
        .map(|alias| json!({"id": alias, "object": "model", "created": 0, "owned_by": "chorus"}))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}
