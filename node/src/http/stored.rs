//! The Responses API's stored items over HTTP, on every node:
//! `GET`/`DELETE /v1/responses/{id}`, the Conversations API basics
//! (`POST /v1/conversations`, `GET`/`DELETE /v1/conversations/{id}`,
//! `GET /v1/conversations/{id}/items`), and the peer API the nodes read
//! and write each other's copies through (`POST /peer/items`).
//!
//! An item belongs to the key that made it: for any other key it does not
//! exist, and the answer is the same 404 as for an id never made.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use chorus_actors::clock::unix_millis;
use chorus_proto::ErrorType;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::read_body;
use super::thread::{conversation_history, owned, Held};
use super::{ApiError, AppState, Caller};
use crate::peer_auth::PEER_HEADER;
use crate::stored::records::{
    conversation_body, conversation_key, input_items, new_id, response_key,
};
use crate::stored::{Item, PeerAnswer, PeerCall, Stored, PEER_PATH};

/// Most items one page of a conversation lists.
const MAX_PAGE: usize = 100;
/// The largest peer call: a stored response holds its whole thread.
const MAX_PEER_BODY: usize = 64 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/responses/{id}", by_id(RESPONSE))
        .route("/v1/conversations", post(create_conversation))
        .route("/v1/conversations/{id}", by_id(CONVERSATION))
        .route("/v1/conversations/{id}/items", get(list_items))
        .route(PEER_PATH, post(peer))
}

/// `GET` and `DELETE` of a `kind` of item by its id.
fn by_id(kind: Kind) -> MethodRouter<AppState> {
    get(
        move |State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap| async move {
            read(&state, &headers, &id, kind).await
        },
    )
    .delete(
        move |State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap| async move {
            remove(&state, &headers, &id, kind).await
        },
    )
}

/// The caller and the node's stored items, or why there are none to reach.
fn open(state: &AppState, headers: &HeaderMap) -> Result<(Caller, Arc<Stored>), ApiError> {
    let caller = state.authenticate(headers)?;
    let stored = state.stored.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            "not_found",
            "this gateway stores no responses or conversations",
        )
    })?;
    Ok((caller, stored))
}

fn not_found(kind: &str, id: &str) -> ApiError {
    let code = format!("{}_not_found", kind.to_lowercase());
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorType::InvalidRequest,
        &code,
        format!("{kind} with id '{id}' not found."),
    )
}

fn unavailable(error: anyhow::Error) -> ApiError {
    tracing::warn!(%error, "a stored item could not be written");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorType::Upstream,
        "store_unavailable",
        "the item could not be stored; retry the request",
    )
}

/// A kind of item the API reads and deletes by id.
#[derive(Clone, Copy)]
struct Kind {
    /// As error messages name it.
    name: &'static str,
    key: fn(&str) -> String,
    /// Where the stored body holds the object the API answers with.
    field: &'static str,
    /// The `object` of the answer to a deletion.
    deleted: &'static str,
}

const RESPONSE: Kind = Kind {
    name: "Response",
    key: response_key,
    field: "response",
    deleted: "response.deleted",
};

const CONVERSATION: Kind = Kind {
    name: "Conversation",
    key: conversation_key,
    field: "conversation",
    deleted: "conversation.deleted",
};

/// The caller, the store and the body of the `kind` of item `id`, when
/// the caller's key made it.
async fn find(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    kind: Kind,
) -> Result<(Caller, Arc<Stored>, Value), ApiError> {
    let (caller, stored) = open(state, headers)?;
    let body = owned(&stored, id, &(kind.key)(id), &caller.owner())
        .await
        .ok_or_else(|| not_found(kind.name, id))?;
    Ok((caller, stored, body))
}

/// `GET` of an item by id: the object it was answered or made with.
async fn read(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    kind: Kind,
) -> Result<Json<Value>, ApiError> {
    let (_, _, body) = find(state, headers, id, kind).await?;
    Ok(Json(body[kind.field].clone()))
}

/// `DELETE` of an item by id: marked deleted on its holders, for as long
/// as it could have lived.
async fn remove(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    kind: Kind,
) -> Result<Json<Value>, ApiError> {
    let (caller, stored, _) = find(state, headers, id, kind).await?;
    let deletion = Item {
        owner: caller.owner(),
        expires_ms: stored.expires_ms(),
        body: None,
    };
    stored
        .put(id, &(kind.key)(id), &deletion)
        .await
        .map_err(unavailable)?;
    Ok(Json(
        json!({"id": id, "object": kind.deleted, "deleted": true}),
    ))
}

/// `POST /v1/conversations`: `items` to start from and `metadata`, both
/// optional.
async fn create_conversation(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (caller, stored) = open(&state, &headers)?;
    let bytes = read_body(body, &headers, state.max_body_bytes).await?;
    let invalid = |message: &str, param: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequest,
            "invalid_request",
            message,
        )
        .with_param(param)
    };
    let fields = match serde_json::from_slice::<Value>(&bytes) {
        _ if bytes.is_empty() => serde_json::Map::new(),
        Ok(Value::Object(fields)) => fields,
        _ => return Err(invalid("the body must be a JSON object", "body")),
    };
    let items = match fields.get("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(items @ Value::Array(_)) => input_items(items),
        Some(_) => return Err(invalid("`items` must be a list of items", "items")),
    };
    let metadata = match fields.get("metadata") {
        None | Some(Value::Null) => json!({}),
        Some(metadata @ Value::Object(_)) => metadata.clone(),
        Some(_) => return Err(invalid("`metadata` must be an object", "metadata")),
    };
    let id = new_id("conv");
    let conversation = json!({"id": id, "object": "conversation",
        "created_at": unix_millis() / 1000, "metadata": metadata});
    let item = Item {
        owner: caller.owner(),
        expires_ms: stored.expires_ms(),
        body: Some(conversation_body(conversation.clone(), items)),
    };
    stored
        .put(&id, &conversation_key(&id), &item)
        .await
        .map_err(unavailable)?;
    Ok(Json(conversation))
}

#[derive(Deserialize)]
struct Page {
    limit: Option<usize>,
    order: Option<String>,
}

/// `GET /v1/conversations/{id}/items`: newest first unless `order=asc`,
/// `limit` items (20 unless told, at most 100).
async fn list_items(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (caller, stored) = open(&state, &headers)?;
    let Held::Owned((mut items, _)) = conversation_history(&stored, &id, &caller.owner()).await
    else {
        return Err(not_found("Conversation", &id));
    };
    match page.order.as_deref() {
        Some("asc") => {}
        None | Some("desc") => items.reverse(),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequest,
                "invalid_request",
                "`order` must be `asc` or `desc`",
            )
            .with_param("order"))
        }
    }
    let limit = page.limit.unwrap_or(20).clamp(1, MAX_PAGE);
    let has_more = items.len() > limit;
    items.truncate(limit);
    let id_of = |item: Option<&Value>| item.and_then(|item| item.get("id")).cloned();
    Ok(Json(json!({
        "object": "list",
        "first_id": id_of(items.first()),
        "last_id": id_of(items.last()),
        "has_more": has_more,
        "data": items,
    })))
}

/// `POST /peer/items`: another node's read or write of this node's
/// copies, sealed by [`crate::peer_auth`]; anything else is a 401.
async fn peer(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PeerAnswer>, ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::Authentication,
            "peer_unauthenticated",
            "peer calls must be sealed by a member of this cluster",
        )
    };
    let stored = state.stored.clone().ok_or_else(refused)?;
    let auth = stored.auth().ok_or_else(refused)?;
    // The seal first: a stranger's body is never read.
    let seal = headers
        .get(PEER_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(refused)?;
    let sealed = auth
        .verify(seal, Method::POST.as_str(), PEER_PATH, unix_millis())
        .ok_or_else(refused)?;
    let bytes = axum::body::to_bytes(body, MAX_PEER_BODY)
        .await
        .map_err(|_| refused())?;
    if !sealed.carries(&bytes) {
        return Err(refused());
    }
    let call: PeerCall = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequest,
            "invalid_request",
            format!("not a peer call: {e}"),
        )
    })?;
    let answer = stored.answer(call).map_err(|error| {
        tracing::warn!(%error, "a peer's call could not be served");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Upstream,
            "store_unavailable",
            "the store could not serve the call",
        )
    })?;
    Ok(Json(answer))
}
