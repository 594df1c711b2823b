//! The admin API under `/admin`, behind the admin token: virtual keys and
//! teams, created, listed, read, changed, revoked and deleted on any node
//! and gossiped to every other within a gossip round.
//!
//! ```text
//! POST   /admin/keys               201, the key's fields and, this once, `key`
//! GET    /admin/keys               the keys, by name
//! GET    /admin/keys/{id}          one key (id or name)
//! PATCH  /admin/keys/{id}          changes the fields sent; `null` clears
//! DELETE /admin/keys/{id}          deletes it for good
//! POST   /admin/keys/{id}/revoke   revokes it for good
//! ```
//!
//! and the same under `/admin/teams`; `GET /admin/requests` is the
//! request log (see `requests`). Every error is an OpenAI error object:
//! 400 naming the field, 401, 404, 409 for a duplicate name.

mod fields;
mod render;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chorus_actors::clock::unix_millis;
use chorus_actors::{AdminError, TeamEntry};
use chorus_proto::ErrorType;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::body::read_body;
use super::{authenticate_admin, ApiError, AppState};
use crate::secrets;
use fields::Purpose;

/// Admin bodies are a few fields; anything larger is a mistake.
const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/keys", post(create_key).get(list_keys))
        .route(
            "/keys/{id}",
            get(show_key).patch(update_key).delete(delete_key),
        )
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/teams", post(create_team).get(list_teams))
        .route(
            "/teams/{id}",
            get(show_team).patch(update_team).delete(delete_team),
        )
        .route("/teams/{id}/revoke", post(revoke_team))
        .route("/requests", get(super::requests::list))
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        let message = error.to_string();
        match error {
            AdminError::Invalid { param, .. } => fields::invalid(&param, message),
            AdminError::NotFound { .. } => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorType::InvalidRequest,
                "not_found",
                message,
            ),
            AdminError::Conflict { param, .. } => ApiError::new(
                StatusCode::CONFLICT,
                ErrorType::InvalidRequest,
                "conflict",
                message,
            )
            .with_param(param),
            AdminError::Store(error) => {
                tracing::error!(%error, "an admin change could not be stored");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorType::Unavailable,
                    "store_unavailable",
                    "the change could not be stored on this node; retry it",
                )
            }
        }
    }
}

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

fn ok(value: Value) -> Answer {
    Ok((StatusCode::OK, Json(value)))
}

/// The admin token, then the body within its limit.
async fn admitted_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, ApiError> {
    authenticate_admin(state.admin_token_sha256.as_ref(), headers)?;
    Ok(read_body(body, headers, MAX_ADMIN_BODY_BYTES)
        .await?
        .to_vec())
}

fn admitted(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    authenticate_admin(state.admin_token_sha256.as_ref(), headers)
}

fn no_randomness(error: getrandom::Error) -> ApiError {
    tracing::error!(%error, "the system's random source failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorType::Unavailable,
        "randomness_unavailable",
        "no key could be made: the node's random source failed; retry it",
    )
}

async fn create_key(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Answer {
    let body = admitted_body(&state, &headers, body).await?;
    let now = unix_millis();
    let change = fields::key_change(&body, Purpose::Create, &state.routes, now)?;
    let (clear, sha256) = secrets::new_key().map_err(no_randomness)?;
    let id = secrets::new_id("key").map_err(no_randomness)?;
    let key = state.admin.create_key(id, sha256, &change.patch, now)?;
    tracing::info!(key_id = %key.id, name = %key.record.name, "key created");
    let mut shown = render::key(&key, &state.admin, now);
    shown["key"] = Value::String(clear);
    Ok((StatusCode::CREATED, Json(shown)))
}

async fn list_keys(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    admitted(&state, &headers)?;
    let now = unix_millis();
    let keys = state.admin.keys();
    ok(render::list(
        keys.iter()
            .map(|key| render::key(key, &state.admin, now))
            .collect(),
    ))
}

async fn show_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    admitted(&state, &headers)?;
    let key = state.admin.key(&id)?;
    ok(render::key(&key, &state.admin, unix_millis()))
}

async fn update_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let body = admitted_body(&state, &headers, body).await?;
    let now = unix_millis();
    let change = fields::key_change(&body, Purpose::Update, &state.routes, now)?;
    let mut key = state.admin.update_key(&id, &change.patch, now)?;
    if change.revoke {
        key = state.admin.revoke_key(&key.id, now)?;
    }
    tracing::info!(key_id = %key.id, revoked = key.revoked_ms.is_some(), "key updated");
    ok(render::key(&key, &state.admin, now))
}

async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    admitted(&state, &headers)?;
    let now = unix_millis();
    let key = state.admin.revoke_key(&id, now)?;
    tracing::info!(key_id = %key.id, "key revoked");
    ok(render::key(&key, &state.admin, now))
}

async fn delete_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    admitted(&state, &headers)?;
    let key = state.admin.key(&id)?;
    state.admin.delete_key(&key.id, unix_millis())?;
    tracing::info!(key_id = %key.id, "key deleted");
    ok(render::deleted(&key.id, "key"))
}

/// One team as shown, with how many keys it has.
fn shown_team(state: &AppState, team: &TeamEntry) -> Value {
    let keys = render::keys_per_team(&state.admin).remove(&team.id);
    render::team(team, keys.unwrap_or(0))
}

async fn create_team(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Answer {
    let body = admitted_body(&state, &headers, body).await?;
    let change = fields::team_change(&body, Purpose::Create, &state.routes)?;
    let id = secrets::new_id("team").map_err(no_randomness)?;
    let team = state.admin.create_team(id, &change.patch, unix_millis())?;
    tracing::info!(team_id = %team.id, name = %team.record.name, "team created");
    Ok((StatusCode::CREATED, Json(render::team(&team, 0))))
}

async fn list_teams(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    admitted(&state, &headers)?;
    let counts = render::keys_per_team(&state.admin);
    let teams = state.admin.teams();
    ok(render::list(
        teams
            .iter()
            .map(|team| render::team(team, counts.get(&team.id).copied().unwrap_or(0)))
            .collect(),
    ))
}

async fn show_team(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    admitted(&state, &headers)?;
    let team = state.admin.find_team(&id)?;
    ok(shown_team(&state, &team))
}

async fn update_team(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let body = admitted_body(&state, &headers, body).await?;
    let change = fields::team_change(&body, Purpose::Update, &state.routes)?;
    let now = unix_millis();
    let mut team = state.admin.update_team(&id, &change.patch, now)?;
    if change.revoke {
        team = state.admin.revoke_team(&team.id, now)?;
    }
    tracing::info!(team_id = %team.id, revoked = team.revoked_ms.is_some(), "team updated");
    ok(shown_team(&state, &team))
}

async fn revoke_team(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    admitted(&state, &headers)?;
    let team = state.admin.revoke_team(&id, unix_millis())?;
    tracing::info!(team_id = %team.id, "team revoked");
    ok(shown_team(&state, &team))
}

async fn delete_team(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    admitted(&state, &headers)?;
    let team = state.admin.find_team(&id)?;
    state.admin.delete_team(&team.id, unix_millis())?;
    tracing::info!(team_id = %team.id, "team deleted");
    ok(render::deleted(&team.id, "team"))
}

#[cfg(test)]
mod tests;
