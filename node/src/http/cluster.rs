//! `GET /v1/cluster`, behind the admin token: the members this node knows,
//! alive or dead, each deployment's figures (cluster-wide in a cluster)
//! and circuit breaker,
//! every counter's cluster-wide value, how many keys and teams it knows,
//! and this node's gossip figures.
//! Served from snapshots the gossip actor refreshes each round, so a
//! busy page never holds up gossip.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chorus_actors::clock::unix_millis;
use http::HeaderMap;
use serde_json::{json, Value};

use super::{authenticate_admin, ApiError, AppState};

pub async fn view(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authenticate_admin(state.admin_token_sha256.as_ref(), &headers)?;
    // Subject (deployment) → counter kind → cluster-wide value.
    let mut counters: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for (key, value) in state.ledger.values(unix_millis()) {
        counters
            .entry(key.subject)
            .or_default()
            .insert(key.kind.code(), value);
    }
    let now_ms = unix_millis();
    let deployments: Vec<Value> = state
        .routes
        .deployments()
        .iter()
        .map(|deployment| {
            let breaker = deployment.breaker();
            let local = deployment.stats();
            let figures = match deployment.cluster_stats() {
                Some(cluster) => json!(cluster),
                None => json!({
                    "nodes": 1,
                    "in_flight": local.in_flight,
                    "finished": local.finished,
                    "errors": local.errors,
                    "cancelled": local.cancelled,
                    "latency_ms": local.latency_ms,
                    "ttft_ms": local.ttft_ms,
                    "ms_per_output_token": local.ms_per_output_token,
                    "health": local.health(),
                }),
            };
            json!({
                "name": deployment.name(),
                // This node's breaker, which follows the others' too.
                "breaker": breaker.state(now_ms).as_str(),
                "cooling_down": breaker.is_cooling_down(now_ms),
                "cluster": figures,
            })
        })
        .collect();
    let node_id = state.ledger.node_id();
    let (keys, teams) = state.admin.counts();
    // Keys and teams known, and those held in memory for their limits.
    let admin = json!({"keys": keys, "teams": teams, "limited": state.limiter.len()});
    let Some(cluster) = &state.cluster else {
        return Ok(Json(json!({
            "clustered": false,
            "node_id": node_id,
            "members": [],
            "deployments": deployments,
            "counters": counters,
            "admin": admin,
        })));
    };
    let view = cluster.view();
    Ok(Json(json!({
        "clustered": true,
        "cluster_id": cluster.cluster_id(),
        "node_id": node_id,
        "members": view.members,
        "deployments": deployments,
        "counters": counters,
        "admin": admin,
        "gossip": view.gossip,
    })))
}
