//! Health endpoints, open without a key: `/health/live` (the process
//! answers), `/health/ready` (every deployment has a running actor and, in
//! a cluster, gossip runs) and `/v1/health` (readiness plus each
//! deployment's live figures).

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
    if !state.routes.deployments().iter().all(|d| d.is_running()) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting");
    }
    if state
        .cluster
        .as_ref()
        .is_some_and(|cluster| !cluster.is_gossiping())
    {
        // Limits and counts would drift from the cluster's: take the node
        // out of the balancer until it is restarted.
        return (StatusCode::SERVICE_UNAVAILABLE, "gossip stopped");
    }
    (StatusCode::OK, "ready")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use chorus_actors::{AdminRegistry, Ledger, Limiter, RequestTracker, Routes, RunId};

    use super::*;
    use crate::http::KeyStore;

    #[tokio::test]
    async fn a_node_whose_gossip_stopped_is_not_ready() {
        let (cluster, _) = crate::cluster::tests::join("ready", &[]).await;
        let cluster = Arc::new(cluster);
        let run = RunId {
            node_id: "ready".into(),
            generation: 1,
        };
        let ledger = Ledger::new(run, Vec::new());
        let state = AppState {
            routes: Arc::new(Routes::default()),
            keys: Arc::new(KeyStore::default()),
            admin: AdminRegistry::new("ready", Vec::new(), None),
            limiter: Limiter::new(ledger.clone()),
            admin_token_sha256: None,
            max_body_bytes: 1024,
            cluster: Some(cluster.clone()),
            ledger,
            requests: RequestTracker::default(),
            metrics: Arc::new(crate::metrics::Metrics::new(&Routes::default()).unwrap()),
            cache: None,
            request_log: None,
            stored: None,
            storage: None,
            peers: reqwest::Client::new(),
        };
        assert_eq!(readiness(&state), (StatusCode::OK, "ready"));
        cluster.leave();
        let deadline = Instant::now() + Duration::from_secs(5);
        while readiness(&state).0 == StatusCode::OK {
            assert!(Instant::now() < deadline, "still ready with gossip stopped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            readiness(&state),
            (StatusCode::SERVICE_UNAVAILABLE, "gossip stopped")
        );
    }
}
