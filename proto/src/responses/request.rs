//! A Responses request as an OpenAI chat body, for any upstream that does
//! not speak the Responses API itself: `instructions` becomes the system
//! message, the `input` items become turns (function calls join the
//! assistant turn they belong to, their outputs become `tool` turns), and
//! the parameters move to their chat names.

use serde_json::{json, Map, Value};

use super::object::reasoning_blocks;
use crate::chat::{wrong_type, RequestError};

/// Parameters that mean the same in both APIs, under the same name.
const SAME_NAME: [&str; 9] = [
    "temperature",
    "top_p",
    "user",
    "parallel_tool_calls",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
    "stream",
    "model",
];

/// Parameters of the Responses API with no chat counterpart that change
/// the answer, and why each cannot be translated.
const UNTRANSLATABLE: [(&str, &str); 5] = [
    (
        "background",
        "background responses need the Responses API upstream",
    ),
    ("prompt", "stored prompt templates live on the upstream"),
    (
        "max_tool_calls",
        "chat completions cannot cap built-in tool calls",
    ),
    // The gateway reads the stored ones into `input` before translating:
    // an id still here is not one it holds.
    (
        "conversation",
        "no conversation with this id is stored here for this key",
    ),
    (
        "previous_response_id",
        "no response with this id is stored here for this key",
    ),
];

/// The chat body for a Responses body. Fails with the parameter at fault
/// when the request is malformed or asks for what chat completions cannot
/// do: built-in tools, stored prompts, items by reference.
pub fn to_chat(body: &Map<String, Value>) -> Result<Map<String, Value>, RequestError> {
    for (field, reason) in UNTRANSLATABLE {
        if body.get(field).is_some_and(|value| !is_unset(value)) {
            return Err(untranslatable(field, reason));
        }
    }
    let mut chat = Map::new();
    for field in SAME_NAME {
        if let Some(value) = body.get(field).filter(|value| !value.is_null()) {
            chat.insert(field.to_owned(), value.clone());
        }
    }
    let mut messages = Vec::new();
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(instructions)) => {
            messages.push(json!({"role": "system", "content": instructions}));
        }
        Some(_) => return Err(wrong_type("instructions", "a string")),
    }
    match body.get("input") {
        None | Some(Value::Null) => return Err(RequestError::MissingField("input")),
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for item in items {
                push_item(item, &mut messages)?;
            }
        }
        Some(_) => return Err(wrong_type("input", "a string or an array of items")),
    }
    chat.insert("messages".into(), Value::Array(messages));
    if chat.get("stream") == Some(&Value::Bool(true)) {
        // The response's usage comes from the stream's usage chunk.
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(max) = body.get("max_output_tokens").filter(|v| !v.is_null()) {
        let max = max
            .as_u64()
            .ok_or_else(|| wrong_type("max_output_tokens", "a positive integer"))?;
        chat.insert("max_completion_tokens".into(), max.into());
    }
    if let Some(top) = body.get("top_logprobs").filter(|v| !v.is_null()) {
        chat.insert("logprobs".into(), Value::Bool(true));
        chat.insert("top_logprobs".into(), top.clone());
    }
    if let Some(effort) = body
        .get("reasoning")
        .and_then(|reasoning| reasoning.get("effort"))
        .filter(|v| !v.is_null())
    {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(text) = body.get("text").filter(|v| !v.is_null()) {
        text_options(text, &mut chat)?;
    }
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        let tools = tools
            .as_array()
            .ok_or_else(|| wrong_type("tools", "an array"))?;
        let tools = tools.iter().map(chat_tool).collect::<Result<_, _>>()?;
        chat.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".into(), tool_choice(choice)?);
    }
    Ok(chat)
}

/// A Responses body that [`to_chat`] cannot translate, as a chat body of
/// its text alone: the instructions, each item's text, the output limit
/// and `stream`. Good for estimating tokens and nothing else: such a
/// request only ever passes through to upstreams that speak the API.
pub fn to_chat_text(body: &Map<String, Value>) -> Map<String, Value> {
    let mut chat = Map::new();
    for (from, to) in [
        ("model", "model"),
        ("stream", "stream"),
        ("max_output_tokens", "max_completion_tokens"),
    ] {
        if let Some(value) = body.get(from) {
            chat.insert(to.into(), value.clone());
        }
    }
    let mut text = String::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        text.push_str(instructions);
    }
    match body.get("input") {
        Some(Value::String(input)) => text.push_str(input),
        Some(Value::Array(items)) => items.iter().for_each(|item| item_text(item, &mut text)),
        _ => {}
    }
    chat.insert(
        "messages".into(),
        json!([{"role": "user", "content": text}]),
    );
    if chat.get("stream") == Some(&Value::Bool(true)) {
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    chat
}

/// Appends an input item's text: its content parts', a call's arguments,
/// a call output's.
fn item_text(item: &Value, out: &mut String) {
    for field in ["content", "output"] {
        crate::chat::content_text(item.get(field), out);
    }
    if let Some(arguments) = item.get("arguments").and_then(Value::as_str) {
        out.push_str(arguments);
    }
}

/// A parameter left at its "off" value, as SDKs often send them.
fn is_unset(value: &Value) -> bool {
    matches!(value, Value::Null | Value::Bool(false))
}

fn untranslatable(field: &'static str, reason: &str) -> RequestError {
    RequestError::Untranslatable {
        field,
        reason: reason.to_owned(),
    }
}

/// One input item as chat turns: a message, a function call (joined to
/// the assistant turn before it), a function call's output, or the
/// thinking blocks a reasoning item carries. Items by reference are not
/// looked up.
fn push_item(item: &Value, messages: &mut Vec<Value>) -> Result<(), RequestError> {
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        // `type` may be left out of a message (an "easy input message").
        None | Some("message") => {
            let role = item.get("role").and_then(Value::as_str);
            let role = match role {
                Some("user") => "user",
                Some("assistant") => "assistant",
                Some("system" | "developer") => "system",
                _ => {
                    return Err(wrong_type(
                        "input",
                        "messages with the role `user`, `assistant`, `system` or `developer`",
                    ))
                }
            };
            let content = message_content(item.get("content"), role)?;
            match messages.last_mut() {
                // The answer its reasoning item opened.
                Some(last) if role == "assistant" && only_thinking(last) => {
                    last["content"] = content;
                }
                _ => messages.push(json!({"role": role, "content": content})),
            }
        }
        Some("function_call") => {
            let field = |name: &str| item.get(name).and_then(Value::as_str);
            let (Some(call_id), Some(name)) = (field("call_id"), field("name")) else {
                return Err(wrong_type(
                    "input",
                    "function calls with a `call_id` and a `name`",
                ));
            };
            let call = json!({
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": field("arguments").unwrap_or("{}")},
            });
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" => {
                    if !last["tool_calls"].is_array() {
                        last["tool_calls"] = json!([]);
                    }
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        Some("function_call_output") => {
            let call_id = item.get("call_id").and_then(Value::as_str);
            let call_id = call_id
                .ok_or_else(|| wrong_type("input", "function call outputs with a `call_id`"))?;
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts_text(parts, "function call outputs")?,
                _ => {
                    return Err(wrong_type(
                        "input",
                        "function call outputs with an `output`",
                    ))
                }
            };
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        // Reasoning items only tune the upstream, but those that carry
        // thinking blocks (Anthropic's, which it wants back) open the
        // assistant turn with them.
        Some("reasoning") => {
            let blocks = reasoning_blocks(item);
            if !blocks.is_empty() {
                messages
                    .push(json!({"role": "assistant", "content": null, "thinking_blocks": blocks}));
            }
        }
        Some("item_reference") => {
            return Err(untranslatable(
                "input",
                "items by reference are not looked up by this gateway: send the item itself",
            ))
        }
        Some(other) => {
            return Err(RequestError::Untranslatable {
                field: "input",
                reason: format!("`{other}` items have no chat completions counterpart"),
            })
        }
    }
    Ok(())
}

/// Whether `message` is an assistant turn of thinking blocks alone, so far.
fn only_thinking(message: &Value) -> bool {
    message["role"] == "assistant"
        && message["content"].is_null()
        && message.get("tool_calls").is_none()
        && message.get("thinking_blocks").is_some()
}

/// A message's content in chat terms: text, images and files for a user,
/// text alone for the others.
fn message_content(content: Option<&Value>, role: &str) -> Result<Value, RequestError> {
    match content {
        Some(Value::String(text)) => Ok(Value::String(text.clone())),
        Some(Value::Array(parts)) if role == "user" => parts
            .iter()
            .map(user_part)
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Some(Value::Array(parts)) => parts_text(parts, "this role's messages").map(Value::String),
        _ => Err(wrong_type(
            "input",
            "messages whose `content` is a string or an array of parts",
        )),
    }
}

/// A user's content part as a chat content part.
fn user_part(part: &Value) -> Result<Value, RequestError> {
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text") => Ok(json!({"type": "text", "text": part["text"]})),
        Some("input_image") => {
            let Some(url) = part.get("image_url").filter(|url| url.is_string()) else {
                return Err(untranslatable(
                    "input",
                    "images by `file_id` are files on the upstream: send an `image_url`",
                ));
            };
            let mut image = json!({"url": url});
            if let Some(detail) = part.get("detail").filter(|d| !d.is_null()) {
                image["detail"] = detail.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        Some("input_file") => {
            let mut file = Map::new();
            for field in ["file_data", "file_id", "filename"] {
                if let Some(value) = part.get(field).filter(|v| !v.is_null()) {
                    file.insert(field.to_owned(), value.clone());
                }
            }
            Ok(json!({"type": "file", "file": file}))
        }
        _ => Err(wrong_type(
            "input",
            "content parts of type `input_text`, `input_image` or `input_file`",
        )),
    }
}

/// The text of content parts that may only hold text.
fn parts_text(parts: &[Value], whose: &str) -> Result<String, RequestError> {
    let mut text = String::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text") => {
                text.push_str(part["text"].as_str().unwrap_or(""));
            }
            Some("refusal") => text.push_str(part["refusal"].as_str().unwrap_or("")),
            _ => {
                return Err(RequestError::Untranslatable {
                    field: "input",
                    reason: format!("chat completions take only text in {whose}"),
                })
            }
        }
    }
    Ok(text)
}

/// `text.format` as `response_format`, and `text.verbosity` as chat's
/// `verbosity`.
fn text_options(text: &Value, chat: &mut Map<String, Value>) -> Result<(), RequestError> {
    if let Some(verbosity) = text.get("verbosity").filter(|v| !v.is_null()) {
        chat.insert("verbosity".into(), verbosity.clone());
    }
    let Some(format) = text.get("format").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let response_format = match format.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(()),
        Some("json_object") => json!({"type": "json_object"}),
        Some("json_schema") => {
            let mut schema = Map::new();
            for field in ["name", "schema", "strict", "description"] {
                if let Some(value) = format.get(field).filter(|v| !v.is_null()) {
                    schema.insert(field.to_owned(), value.clone());
                }
            }
            json!({"type": "json_schema", "json_schema": schema})
        }
        _ => {
            return Err(wrong_type(
                "text.format",
                "a format of type `text`, `json_object` or `json_schema`",
            ))
        }
    };
    chat.insert("response_format".into(), response_format);
    Ok(())
}

/// A function tool as a chat tool. Built-in tools (web search, file
/// search, code interpreter, …) run on OpenAI's side and have none.
fn chat_tool(tool: &Value) -> Result<Value, RequestError> {
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => {
            let mut function = Map::new();
            for field in ["name", "description", "parameters", "strict"] {
                if let Some(value) = tool.get(field).filter(|v| !v.is_null()) {
                    function.insert(field.to_owned(), value.clone());
                }
            }
            if !function.contains_key("name") {
                return Err(wrong_type("tools", "function tools with a `name`"));
            }
            Ok(json!({"type": "function", "function": function}))
        }
        Some(other) => Err(RequestError::Untranslatable {
            field: "tools",
            reason: format!(
                "the built-in tool `{other}` runs on OpenAI's Responses API: only function tools translate"
            ),
        }),
        None => Err(wrong_type("tools", "tools with a `type`")),
    }
}

/// `tool_choice` in chat terms: the same words, or a function named the
/// chat way.
fn tool_choice(choice: &Value) -> Result<Value, RequestError> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(_) if choice["type"] == "function" && choice["name"].is_string() => {
            Ok(json!({"type": "function", "function": {"name": choice["name"]}}))
        }
        _ => Err(wrong_type(
            "tool_choice",
            "`auto`, `none`, `required` or a function",
        )),
    }
}

#[cfg(test)]
mod tests;
