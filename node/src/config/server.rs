//! `[server]`: the HTTP listener, the admin token, the body limit and how
//! long a client connection may sit idle.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::checker::Checker;
use super::keys::sha256;

const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
const DEFAULT_CLIENT_IDLE_TIMEOUT_MS: u64 = 60_000;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address the HTTP API listens on. Default `127.0.0.1:4000`.
    pub listen: Option<String>,
    /// Token for the admin API, the cluster view and the status page.
    /// Optional (empty means none); `${VAR}` allowed.
    pub admin_token: Option<String>,
    /// Largest request body accepted, in bytes. Default 10 MiB.
    pub max_body_bytes: Option<u64>,
    /// A connection that brings no complete request head for this long —
    /// silent, stalled mid-headers, or idle between requests — is closed.
    /// Default 60 s.
    pub client_idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// SHA-256 of the admin token; never kept in clear.
    pub admin_token_sha256: Option<[u8; 32]>,
    pub max_body_bytes: usize,
    pub client_idle_timeout: Duration,
}

pub fn check(raw: &RawServer, checker: &mut Checker) -> Option<ServerConfig> {
    let written = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = checker
        .expand("server.listen", written)
        .and_then(|listen| match listen.parse() {
            Ok(listen) => Some(listen),
            Err(_) => {
                checker.problem(
                    "server.listen",
                    format!("`{listen}` is not an address like `127.0.0.1:4000`"),
                );
                None
            }
        });
    let admin_token_sha256 = match &raw.admin_token {
        Some(token) => checker
            .expand("server.admin_token", token)
            .map(|token| (!token.is_empty()).then(|| sha256(&token))),
        None => Some(None),
    };
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        checker.problem("server.max_body_bytes", "must be at least 1");
    }
    let idle_ms = raw
        .client_idle_timeout_ms
        .unwrap_or(DEFAULT_CLIENT_IDLE_TIMEOUT_MS);
    if idle_ms == 0 {
        checker.problem("server.client_idle_timeout_ms", "must be at least 1");
    }
    Some(ServerConfig {
        listen: listen?,
        admin_token_sha256: admin_token_sha256?,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        client_idle_timeout: Duration::from_millis(idle_ms),
    })
}
