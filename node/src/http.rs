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
