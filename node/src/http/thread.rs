//! A Responses request's place in a thread: what it continues (a stored
//! response named by `previous_response_id`, or a conversation) and
//! whether its answer is stored. What it continues is read here, before
//! the request is parsed, and the request goes on with the whole thread
//! as its `input`: every deployment, translated to or passing through,
//! then answers it alike, and none needs to have seen the earlier turns.
//!
//! An id this cluster does not hold is left in the request: an upstream
//! that speaks the Responses API may hold it (its own stored response),
//! and for any other the request is refused as naming what it cannot
//! find.

use std::sync::Arc;

use bytes::Bytes;
use chorus_actors::clock::unix_millis;
use chorus_proto::ErrorType;
use http::StatusCode;
use serde_json::{Map, Value};

use super::{ApiError, Caller};
use crate::stored::records::{
    conversation_items, conversation_key, input_items, output_items, response_body,
    response_history, response_key, turn_body, turn_key, turns_prefix, valid_id,
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
    /// The conversation continued, and the request's own input items.
    turn: Option<(String, Vec<Value>)>,
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
        if let Some((conversation, own)) = &self.turn {
            let mut items = own.clone();
            items.extend(output_items(response));
            let key = turn_key(conversation, unix_millis(), id);
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
    let mut echo = fields.clone();
    if let Some(id) = &conversation {
        echo.insert("conversation".into(), serde_json::json!({"id": id}));
    }
    let Some(stored) = stored else {
        return Ok((body, thread(echo, None)));
    };
    let owner = caller.owner();
    let history = match (previous, &conversation) {
        (Some(id), _) => owned(stored, id, &response_key(id), &owner)
            .await
            .map(|body| response_history(&body)),
        (None, Some(id)) => conversation_history(stored, id, &owner).await,
        (None, None) => None,
    };
    let own = input_items(fields.get("input").unwrap_or(&Value::Null));
    let resolved = history.is_some();
    let mut input = history.unwrap_or_default();
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
    let turn = conversation.filter(|_| resolved).map(|id| (id, own));
    let keeper = (store || turn.is_some()).then(|| Keeper {
        stored: Arc::clone(stored),
        owner,
        store,
        input,
        turn,
    });
    Ok((body, thread(echo, keeper)))
}

fn thread(echo: Map<String, Value>, keeper: Option<Keeper>) -> Thread {
    Thread {
        echo,
        keeper: keeper.map(Arc::new),
    }
}

/// The live body of the item under `key`, placed by `id`, when `owner`
/// made it.
pub async fn owned(stored: &Stored, id: &str, key: &str, owner: &str) -> Option<Value> {
    if !valid_id(id) {
        return None;
    }
    let item = stored.get(id, key).await?;
    (item.owner == owner).then_some(item.body).flatten()
}

/// A conversation's items in order, when `owner` made it.
pub async fn conversation_history(stored: &Stored, id: &str, owner: &str) -> Option<Vec<Value>> {
    let conversation = owned(stored, id, &conversation_key(id), owner).await?;
    let turns = stored.scan(id, &turns_prefix(id)).await;
    let live = turns
        .iter()
        .filter(|(_, item)| item.owner == owner)
        .filter_map(|(_, item)| item.body.as_ref());
    Some(conversation_items(&conversation, live))
}
