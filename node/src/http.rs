//! The HTTP API. Every request first gets its id and arrival time
//! (`request_id`), then its handler; every error, ours or an upstream's,
//! leaves as an OpenAI error object (`error`).

mod auth;
mod chat;
mod cluster;
mod error;
mod health;
mod models;
mod request_id;
mod status;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{middleware, Router};
use chorus_actors::{Ledger, RequestTracker, Routes};

use crate::cluster::Cluster;

pub use auth::{authenticate_admin, KeyStore};
pub use error::ApiError;
pub use request_id::RequestContext;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub routes: Arc<Routes>,
    pub keys: Arc<KeyStore>,
    /// SHA-256 of the admin token; `None` turns the admin endpoints off.
    pub admin_token_sha256: Option<[u8; 32]>,
    pub max_body_bytes: usize,
    /// `None` when the node runs without a `[cluster]` section.
    pub cluster: Option<Arc<Cluster>>,
    /// The durable counters, cluster-wide when in a cluster.
    pub ledger: Ledger,
    /// The requests under way, which shutdown waits for.
    pub requests: RequestTracker,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(models::list))
        .route("/v1/cluster", get(cluster::view))
        .route("/v1/health", get(health::summary))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/status", get(status::page))
        .fallback(error::unknown_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use chorus_actors::RunId;
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::config::{sha256, KeyConfig};

    const CLIENT_KEY: &str = "sk-client";
    const ADMIN_TOKEN: &str = "admin-token";

    /// A standalone node's state: one client key, the given admin token.
    fn state(admin_token: Option<&str>) -> AppState {
        let run = RunId {
            node_id: "standalone".into(),
            generation: 1,
        };
        AppState {
            routes: Arc::new(Routes::default()),
            keys: Arc::new(KeyStore::new(&[KeyConfig {
                name: "client".into(),
                sha256: sha256(CLIENT_KEY),
            }])),
            admin_token_sha256: admin_token.map(sha256),
            max_body_bytes: 1024,
            cluster: None,
            ledger: Ledger::new(run, Vec::new()),
            requests: RequestTracker::default(),
        }
    }

    async fn status_of(state: AppState, path: &str, bearer: &str) -> StatusCode {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {bearer}"))
            .body(Body::empty())
            .unwrap();
        router(state).oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn the_cluster_view_takes_the_admin_token_and_no_client_key() {
        let with_token = || state(Some(ADMIN_TOKEN));
        assert_eq!(
            status_of(with_token(), "/v1/cluster", ADMIN_TOKEN).await,
            StatusCode::OK
        );
        assert_eq!(
            status_of(with_token(), "/v1/cluster", CLIENT_KEY).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(state(None), "/v1/cluster", CLIENT_KEY).await,
            StatusCode::NOT_FOUND,
            "no admin token configured, no cluster view"
        );
        assert_eq!(
            status_of(with_token(), "/v1/models", CLIENT_KEY).await,
            StatusCode::OK
        );
    }
}
