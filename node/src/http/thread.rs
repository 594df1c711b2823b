//! A Responses request's place in a thread: what it continues (a stored
//! response named by `previous_response_id`, or a conversation) and
//! whether its answer is stored. What it continues is read here, before
//! the request is parsed, and the request goes on with the whole thread
//! as its `input`: every deployment, translated to or passing through,
//! then answers it alike, and none needs to have seen the earlier turns.
//!
//! An id the cluster holds for another key, or deleted, is a 404, as if
//! it had never been. An id it does not hold at all is left in the
//! request: an upstream that speaks the Responses API may hold it (its
//! own stored response), and for any other the request is refused as
//! naming what it cannot find.

use std::sync::Arc;

use bytes::Bytes;
use chorus_actors::clock::unix_millis;
use chorus_proto::ErrorType;
use http::StatusCode;
use serde_json::{Map, Value};

use super::{ApiError, Caller};
use crate::stored::records::{
    conversation_items, conversation_key, input_items, output_items, response_body,
    response_history, response_key, turn_body, turn_key, turn_ms, turns_prefix, valid_id,
};
use crate::stored::{Item, Stored};

/// What a Responses request's answer is written with, besides the answer.
pub struct Thread {
    /// The request's members as the client sent them, which the response
    /// repeats (`previous_response_id`, `store`, …).
    pub echo: Map<String, Value>,
    /// `None` when nothing of the answer is stored.
    pub keeper: Option<Arc<Keeper>>,
}

/// Stores a finished answer: the response itself unless the client said
/// `store: false`, and its turn in the conversation it continued.
pub struct Keeper {
    stored: Arc<Stored>,
    owner: String,
    store: bool,
    /// Every input item the response answers, the thread's first.
    input: Vec<Value>,
    /// The conversation continued, when one was.
    turn: Option<Turn>,
}

/// A response's turn in the conversation it continued.
struct Turn {
    conversation: String,
    /// The request's own input items.
    own: Vec<Value>,
    /// When the conversation's last turn was stored (ms): this one sorts
    /// after it, whatever this node's clock says.
    after_ms: u64,
}

impl Keeper {
    /// Stores `response` (a `response` object) when it finished; a copy
    /// that cannot be written is logged, as the client has its answer.
    pub async fn keep(&self, response: &Value) {
        let (Some(id), Some("completed" | "incomplete")) =
            (response["id"].as_str(), response["status"].as_str())
        else {
            return;
        };
        if !valid_id(id) {
            return;
        }
        let item = |body| Item {
            owner: self.owner.clone(),
            expires_ms: self.stored.expires_ms(),
            body: Some(body),
        };
        if self.store {
            let body = response_body(response.clone(), self.input.clone());
            if let Err(error) = self.stored.put(id, &response_key(id), &item(body)).await {
                tracing::warn!(response_id = id, %error, "a response could not be stored");
            }
        }
        if let Some(Turn {
            conversation,
            own,
            after_ms,
        }) = &self.turn
        {
            let mut items = own.clone();
            items.extend(output_items(response));
            let at_ms = unix_millis().max(after_ms.saturating_add(1));
            let key = turn_key(conversation, at_ms, id);
            let turn = item(turn_body(items));
            if let Err(error) = self.stored.put(conversation, &key, &turn).await {
                tracing::warn!(response_id = id, %error, "a conversation turn could not be stored");
            }
        }
    }
}

/// `body` with what it continues read into its `input`, and its thread.
/// A body that is not a JSON object is left for the parser to refuse.
pub async fn resolve(
    stored: Option<&Arc<Stored>>,
    caller: &Caller,
    body: Bytes,
) -> Result<(Bytes, Thread), ApiError> {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&body) else {
        return Ok((body, thread(Map::new(), None)));
    };
    let previous = fields.get("previous_response_id").and_then(Value::as_str);
    let conversation = match fields.get("conversation") {
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Object(named)) => named.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    if previous.is_some() && conversation.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequest,
            "invalid_request",
            "`previous_response_id` and `conversation` cannot both be given",
        )
        .with_param("conversation"));
    }
    // The parameters the response repeats; `input` may be large and is
    // not one of them.
    let mut echo: Map<String, Value> = fields
        .iter()
        .filter(|(name, _)| *name != "input")
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if let Some(id) = &conversation {
        echo.insert("conversation".into(), serde_json::json!({"id": id}));
    }
    let Some(stored) = stored else {
        return Ok((body, thread(echo, None)));
    };
    let owner = caller.owner();
    let history = match (previous, &conversation) {
        (Some(id), _) => match held(stored, id, &response_key(id), &owner).await {
            Held::Owned(body) => Some((response_history(&body), 0)),
            Held::NotYours => {
                return Err(not_held("previous_response_id", "previous_response", id))
            }
            Held::Unknown => None,
        },
        (None, Some(id)) => match conversation_history(stored, id, &owner).await {
            Held::Owned(history) => Some(history),
            Held::NotYours => return Err(not_held("conversation", "conversation", id)),
            Held::Unknown => None,
        },
        (None, None) => None,
    };
    let own = input_items(fields.get("input").unwrap_or(&Value::Null));
    let resolved = history.is_some();
    let (mut input, last_turn_ms) = history.unwrap_or_default();
    input.extend(own.iter().cloned());
    let body = if resolved {
        fields.remove("previous_response_id");
        fields.remove("conversation");
        fields.insert("input".into(), Value::Array(input.clone()));
        Bytes::from(serde_json::to_vec(&fields).unwrap_or_else(|_| body.to_vec()))
    } else {
        body
    };
    let store = fields.get("store") != Some(&Value::Bool(false));
    let turn = conversation.filter(|_| resolved).map(|id| Turn {
        conversation: id,
        own,
        after_ms: last_turn_ms,
    });
    let keeper = (store || turn.is_some()).then(|| Keeper {
        stored: Arc::clone(stored),
        owner,
        store,
        input,
        turn,
    });
    Ok((body, thread(echo, keeper)))
}

/// The 404 for an id the cluster holds for another key, or deleted: as
/// for an id never made, and never passed on to an upstream.
fn not_held(param: &str, kind: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorType::InvalidRequest,
        &format!("{kind}_not_found"),
        format!("`{param}`: nothing with the id '{id}' is stored here for this key"),
    )
    .with_param(param)
}

impl Thread {
    /// What the request's prompt-cache identity is named by: its
    /// conversation, when it continues one.
    pub fn affinity(&self) -> Option<String> {
        let id = self.echo.get("conversation")?.get("id")?.as_str()?;
        Some(format!("conversation:{id}"))
    }
}

fn thread(echo: Map<String, Value>, keeper: Option<Keeper>) -> Thread {
    Thread {
        echo,
        keeper: keeper.map(Arc::new),
    }
}

/// What the cluster holds under an id, as one key sees it.
pub enum Held<T> {
    /// The key's own, live.
    Owned(T),
    /// Another key's, or deleted.
    NotYours,
    /// Nothing: perhaps an upstream's own id.
    Unknown,
}

/// What the cluster holds under `key`, placed by `id`, for `owner`.
pub async fn held(stored: &Stored, id: &str, key: &str, owner: &str) -> Held<Value> {
    if !valid_id(id) {
        return Held::Unknown;
    }
    match stored.get(id, key).await {
        Some(Item {
            owner: made_by,
            body: Some(body),
            ..
        }) if made_by == owner => Held::Owned(body),
        Some(_) => Held::NotYours,
        None => Held::Unknown,
    }
}

/// The live body of the item under `key`, placed by `id`, when `owner`
/// made it.
pub async fn owned(stored: &Stored, id: &str, key: &str, owner: &str) -> Option<Value> {
    match held(stored, id, key, owner).await {
        Held::Owned(body) => Some(body),
        Held::NotYours | Held::Unknown => None,
    }
}

/// A conversation's items in order, and when its last turn was stored
/// (ms), when `owner` made it.
pub async fn conversation_history(
    stored: &Stored,
    id: &str,
    owner: &str,
) -> Held<(Vec<Value>, u64)> {
    let conversation = match held(stored, id, &conversation_key(id), owner).await {
        Held::Owned(conversation) => conversation,
        Held::NotYours => return Held::NotYours,
        Held::Unknown => return Held::Unknown,
    };
    let turns = stored.scan(id, &turns_prefix(id)).await;
    let last_turn_ms = turns
        .last()
        .and_then(|(key, _)| turn_ms(id, key))
        .unwrap_or(0);
    let live = turns
        .iter()
        .filter(|(_, item)| item.owner == owner)
        .filter_map(|(_, item)| item.body.as_ref());
    Held::Owned((conversation_items(&conversation, live), last_turn_ms))
}
