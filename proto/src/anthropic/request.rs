//! Requests both ways: an OpenAI chat body as a Messages body for an
//! `anthropic` upstream ([`to_messages`]), and a Messages body as an OpenAI
//! chat body for `POST /v1/messages` ([`to_chat`]).
//!
//! The two formats differ in where things live: OpenAI puts the system
//! prompt among the messages and tool results in their own `tool` turns;
//! Anthropic puts the system prompt beside the messages, tool results in
//! the next user turn, and wants user and assistant turns to alternate.

use serde_json::{json, Map, Value};

use super::{reply, thinking};
use crate::chat::{wrong_type, RequestError};

/// An OpenAI chat body (its `model` already the upstream's) as a Messages
/// body. `default_max_tokens` fills `max_tokens`, which Anthropic requires
/// and OpenAI clients often leave out.
pub fn to_messages(
    chat: &Map<String, Value>,
    default_max_tokens: u64,
) -> Result<Map<String, Value>, RequestError> {
    let mut out = Map::new();
    if let Some(model) = chat.get("model") {
        out.insert("model".into(), model.clone());
    }
    let mut system = Vec::new();
    let mut turns = Turns::default();
    for message in array(chat.get("messages")) {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content");
        match role {
            "system" | "developer" => system.extend(text_blocks(content, "messages")?),
            "user" => turns.push("user", user_blocks(content)?),
            "assistant" => turns.push("assistant", assistant_blocks(message)?),
            "tool" => {
                let id = message.get("tool_call_id").and_then(Value::as_str);
                let id = id
                    .ok_or_else(|| wrong_type("messages", "tool messages with a `tool_call_id`"))?;
                let mut text = String::new();
                crate::chat::content_text(content, &mut text);
                let result = json!({"type": "tool_result", "tool_use_id": id, "content": text});
                let marked = array(content)
                    .iter()
                    .rev()
                    .find(|part| part.get("cache_control").is_some());
                turns.push("user", vec![cached(result, marked.unwrap_or(&Value::Null))]);
            }
            other => {
                return Err(untranslatable(
                    "messages",
                    format!("role `{other}` has no equivalent in the Messages API"),
                ))
            }
        }
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(turns.0));
    let client_max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|field| chat.get(*field).and_then(Value::as_u64));
    let mut max_tokens = client_max_tokens.unwrap_or(default_max_tokens);
    if let Some(effort) = chat.get("reasoning_effort").filter(|e| !e.is_null()) {
        let effort = effort
            .as_str()
            .ok_or_else(|| wrong_type("reasoning_effort", "a string"))?;
        let asked = thinking::to_thinking(effort, client_max_tokens, default_max_tokens, chat)?;
        if let Some((thinking, with_room)) = asked {
            out.insert("thinking".into(), thinking);
            max_tokens = with_room;
        }
    }
    out.insert("max_tokens".into(), max_tokens.into());
    for field in ["temperature", "top_p"] {
        if let Some(value) = chat.get(field).filter(|value| !value.is_null()) {
            out.insert(field.into(), value.clone());
        }
    }
    if chat
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t > 1.0)
    {
        let reason = "Anthropic models take a temperature from 0 to 1".into();
        return Err(untranslatable("temperature", reason));
    }
    if chat
        .get("response_format")
        .and_then(|format| format.get("type"))
        .is_some_and(|kind| kind != "text")
    {
        let reason =
            "the Messages API has no JSON mode: describe the format in the prompt, or use a tool"
                .into();
        return Err(untranslatable("response_format", reason));
    }
    if chat.get("logprobs") == Some(&Value::Bool(true)) {
        let reason = "the Messages API returns no log probabilities".into();
        return Err(untranslatable("logprobs", reason));
    }
    match chat.get("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if chat.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
    }
    if chat.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(untranslatable(
            "n",
            "the Messages API answers with one choice".into(),
        ));
    }
    let tools = array(chat.get("tools"));
    if !tools.is_empty() {
        let tools = tools.iter().map(messages_tool).collect::<Result<_, _>>()?;
        out.insert("tools".into(), Value::Array(tools));
        let mut choice = match chat.get("tool_choice") {
            None | Some(Value::Null) => json!({"type": "auto"}),
            Some(Value::String(choice)) => match choice.as_str() {
                "auto" => json!({"type": "auto"}),
                "required" => json!({"type": "any"}),
                "none" => json!({"type": "none"}),
                _ => {
                    return Err(wrong_type(
                        "tool_choice",
                        "`auto`, `required`, `none` or a function",
                    ))
                }
            },
            Some(choice) => match choice.pointer("/function/name") {
                Some(name) => json!({"type": "tool", "name": name}),
                None => {
                    return Err(wrong_type(
                        "tool_choice",
                        "`auto`, `required`, `none` or a function",
                    ))
                }
            },
        };
        let calls_tools = choice["type"] != "none";
        if calls_tools && chat.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
        out.insert("tool_choice".into(), choice);
    }
    if let Some(user) = chat.get("user").filter(|user| user.is_string()) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(out)
}

/// A Messages body as an OpenAI chat body, checked as one. A streamed
/// request asks for usage, which Anthropic clients always get.
pub fn to_chat(messages: &Map<String, Value>) -> Result<Map<String, Value>, RequestError> {
    let mut out = Map::new();
    match messages.get("model") {
        Some(Value::String(model)) => out.insert("model".into(), model.clone().into()),
        None | Some(Value::Null) => return Err(RequestError::MissingField("model")),
        Some(_) => return Err(wrong_type("model", "a non-empty string")),
    };
    let mut chat_messages = Vec::new();
    match messages.get("system") {
        None | Some(Value::Null) => {}
        Some(system) => {
            let mut text = String::new();
            for block in text_blocks(Some(system), "system")? {
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(block["text"].as_str().unwrap_or(""));
            }
            chat_messages.push(json!({"role": "system", "content": text}));
        }
    }
    let turns = match messages.get("messages") {
        None | Some(Value::Null) => return Err(RequestError::MissingField("messages")),
        Some(Value::Array(turns)) => turns,
        Some(_) => return Err(wrong_type("messages", "an array")),
    };
    for turn in turns {
        let content = match turn.get("content") {
            Some(Value::String(text)) => vec![json!({"type": "text", "text": text})],
            Some(Value::Array(blocks)) => blocks.clone(),
            _ => {
                return Err(wrong_type(
                    "messages",
                    "turns with a string or array `content`",
                ))
            }
        };
        match turn.get("role").and_then(Value::as_str) {
            Some("user") => chat_messages.extend(user_messages(&content)?),
            Some("assistant") => chat_messages.push(assistant_message(&content)?),
            _ => {
                return Err(wrong_type(
                    "messages",
                    "turns with role `user` or `assistant`",
                ))
            }
        }
    }
    out.insert("messages".into(), Value::Array(chat_messages));
    if let Some(max_tokens) = messages.get("max_tokens").filter(|value| !value.is_null()) {
        if !max_tokens.is_u64() {
            return Err(wrong_type("max_tokens", "a non-negative integer"));
        }
        out.insert("max_tokens".into(), max_tokens.clone());
    }
    for field in ["temperature", "top_p"] {
        if let Some(value) = messages.get(field).filter(|value| !value.is_null()) {
            out.insert(field.into(), value.clone());
        }
    }
    if let Some(stops) = messages
        .get("stop_sequences")
        .filter(|value| !value.is_null())
    {
        out.insert("stop".into(), stops.clone());
    }
    if let Some(stream) = messages.get("stream").filter(|value| !value.is_null()) {
        out.insert("stream".into(), stream.clone());
        if stream.as_bool() == Some(true) {
            out.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    let tools = array(messages.get("tools"));
    if !tools.is_empty() {
        let tools = tools.iter().map(chat_tool).collect::<Result<_, _>>()?;
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = messages.get("tool_choice").filter(|value| !value.is_null()) {
        let chat_choice = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice.get("name")}}),
            _ => {
                return Err(wrong_type(
                    "tool_choice",
                    "of type `auto`, `any`, `tool` or `none`",
                ))
            }
        };
        out.insert("tool_choice".into(), chat_choice);
        if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if let Some(user) = messages
        .get("metadata")
        .and_then(|metadata| metadata.get("user_id"))
        .filter(|user| user.is_string())
    {
        out.insert("user".into(), user.clone());
    }
    match messages.get("thinking") {
        None | Some(Value::Null) => {}
        Some(config) => match config.get("type").and_then(Value::as_str) {
            Some("enabled") => {
                let budget = config.get("budget_tokens").and_then(Value::as_u64);
                let budget = budget
                    .ok_or_else(|| wrong_type("thinking", "enabled with a `budget_tokens`"))?;
                out.insert("reasoning_effort".into(), thinking::effort(budget).into());
            }
            Some("disabled") => {}
            _ => return Err(wrong_type("thinking", "of type `enabled` or `disabled`")),
        },
    }
    Ok(out)
}

/// A Messages body that [`to_chat`] cannot translate, as an OpenAI chat
/// body of its text alone: the system prompt, each turn's text (tool
/// results' and documents' text too), `max_tokens` and `stream`. Good for
/// estimating tokens and nothing else: such a request only ever passes
/// through, untranslated, to Anthropic upstreams.
pub fn to_chat_text(messages: &Map<String, Value>) -> Map<String, Value> {
    let mut chat = Map::new();
    for field in ["model", "max_tokens", "stream"] {
        if let Some(value) = messages.get(field) {
            chat.insert(field.into(), value.clone());
        }
    }
    let mut text = String::new();
    blocks_text(messages.get("system"), &mut text);
    let mut turns = vec![json!({"role": "system", "content": text})];
    for turn in array(messages.get("messages")) {
        let mut text = String::new();
        blocks_text(turn.get("content"), &mut text);
        let role = match turn.get("role").and_then(Value::as_str) {
            Some("assistant") => "assistant",
            _ => "user",
        };
        turns.push(json!({"role": role, "content": text}));
    }
    chat.insert("messages".into(), Value::Array(turns));
    if chat.get("stream") == Some(&Value::Bool(true)) {
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    chat
}

/// Appends the text of a string or of blocks, nested blocks included.
fn blocks_text(content: Option<&Value>, out: &mut String) {
    match content {
        Some(Value::String(text)) => out.push_str(text),
        Some(Value::Array(blocks)) => {
            for block in blocks {
                for field in ["text", "thinking"] {
                    if let Some(text) = block.get(field).and_then(Value::as_str) {
                        out.push_str(text);
                    }
                }
                if let Some(input) = block.get("input").filter(|input| input.is_object()) {
                    out.push_str(&input.to_string());
                }
                blocks_text(block.get("content"), out);
            }
        }
        _ => {}
    }
}

/// Messages turns, with consecutive turns of one role merged: Anthropic
/// wants them to alternate, and OpenAI's tool results, one message each,
/// belong in a single user turn.
#[derive(Default)]
struct Turns(Vec<Value>);

impl Turns {
    fn push(&mut self, role: &str, blocks: Vec<Value>) {
        if blocks.is_empty() {
            return;
        }
        if let Some(last) = self.0.last_mut().filter(|last| last["role"] == role) {
            if let Some(Value::Array(content)) = last.get_mut("content") {
                content.extend(blocks);
                return;
            }
        }
        self.0.push(json!({"role": role, "content": blocks}));
    }
}

fn array(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

fn untranslatable(field: &'static str, reason: String) -> RequestError {
    RequestError::Untranslatable { field, reason }
}

/// A string, or an array of text parts (blocks), as text blocks. Blank
/// text is left out: Anthropic refuses empty text blocks.
fn text_blocks(content: Option<&Value>, field: &'static str) -> Result<Vec<Value>, RequestError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(text @ Value::String(_)) => std::slice::from_ref(text),
        Some(Value::Array(parts)) => parts,
        Some(_) => return Err(wrong_type(field, "text or an array of text parts")),
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        if let Some(block) = text_block(
            part.as_str()
                .map_or_else(|| part.get("text"), |_| Some(part)),
            field,
        )? {
            blocks.push(cached(block, part));
        }
    }
    Ok(blocks)
}

/// `block` with the `cache_control` of the OpenAI part it came from, if
/// any: the convention gateways accept for Anthropic's prompt caching.
fn cached(mut block: Value, part: &Value) -> Value {
    if let Some(control) = part.get("cache_control").filter(|c| c.is_object()) {
        block["cache_control"] = control.clone();
    }
    block
}

/// A text block for `text`, `None` when it is blank.
fn text_block(text: Option<&Value>, field: &'static str) -> Result<Option<Value>, RequestError> {
    match text {
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(json!({"type": "text", "text": text}))),
        _ => Err(wrong_type(field, "text or an array of text parts")),
    }
}

/// An OpenAI user message's content as Messages blocks: text and images.
fn user_blocks(content: Option<&Value>) -> Result<Vec<Value>, RequestError> {
    let Some(Value::Array(parts)) = content else {
        return text_blocks(content, "messages");
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                let block = text_block(part.get("text"), "messages")?;
                blocks.extend(block.map(|block| cached(block, part)));
            }
            Some("image_url") => {
                let url = part.pointer("/image_url/url").and_then(Value::as_str);
                let url = url.ok_or_else(|| wrong_type("messages", "image parts with a `url`"))?;
                let block = json!({"type": "image", "source": image_source(url)});
                blocks.push(cached(block, part));
            }
            other => {
                return Err(untranslatable(
                    "messages",
                    format!(
                        "content parts of type `{}` have no equivalent in the Messages API",
                        other.unwrap_or("?")
                    ),
                ))
            }
        }
    }
    Ok(blocks)
}

/// A `data:` URL as a base64 source, any other URL as a URL source.
fn image_source(url: &str) -> Value {
    let inline = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"));
    match inline {
        Some((media_type, data)) => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        None => json!({"type": "url", "url": url}),
    }
}

/// An OpenAI assistant message as Messages blocks: the thinking blocks
/// it carries back, its text, then a `tool_use` block per tool call.
fn assistant_blocks(message: &Value) -> Result<Vec<Value>, RequestError> {
    let mut blocks = thinking::blocks_of(message);
    blocks.extend(text_blocks(message.get("content"), "messages")?);
    blocks.extend(array(message.get("tool_calls")).iter().map(reply::tool_use));
    Ok(blocks)
}

/// An OpenAI function tool as a Messages tool.
fn messages_tool(tool: &Value) -> Result<Value, RequestError> {
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(untranslatable(
            "tools",
            "only `function` tools have an equivalent".into(),
        ));
    }
    let function = tool
        .get("function")
        .ok_or(RequestError::MissingField("tools"))?;
    let mut out = json!({
        "name": function.get("name"),
        "input_schema": function
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    });
    if let Some(description) = function.get("description").filter(|d| !d.is_null()) {
        out["description"] = description.clone();
    }
    Ok(cached(out, tool))
}

/// A Messages tool as an OpenAI function tool. Anthropic's server tools
/// (web search, code execution…) run on Anthropic's side and have none.
fn chat_tool(tool: &Value) -> Result<Value, RequestError> {
    if tool
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind != "custom")
    {
        return Err(untranslatable(
            "tools",
            "Anthropic server tools cannot be sent to other providers".into(),
        ));
    }
    let mut function = json!({
        "name": tool.get("name"),
        "parameters": tool.get("input_schema"),
    });
    if let Some(description) = tool.get("description").filter(|d| !d.is_null()) {
        function["description"] = description.clone();
    }
    Ok(json!({"type": "function", "function": function}))
}

/// A Messages user turn as OpenAI messages: a `tool` message per tool
/// result, in order, then a user message with the rest (text and images).
fn user_messages(blocks: &[Value]) -> Result<Vec<Value>, RequestError> {
    let mut messages = Vec::new();
    let mut parts = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({"type": "text", "text": block.get("text")})),
            Some("image") => {
                let source = block.get("source").unwrap_or(&Value::Null);
                let url = match source.get("type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        source["media_type"].as_str().unwrap_or("image/png"),
                        source["data"].as_str().unwrap_or("")
                    ),
                    Some("url") => source["url"].as_str().unwrap_or("").to_owned(),
                    _ => return Err(wrong_type("messages", "images with a base64 or url source")),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("tool_result") => {
                let mut text = String::new();
                if block.get("is_error") == Some(&Value::Bool(true)) {
                    text.push_str("Error: ");
                }
                let content = block.get("content");
                let only_text = array(content).iter().all(|part| part["type"] == "text");
                if !only_text {
                    let reason =
                        "tool results other than text have no equivalent in chat messages".into();
                    return Err(untranslatable("messages", reason));
                }
                crate::chat::content_text(content, &mut text);
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id"),
                    "content": text,
                }));
            }
            other => return Err(no_chat_equivalent(other)),
        }
    }
    let content = match parts.as_slice() {
        [] => None,
        // One text block is sent as plain text, which every
        // OpenAI-compatible server reads.
        [only] if only["type"] == "text" => Some(only["text"].clone()),
        _ => Some(Value::Array(parts)),
    };
    if let Some(content) = content {
        messages.push(json!({"role": "user", "content": content}));
    }
    Ok(messages)
}

/// A Messages assistant turn as an OpenAI assistant message. Thinking
/// blocks are signed for Anthropic alone and are dropped.
fn assistant_message(blocks: &[Value]) -> Result<Value, RequestError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(reply::tool_call(block)),
            Some("thinking" | "redacted_thinking") => {}
            other => return Err(no_chat_equivalent(other)),
        }
    }
    Ok(reply::assistant_message(text, calls))
}

/// A block Chorus cannot carry: every request is routed as an OpenAI
/// chat request, which has no field for it.
fn no_chat_equivalent(kind: Option<&str>) -> RequestError {
    let reason = format!(
        "content blocks of type `{}` have no equivalent in the chat format Chorus routes requests in",
        kind.unwrap_or("?")
    );
    untranslatable("messages", reason)
}

#[cfg(test)]
mod tests;
