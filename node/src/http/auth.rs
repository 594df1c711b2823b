//! Who is calling. Gateway keys — bootstrap keys from the config and
//! virtual keys from the admin API — are kept only as SHA-256 hashes: a
//! presented key is hashed and looked up, so the clear key exists only in
//! the request being checked. SHA-256 rather than a slow password hash:
//! keys are 256 random bits, which no amount of guessing per hash can
//! find, so the hash only has to be one-way, and it costs well under a
//! microsecond on the request path.
//!
//! The admin token, kept the same way, guards the admin API and the
//! cluster views.

use std::collections::HashMap;
use std::sync::Arc;

use chorus_actors::{AdminRegistry, KeyEntry, TeamEntry};
use chorus_proto::ErrorType;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};

use super::error::ApiError;
use crate::config::{sha256, KeyConfig};
use crate::request_log::Who;

/// The bootstrap keys of the config file.
#[derive(Debug, Default)]
pub struct KeyStore {
    names_by_hash: HashMap<[u8; 32], Arc<str>>,
}

/// The caller of a request, once authenticated.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A `[[keys]]` key of the config: every model, no limits.
    Bootstrap { name: Arc<str> },
    /// A virtual key, with its team when it has one.
    Virtual {
        key: Arc<KeyEntry>,
        team: Option<Arc<TeamEntry>>,
    },
}

impl Caller {
    /// Whether the key, and its team, may use model `alias`.
    pub fn allows_model(&self, alias: &str) -> bool {
        match self {
            Caller::Bootstrap { .. } => true,
            Caller::Virtual { key, team } => {
                key.record.policy.allows_model(alias)
                    && team
                        .as_ref()
                        .is_none_or(|team| team.record.policy.allows_model(alias))
            }
        }
    }

    /// Whose cached answers the caller shares: its team's, or its own
    /// key's when it has no team.
    pub fn cache_scope(&self) -> String {
        match self {
            Caller::Virtual { key, .. } => match &key.record.team {
                Some(team) => format!("team:{team}"),
                None => self.owner(),
            },
            Caller::Bootstrap { .. } => self.owner(),
        }
    }

    /// The key the caller presents, as stored responses name their owner:
    /// only the same key reads them back, not its team's others.
    pub fn owner(&self) -> String {
        match self {
            Caller::Bootstrap { name } => format!("bootstrap:{name}"),
            Caller::Virtual { key, .. } => format!("key:{}", key.id),
        }
    }

    /// The caller as the request log names it.
    pub fn who(&self) -> Who {
        match self {
            Caller::Bootstrap { name } => Who {
                key: name.to_string(),
                name: name.to_string(),
                team: None,
            },
            Caller::Virtual { key, .. } => Who {
                key: key.id.clone(),
                name: key.record.name.clone(),
                team: key.record.team.clone(),
            },
        }
    }

    /// The key's name, for the log line.
    pub fn name(&self) -> &str {
        match self {
            Caller::Bootstrap { name } => name,
            Caller::Virtual { key, .. } => &key.record.name,
        }
    }
}

fn unauthorized(code: &str, message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorType::Authentication,
        code,
        message,
    )
}

impl KeyStore {
    pub fn new(keys: &[KeyConfig]) -> Self {
        KeyStore {
            names_by_hash: keys
                .iter()
                .map(|key| (key.sha256, Arc::from(key.name.as_str())))
                .collect(),
        }
    }

    /// The caller presenting `Authorization: Bearer <key>` (OpenAI's way)
    /// or `x-api-key: <key>` (Anthropic's), or a 401 that says what is
    /// wrong without repeating the key.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        admin: &AdminRegistry,
        now_ms: u64,
    ) -> Result<Caller, ApiError> {
        let hash = sha256(client_key(headers)?);
        if let Some(name) = self.names_by_hash.get(&hash) {
            return Ok(Caller::Bootstrap { name: name.clone() });
        }
        let key = admin
            .key_by_hash(&hash)
            .ok_or_else(|| unauthorized("invalid_api_key", "invalid API key"))?;
        if key.revoked_ms.is_some() {
            return Err(unauthorized("key_revoked", "this API key has been revoked"));
        }
        if key
            .record
            .expires_ms
            .is_some_and(|expires| expires <= now_ms)
        {
            return Err(unauthorized("key_expired", "this API key has expired"));
        }
        let team = match &key.record.team {
            None => None,
            Some(team_id) => {
                let team = admin.team(team_id).ok_or_else(|| {
                    unauthorized("team_deleted", "the team of this API key was deleted")
                })?;
                if team.revoked_ms.is_some() {
                    return Err(unauthorized(
                        "team_revoked",
                        "the team of this API key has been revoked",
                    ));
                }
                Some(team)
            }
        };
        Ok(Caller::Virtual { key, team })
    }
}

/// The token in `Authorization: Bearer <token>`, or a 401.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    bearer_token(headers).ok_or_else(|| {
        unauthorized(
            "missing_api_key",
            "missing API key: send `Authorization: Bearer <key>`",
        )
    })
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// A client's key: the bearer token, else `x-api-key`, or a 401.
fn client_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    let api_key = || {
        headers
            .get("x-api-key")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|token| !token.is_empty())
    };
    bearer_token(headers).or_else(api_key).ok_or_else(|| {
        unauthorized(
            "missing_api_key",
            "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
        )
    })
}

/// Checks the admin token of the cluster view, the status page's data and
/// the admin API: 404 when none is configured (the node says so in its log
/// at start), 401 when it is missing or wrong.
pub fn authenticate_admin(
    admin_token_sha256: Option<&[u8; 32]>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(expected) = admin_token_sha256 else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            "admin_disabled",
            "this node has no admin token: set `server.admin_token` to use the admin endpoints",
        ));
    };
    if sha256(bearer(headers)?) == *expected {
        Ok(())
    } else {
        Err(unauthorized("invalid_admin_token", "invalid admin token"))
    }
}
