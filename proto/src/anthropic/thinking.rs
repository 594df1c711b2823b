//! Extended thinking both ways, by the convention other gateways use, so
//! a client that works through one works through Chorus:
//!
//! - OpenAI's `reasoning_effort` asks Anthropic for a thinking budget
//!   ([`budget`]): `low` 1,024 tokens, `medium` 2,048, `high` 4,096;
//!   `minimal` and `none` think not at all. Anthropic's `thinking` budget
//!   asks OpenAI for the effort it falls in ([`effort`]).
//! - Anthropic's thinking comes back as the message's `reasoning_content`
//!   (the text) and `thinking_blocks` (the blocks as they came, signatures
//!   included), and an assistant turn's `thinking_blocks` go back to
//!   Anthropic in front of its other blocks, as Anthropic requires for
//!   thinking with tools.

use serde_json::{json, Value};

use crate::chat::RequestError;

/// The fewest thinking tokens Anthropic takes.
pub const MIN_BUDGET: u64 = 1024;

/// The thinking budget for an OpenAI `reasoning_effort`: `None` for no
/// thinking, an error for an effort OpenAI does not define.
pub fn budget(effort: &str) -> Result<Option<u64>, RequestError> {
    match effort {
        "minimal" | "none" => Ok(None),
        "low" => Ok(Some(MIN_BUDGET)),
        "medium" => Ok(Some(2 * MIN_BUDGET)),
        "high" => Ok(Some(4 * MIN_BUDGET)),
        _ => Err(crate::chat::wrong_type(
            "reasoning_effort",
            "`none`, `minimal`, `low`, `medium` or `high`",
        )),
    }
}

/// The OpenAI `reasoning_effort` a thinking budget falls in.
pub fn effort(budget_tokens: u64) -> &'static str {
    match budget_tokens {
        ..2048 => "low",
        2048..4096 => "medium",
        _ => "high",
    }
}

/// Anthropic's `thinking` for an OpenAI request's `reasoning_effort`,
/// and the `max_tokens` to send with it. Anthropic counts thinking within
/// `max_tokens`, as OpenAI counts reasoning within `max_completion_tokens`:
/// a limit the client set is kept, and the budget takes at most half of
/// it, so the answer has the rest (refused when that half is below the
/// minimum); with no limit set, the default is the answer's and the
/// budget comes on top. Sampling settings Anthropic refuses with thinking
/// are refused here, naming them.
pub fn to_thinking(
    effort: &str,
    client_max_tokens: Option<u64>,
    default_max_tokens: u64,
    chat: &serde_json::Map<String, Value>,
) -> Result<Option<(Value, u64)>, RequestError> {
    let Some(wanted) = budget(effort)? else {
        return Ok(None);
    };
    let (budget, max_tokens) = match client_max_tokens {
        Some(max_tokens) => (wanted.min(max_tokens / 2), max_tokens),
        None => (wanted, default_max_tokens.saturating_add(wanted)),
    };
    if budget < MIN_BUDGET {
        return Err(untranslatable(
            "max_completion_tokens",
            format!(
                "Anthropic models think within the output limit: `reasoning_effort` needs it at {} tokens or more",
                2 * MIN_BUDGET
            ),
        ));
    }
    if chat
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t != 1.0)
    {
        return Err(untranslatable(
            "temperature",
            "Anthropic models take no temperature but 1 while thinking (`reasoning_effort`)".into(),
        ));
    }
    let forced = chat
        .get("tool_choice")
        .is_some_and(|choice| choice == "required" || choice.is_object());
    if forced {
        return Err(untranslatable(
            "tool_choice",
            "Anthropic models cannot be made to call a tool while thinking (`reasoning_effort`)"
                .into(),
        ));
    }
    let thinking = json!({"type": "enabled", "budget_tokens": budget});
    Ok(Some((thinking, max_tokens)))
}

/// An assistant turn's thinking blocks, to go back to Anthropic first.
pub fn blocks_of(message: &Value) -> Vec<Value> {
    message["thinking_blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|block| {
            matches!(
                block["type"].as_str(),
                Some("thinking" | "redacted_thinking")
            )
        })
        .cloned()
        .collect()
}

/// What the thinking blocks of an Anthropic message add to an OpenAI
/// message: `reasoning_content`, their text, and `thinking_blocks`, the
/// blocks themselves. Nothing when there are none.
pub fn add_to_message(blocks: &[&Value], message: &mut Value) {
    if blocks.is_empty() {
        return;
    }
    let text: String = blocks
        .iter()
        .filter_map(|block| block["thinking"].as_str())
        .collect();
    message["reasoning_content"] = Value::String(text);
    message["thinking_blocks"] =
        Value::Array(blocks.iter().map(|block| (*block).clone()).collect());
}

fn untranslatable(field: &'static str, reason: String) -> RequestError {
    RequestError::Untranslatable { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(fields: Value) -> serde_json::Map<String, Value> {
        fields.as_object().cloned().unwrap()
    }

    #[test]
    fn efforts_and_budgets_map_both_ways() {
        for (effort_name, tokens) in [("low", 1024), ("medium", 2048), ("high", 4096)] {
            assert_eq!(budget(effort_name).unwrap(), Some(tokens));
            assert_eq!(effort(tokens), effort_name);
        }
        assert_eq!(budget("minimal").unwrap(), None);
        assert!(budget("extreme").is_err());
        assert_eq!(effort(1500), "low");
        assert_eq!(effort(32_000), "high");
    }

    #[test]
    fn thinking_leaves_the_answer_room_or_is_refused() {
        let none = chat(json!({}));
        let thinking = |tokens: u64| json!({"type": "enabled", "budget_tokens": tokens});
        assert_eq!(
            to_thinking("high", Some(10_000), 4096, &none).unwrap(),
            Some((thinking(4096), 10_000))
        );
        assert_eq!(
            to_thinking("high", Some(3_000), 4096, &none).unwrap(),
            Some((thinking(1500), 3_000)),
            "half the client's limit at most"
        );
        assert_eq!(
            to_thinking("high", None, 4096, &none).unwrap(),
            Some((thinking(4096), 8192)),
            "no limit set: the budget comes on top of the default"
        );
        assert_eq!(to_thinking("minimal", Some(10), 4096, &none).unwrap(), None);
        let short = to_thinking("low", Some(2047), 4096, &none).unwrap_err();
        assert_eq!(short.param(), Some("max_completion_tokens"));
        let cold = to_thinking("low", None, 4096, &chat(json!({"temperature": 0.2}))).unwrap_err();
        assert_eq!(cold.param(), Some("temperature"));
        let forced = chat(json!({"tool_choice": "required"}));
        assert_eq!(
            to_thinking("low", None, 4096, &forced).unwrap_err().param(),
            Some("tool_choice")
        );
        let warm = chat(json!({"temperature": 1.0, "tool_choice": "auto"}));
        assert!(to_thinking("low", None, 4096, &warm).unwrap().is_some());
    }

    #[test]
    fn thinking_blocks_ride_the_message_and_come_back() {
        let thinking = json!({"type": "thinking", "thinking": "Let me see.", "signature": "sig"});
        let redacted = json!({"type": "redacted_thinking", "data": "opaque"});
        let mut message = json!({"role": "assistant", "content": "Hi"});
        add_to_message(&[&thinking, &redacted], &mut message);
        assert_eq!(message["reasoning_content"], "Let me see.");
        assert_eq!(blocks_of(&message), [thinking, redacted]);
        let mut plain = json!({"role": "assistant", "content": "Hi"});
        add_to_message(&[], &mut plain);
        assert!(plain.get("reasoning_content").is_none());
    }
}
