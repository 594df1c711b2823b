//! What the Responses API stores, under which keys and places.
//!
//! - A response: key `response.<id>`, place its id; body `{"response":
//!   <the response object>, "input": [<every input item it answered,
//!   those it continued included>]}`. Continuing it takes one read.
//! - A conversation: key `conversation.<id>`, place its id; body
//!   `{"conversation": <the conversation object>, "items": [<the items it
//!   was made with>]}`.
//! - A turn of a conversation: key `conversation.<id>.turn.<ms, 20
//!   digits>.<response id>`, place the conversation's id, so it lives
//!   beside it and one scan reads the conversation in order; body
//!   `{"items": [<the turn's own input items, then its output>]}`.

use serde_json::{json, Value};

/// Whether a client-given id can name a stored item: ids are made of
/// letters, digits, `_` and `-`, so keys built from them stay unambiguous.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

pub fn response_key(id: &str) -> String {
    format!("response.{id}")
}

pub fn conversation_key(id: &str) -> String {
    format!("conversation.{id}")
}

pub fn turns_prefix(conversation_id: &str) -> String {
    format!("conversation.{conversation_id}.turn.")
}

pub fn turn_key(conversation_id: &str, created_ms: u64, response_id: &str) -> String {
    format!(
        "{}{created_ms:020}.{response_id}",
        turns_prefix(conversation_id)
    )
}

/// When the turn under `key` of conversation `conversation_id` was
/// stored (ms).
pub fn turn_ms(conversation_id: &str, key: &str) -> Option<u64> {
    let rest = key.strip_prefix(&turns_prefix(conversation_id))?;
    rest.get(..20)?.parse().ok()
}

/// A fresh id: `prefix`, `_` and 128 random bits in hex.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A Responses `input` as a list of items: a string is one user message.
pub fn input_items(input: &Value) -> Vec<Value> {
    match input {
        Value::String(text) => vec![json!({"type": "message", "role": "user", "content": text})],
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    }
}

/// A response's output items.
pub fn output_items(response: &Value) -> Vec<Value> {
    response["output"].as_array().cloned().unwrap_or_default()
}

pub fn response_body(response: Value, input: Vec<Value>) -> Value {
    json!({"response": response, "input": input})
}

/// What a response continuing the stored one (`body`) starts from: the
/// input it answered, then its output.
pub fn response_history(body: &Value) -> Vec<Value> {
    let mut items = body["input"].as_array().cloned().unwrap_or_default();
    items.extend(output_items(&body["response"]));
    items
}

pub fn conversation_body(conversation: Value, items: Vec<Value>) -> Value {
    json!({"conversation": conversation, "items": items})
}

pub fn turn_body(items: Vec<Value>) -> Value {
    json!({"items": items})
}

/// A conversation's items in order: those it was made with, then each
/// live turn's.
pub fn conversation_items<'a>(
    conversation: &Value,
    turns: impl IntoIterator<Item = &'a Value>,
) -> Vec<Value> {
    let mut items = conversation["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for turn in turns {
        items.extend(turn["items"].as_array().cloned().unwrap_or_default());
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_break_a_key_are_refused() {
        assert!(valid_id("resp_0123abcdef"));
        assert!(valid_id(&new_id("conv")));
        for bad in ["", "resp.1", "resp/1", "resp 1", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn turns_sort_by_time_under_their_conversation() {
        let early = turn_key("conv_1", 999, "resp_b");
        let late = turn_key("conv_1", 1_000, "resp_a");
        assert!(early < late);
        assert!(early.starts_with(&turns_prefix("conv_1")));
        assert!(!turn_key("conv_10", 1, "r").starts_with(&turns_prefix("conv_1")));
        assert_eq!(turn_ms("conv_1", &late), Some(1_000));
        assert_eq!(turn_ms("conv_2", &late), None);
    }

    #[test]
    fn a_continuation_starts_from_the_input_then_the_output() {
        let body = response_body(
            json!({"output": [{"type": "message", "role": "assistant"}]}),
            input_items(&json!("hello")),
        );
        let history = response_history(&body);
        assert_eq!(history.len(), 2);
        assert_eq!(history[0]["content"], "hello");
        assert_eq!(history[1]["role"], "assistant");
        let conversation = conversation_body(json!({"id": "conv_1"}), input_items(&json!("a")));
        let turn = turn_body(vec![json!({"n": 1}), json!({"n": 2})]);
        assert_eq!(conversation_items(&conversation, [&turn]).len(), 3);
    }
}
