//! Health endpoints, open without a key: `/health/live` (the process
//! answers), `/health/ready` (every deployment has a running actor) and
//! `/v1/health` (readiness plus each deployment's live figures).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::{json, Value};

use super::AppState;

pub async fn live() -> Json<Value> {
    Json(json!({"status": "live"}))
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let (status, label) = readiness(&state);
    (status, Json(json!({"status": label}))).into_response()
}

pub async fn summary(State(state): State<AppState>) -> Response {
    let (status, label) = readiness(&state);
    let deployments: Vec<Value> = state
        .routes
        .deployments()
        .iter()
        .map(|deployment| {
            let stats = deployment.stats();
            json!({
                "name": deployment.name(),
                "running": deployment.is_running(),
                "restarts": deployment.restarts(),
                "in_flight": stats.in_flight,
                "finished": stats.finished,
                "errors": stats.errors,
                "cancelled": stats.cancelled,
                "latency_ms": stats.latency_ms,
                "ttft_ms": stats.ttft_ms,
                "ms_per_output_token": stats.ms_per_output_token,
            })
        })
        .collect();
    (
        status,
        Json(json!({"status": label, "deployments": deployments})),
    )
        .into_response()
}

fn readiness(state: &AppState) -> (StatusCode, &'static str) {
    if state.routes.deployments().iter().all(|d| d.is_running()) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
