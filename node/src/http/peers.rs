//! Asking every other live node of the cluster the same question, for the
//! views that answer for the whole cluster from each node's own records
//! (the request log, `/v1/stats`). Each peer gets the caller's own admin
//! credential and `scope=node`, so it answers for itself alone, naming
//! itself; a node that is dead, does not answer in time, or answers as
//! another node (an address that leads elsewhere) is named as missing.

use std::time::Duration;

use futures::future::join_all;
use http::header::AUTHORIZATION;
use http::HeaderMap;
use serde_json::Value;

use super::AppState;

/// How long a peer has to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// The query parameter that asks a node for its own records only.
pub const NODE_SCOPE: (&str, &str) = ("scope", "node");

/// What the other nodes answered, and which did not.
#[derive(Debug, Default)]
pub struct Gathered {
    pub answers: Vec<Value>,
    pub answered: Vec<String>,
    pub missing: Vec<String>,
}

/// `GET path?query&scope=node` on every other member; this node is not
/// asked (the caller answers for it).
pub async fn gather(state: &AppState, path: &str, query: &str, headers: &HeaderMap) -> Gathered {
    let mut gathered = Gathered::default();
    let Some(cluster) = &state.cluster else {
        return gathered;
    };
    let (scope, node) = NODE_SCOPE;
    let separator = if query.is_empty() { "" } else { "&" };
    let mut asks = Vec::new();
    for member in cluster
        .view()
        .members
        .iter()
        .filter(|member| !member.is_self)
    {
        match (&member.http_addr, member.alive) {
            (Some(address), true) => {
                let url = format!("http://{address}{path}?{query}{separator}{scope}={node}");
                let mut request = state.peers.get(url).timeout(PEER_TIMEOUT);
                if let Some(credential) = headers.get(AUTHORIZATION) {
                    request = request.header(AUTHORIZATION, credential);
                }
                asks.push(ask(member.node_id.clone(), request));
            }
            _ => gathered.missing.push(member.node_id.clone()),
        }
    }
    for (node_id, answer) in join_all(asks).await {
        let own = answer.filter(|answer| {
            let named = answer.get("node").and_then(Value::as_str);
            if named != Some(node_id.as_str()) {
                tracing::warn!(node_id = %node_id, answered_as = ?named,
                    "a peer's address led to another node");
            }
            named == Some(node_id.as_str())
        });
        match own {
            Some(answer) => {
                gathered.answers.push(answer);
                gathered.answered.push(node_id);
            }
            None => gathered.missing.push(node_id),
        }
    }
    gathered
}

async fn ask(node_id: String, request: reqwest::RequestBuilder) -> (String, Option<Value>) {
    let answer = match request.send().await {
        Ok(response) if response.status().is_success() => response.json().await.ok(),
        Ok(response) => {
            tracing::warn!(node_id = %node_id, status = response.status().as_u16(),
                "a peer refused a cluster-wide query");
            None
        }
        Err(error) => {
            tracing::warn!(node_id = %node_id, %error, "a peer did not answer a cluster-wide query");
            None
        }
    };
    (node_id, answer)
}
