//! The HTTP API. Every request first gets its id and arrival time
//! (`request_id`), then its handler; every error, ours or an upstream's,
//! leaves as an OpenAI error object (`error`).

mod admin;
mod auth;
mod body;
mod cache;
mod chat;
mod cluster;
pub mod connections;
mod count_tokens;
mod dialect;
mod error;
mod health;
mod limits;
mod metrics;
mod models;
mod peers;
mod request_id;
mod requests;
mod status;
mod stored;
mod thread;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{middleware, Router};
use chorus_actors::clock::unix_millis;
use chorus_actors::{AdminRegistry, Ledger, Limiter, RequestTracker, Routes};
use chorus_proto::Endpoint;
use dialect::Dialect;
use http::HeaderMap;

use crate::cache::ResponseCache;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::request_log::RequestLog;
use crate::storage::Storage;
use crate::stored::Stored;

pub use auth::{authenticate_admin, Caller, KeyStore};
pub use error::ApiError;
pub use request_id::RequestContext;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub routes: Arc<Routes>,
    /// Bootstrap keys from the config.
    pub keys: Arc<KeyStore>,
    /// Virtual keys and teams, cluster-wide.
    pub admin: AdminRegistry,
    /// Their rate limits and budgets.
    pub limiter: Limiter,
    /// SHA-256 of the admin token; `None` turns the admin endpoints off.
    pub admin_token_sha256: Option<[u8; 32]>,
    pub max_body_bytes: usize,
    /// `None` when the node runs without a `[cluster]` section.
    pub cluster: Option<Arc<Cluster>>,
    /// The durable counters, cluster-wide when in a cluster.
    pub ledger: Ledger,
    /// The requests under way, which shutdown waits for.
    pub requests: RequestTracker,
    pub metrics: Arc<Metrics>,
    /// `None` when the node keeps no response cache.
    pub cache: Option<Arc<ResponseCache>>,
    /// `None` when the node keeps no request log.
    pub request_log: Option<RequestLog>,
    /// `None` when the node stores no responses.
    pub stored: Option<Arc<Stored>>,
    /// `None` when the node has no `[storage]`; for its metrics.
    pub storage: Option<Arc<Storage>>,
    /// Asks other nodes for their part of cluster-wide views.
    pub peers: reqwest::Client,
}

impl AppState {
    /// The caller presenting the request's key, or a 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.keys.authenticate(headers, &self.admin, unix_millis())
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/admin", admin::router())
        .merge(stored::router())
        .route(
            "/v1/chat/completions",
            chat::route(Dialect::OpenAi(Endpoint::ChatCompletions)),
        )
        .route(
            "/v1/completions",
            chat::route(Dialect::OpenAi(Endpoint::Completions)),
        )
        .route(
            "/v1/embeddings",
            chat::route(Dialect::OpenAi(Endpoint::Embeddings)),
        )
        .route("/v1/messages", chat::route(Dialect::Anthropic))
        .route("/v1/responses", chat::route(Dialect::Responses))
        .route(
            "/v1/messages/count_tokens",
            post(count_tokens::count_tokens),
        )
        .route("/v1/models", get(models::list))
        .route("/v1/stats", get(requests::stats))
        .route("/v1/cluster", get(cluster::view))
        .route("/v1/cluster/recent", get(status::recent))
        .route("/v1/health", get(health::summary))
        .route("/metrics", get(metrics::scrape))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/status", get(status::page))
        .fallback(error::unknown_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}

#[cfg(test)]
pub(crate) mod tests {
    use axum::body::Body;
    use chorus_actors::{AliasRoute, DeploymentHandle, DeploymentSpec, RunId};
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::config::{sha256, KeyConfig};
    use crate::providers::MockProvider;

    pub const CLIENT_KEY: &str = "sk-client";
    pub const ADMIN_TOKEN: &str = "admin-token";

    /// One built-in mock deployment per alias, instant and deterministic.
    pub fn routes_of(aliases: &[&str], ledger: &Ledger) -> Routes {
        let mut deployments = Vec::new();
        let routes = aliases
            .iter()
            .map(|alias| {
                let spec = DeploymentSpec {
                    name: format!("mock/{alias}"),
                    provider: "mock".into(),
                    upstream_model: (*alias).to_owned(),
                    price: Default::default(),
                    timeout: std::time::Duration::from_secs(5),
                    quota: Default::default(),
                    breaker: Default::default(),
                };
                let provider = Arc::new(MockProvider::new(std::time::Duration::ZERO, 4));
                let deployment = DeploymentHandle::new(spec, provider, ledger);
                deployments.push(deployment.clone());
                AliasRoute::with_defaults((*alias).to_owned(), vec![deployment])
            })
            .collect();
        Routes::new(routes, deployments)
    }

    pub fn ledger() -> Ledger {
        let run = RunId {
            node_id: "standalone".into(),
            generation: 1,
        };
        Ledger::new(run, Vec::new())
    }

    /// A standalone node's state: aliases `fast` and `smart` on the
    /// built-in mock, one client key, the given admin token.
    pub fn state(admin_token: Option<&str>) -> AppState {
        let ledger = ledger();
        AppState {
            routes: Arc::new(routes_of(&["fast", "smart"], &ledger)),
            keys: Arc::new(KeyStore::new(&[KeyConfig {
                name: "client".into(),
                sha256: sha256(CLIENT_KEY),
            }])),
            admin: AdminRegistry::new("standalone", Vec::new(), None),
            limiter: Limiter::new(ledger.clone()),
            admin_token_sha256: admin_token.map(sha256),
            max_body_bytes: 1024,
            cluster: None,
            ledger,
            requests: RequestTracker::default(),
            metrics: Arc::new(Metrics::new(&Routes::default()).expect("metrics register once")),
            cache: None,
            request_log: None,
            stored: None,
            storage: None,
            peers: reqwest::Client::new(),
        }
    }

    /// Sends `method path` with a bearer token and an optional JSON body;
    /// the status and the JSON answer (`Null` when there is none).
    pub async fn send(
        state: &AppState,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
            .unwrap();
        let response = router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    #[tokio::test]
    async fn the_cluster_view_takes_the_admin_token_and_no_client_key() {
        let with_token = state(Some(ADMIN_TOKEN));
        let status =
            |state, bearer| async move { send(&state, "GET", "/v1/cluster", bearer, None).await.0 };
        assert_eq!(
            status(with_token.clone(), ADMIN_TOKEN).await,
            StatusCode::OK
        );
        assert_eq!(
            status(with_token.clone(), CLIENT_KEY).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(state(None), CLIENT_KEY).await,
            StatusCode::NOT_FOUND,
            "no admin token configured, no cluster view"
        );
        assert_eq!(
            send(&with_token, "GET", "/v1/models", CLIENT_KEY, None)
                .await
                .0,
            StatusCode::OK
        );
    }
}
