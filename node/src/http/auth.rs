//! Gateway keys and the admin token: kept only as SHA-256 hashes; a
//! presented key is hashed and looked up, so the clear key exists only in
//! the request being checked.

use std::collections::HashMap;
use std::sync::Arc;

use chorus_proto::ErrorType;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};

use super::error::ApiError;
use crate::config::{sha256, KeyConfig};

#[derive(Debug, Default)]
pub struct KeyStore {
    names_by_hash: HashMap<[u8; 32], Arc<str>>,
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

    /// The name of the key in `Authorization: Bearer <key>`, or a 401 that
    /// says what is wrong without repeating the key.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<str>, ApiError> {
        let presented = bearer(headers)?;
        self.names_by_hash
            .get(&sha256(presented))
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorType::Authentication,
                    "invalid_api_key",
                    "invalid API key",
                )
            })
    }
}

/// The token in `Authorization: Bearer <token>`, or a 401.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorType::Authentication,
                "missing_api_key",
                "missing API key: send `Authorization: Bearer <key>`",
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
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::Authentication,
            "invalid_admin_token",
            "invalid admin token",
        ))
    }
}
