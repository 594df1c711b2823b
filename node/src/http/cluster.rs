//! `GET /v1/cluster`: the members this node knows, alive or dead, each
//! deployment's cluster-wide figures, and this node's gossip figures. A node
//! without a `[cluster]` section says so.

use axum::extract::State;
use axum::Json;
use http::HeaderMap;
use serde_json::{json, Value};

use super::{ApiError, AppState};

pub async fn view(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.keys.authenticate(&headers)?;
    let counters = state.ledger.totals();
    let Some(cluster) = &state.cluster else {
        return Ok(Json(
            json!({"clustered": false, "members": [], "counters": counters}),
        ));
    };
    let deployments: Vec<Value> = state
        .routes
        .deployments()
        .iter()
        .map(|deployment| json!({"name": deployment.name(), "cluster": deployment.cluster_stats()}))
        .collect();
    Ok(Json(json!({
        "clustered": true,
        "cluster_id": cluster.cluster_id(),
        "node_id": cluster.self_node_id(),
        "members": cluster.members().await,
        "deployments": deployments,
        "counters": counters,
        "gossip": cluster.gossip_figures().await,
    })))
}
