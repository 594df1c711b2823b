//! `[server]`: the HTTP listener, the admin token and the body limit.

use std::net::SocketAddr;

use serde::Deserialize;

use super::checker::Checker;
use super::keys::sha256;

const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

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
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// SHA-256 of the admin token; never kept in clear.
    pub admin_token_sha256: Option<[u8; 32]>,
    pub max_body_bytes: usize,
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
    Some(ServerConfig {
        listen: listen?,
        admin_token_sha256: admin_token_sha256?,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
    })
}
