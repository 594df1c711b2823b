//! `GET /v1/cluster`: the members this node knows, alive or dead, and its
//! gossip figures. A node without a `[cluster]` section says so.

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
    let Some(cluster) = &state.cluster else {
        return Ok(Json(json!({"clustered": false, "members": []})));
    };
    Ok(Json(json!({
        "clustered": true,
        "cluster_id": cluster.cluster_id(),
        "node_id": cluster.self_node_id(),
        "members": cluster.members().await,
        "gossip": cluster.gossip_figures().await,
    })))
}
