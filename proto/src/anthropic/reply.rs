//! Whole (non-streamed) answers both ways: an Anthropic message as an
//! OpenAI `chat.completion` ([`to_completion`]), and a completion as an
//! Anthropic message ([`to_message`]).

use serde_json::{json, Map, Value};

use super::{finish_reason, stop_reason, usage};

/// An Anthropic message as an OpenAI completion. `created` is the caller's
/// clock in seconds: Anthropic's messages carry no time.
pub fn to_completion(message: &[u8], created: u64) -> Result<Vec<u8>, String> {
    let message: Map<String, Value> = serde_json::from_slice(message).map_err(|e| e.to_string())?;
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return Err("the body is not a Messages API `message`".into());
    }
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut thoughts = Vec::new();
    for block in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(tool_call(block)),
            Some("thinking" | "redacted_thinking") => thoughts.push(block),
            _ => {}
        }
    }
    let mut reply = assistant_message(text, calls);
    super::thinking::add_to_message(&thoughts, &mut reply);
    let stop = message
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let completion = json!({
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [{"index": 0, "message": reply, "logprobs": null, "finish_reason": finish_reason(stop)}],
        "usage": usage(message.get("usage")).openai_details(),
    });
    serde_json::to_vec(&completion).map_err(|e| e.to_string())
}

/// An OpenAI assistant message: its text (`null` when it only calls
/// tools, as OpenAI sends it) and its tool calls.
pub(super) fn assistant_message(text: String, calls: Vec<Value>) -> Value {
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

/// A `tool_use` block as an OpenAI tool call, its input as the JSON text
/// OpenAI's `arguments` carry.
pub(super) fn tool_call(block: &Value) -> Value {
    json!({
        "id": block.get("id"),
        "type": "function",
        "function": {
            "name": block.get("name"),
            "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
        },
    })
}

/// An OpenAI completion (its `model` already the client's alias) as an
/// Anthropic message.
pub fn to_message(completion: &[u8]) -> Result<Vec<u8>, String> {
    let completion: Map<String, Value> =
        serde_json::from_slice(completion).map_err(|e| e.to_string())?;
    let choice = completion
        .get("choices")
        .and_then(|choices| choices.get(0))
        .ok_or("the completion has no choices")?;
    let reply = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    for text in ["content", "refusal"] {
        if let Some(text) = reply
            .get(text)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            content.push(json!({"type": "text", "text": text}));
        }
    }
    for call in reply
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        content.push(tool_use(call));
    }
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop");
    // Some OpenAI-compatible servers finish tool calls with `stop`;
    // Anthropic clients act on `tool_use` alone.
    let called_tools = content.iter().any(|block| block["type"] == "tool_use");
    let stop_reason = match stop_reason(finish) {
        "end_turn" if called_tools => "tool_use",
        reason => reason,
    };
    let usage = completion.get("usage");
    let count = |field: &str| {
        usage
            .and_then(|u| u.get(field))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let message = json!({
        "id": completion.get("id"),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": count("prompt_tokens"), "output_tokens": count("completion_tokens")},
    });
    serde_json::to_vec(&message).map_err(|e| e.to_string())
}

/// An OpenAI tool call as a `tool_use` block. Arguments that are not a
/// JSON object (a model can emit broken JSON) are kept as a string field,
/// so nothing the model said is lost.
pub(super) fn tool_use(call: &Value) -> Value {
    let arguments = call
        .pointer("/function/arguments")
        .and_then(Value::as_str)
        .unwrap_or("");
    let input = match serde_json::from_str(arguments) {
        Ok(input @ Value::Object(_)) => input,
        _ if arguments.trim().is_empty() => json!({}),
        _ => json!({"arguments": arguments}),
    };
    json!({"type": "tool_use", "id": call.get("id"), "name": call.pointer("/function/name"), "input": input})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_message_with_text_and_a_tool_call_becomes_a_completion() {
        let message = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 8}
        });
        let completion = value(to_completion(message.to_string().as_bytes(), 7).unwrap());
        assert_eq!(
            completion,
            json!({
                "id": "msg_1", "object": "chat.completion", "created": 7, "model": "claude-x",
                "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": "Checking.",
                    "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
            })
        );
        assert!(to_completion(br#"{"type":"error"}"#, 0).is_err());
        assert!(to_completion(b"nope", 0).is_err());
    }

    #[test]
    fn thinking_comes_back_as_reasoning_content_with_its_blocks() {
        let thinking =
            json!({"type": "thinking", "thinking": "Sunny, surely.", "signature": "sig"});
        let message = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [thinking, {"type": "text", "text": "Sunny."}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 12, "output_tokens": 8}
        });
        let completion = value(to_completion(message.to_string().as_bytes(), 7).unwrap());
        let reply = &completion["choices"][0]["message"];
        assert_eq!(reply["content"], "Sunny.");
        assert_eq!(reply["reasoning_content"], "Sunny, surely.");
        assert_eq!(reply["thinking_blocks"], json!([thinking]));
    }

    #[test]
    fn a_completion_becomes_a_message_and_back() {
        let completion = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "fast",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Checking.",
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
        });
        let message = to_message(completion.to_string().as_bytes()).unwrap();
        assert_eq!(
            value(message.clone()),
            json!({
                "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "fast",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 8}
            })
        );
        assert_eq!(value(to_completion(&message, 7).unwrap()), completion);
    }

    #[test]
    fn broken_tool_arguments_are_kept() {
        let call = json!({"id": "c", "function": {"name": "f", "arguments": "{\"a\": "}});
        assert_eq!(tool_use(&call)["input"], json!({"arguments": "{\"a\": "}));
        let empty = json!({"id": "c", "function": {"name": "f", "arguments": ""}});
        assert_eq!(tool_use(&empty)["input"], json!({}));
    }
}
