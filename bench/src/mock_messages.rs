//! What the mock upstream's Messages API does beyond the translated mock
//! completion, so a gateway's pass-through can be checked against it:
//! requests checked as strictly as Anthropic checks them, extended
//! thinking (a signed `thinking` block before the answer, and the signed
//! blocks required back before a tool result), and prompt caching (a
//! prefix up to a `cache_control` breakpoint is written the first time
//! it is seen and read every time after, and usage says so).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Map, Value};

/// Top-level fields the Messages API takes.
const FIELDS: [&str; 18] = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "context_management",
    "container",
    "mcp_servers",
    "service_tier",
    "output_format",
];

/// Bytes of prompt the mock counts as one token.
const BYTES_PER_TOKEN: usize = 4;

/// The text of the mock's thinking, and the signature it signs it with.
pub const THINKING: &str = "The user wants a short answer; a tool may help.";
pub const SIGNATURE: &str = "bW9jay1zaWduYXR1cmU=";

/// What Anthropic refuses: unknown top-level fields, no `max_tokens`, a
/// thinking budget below 1024 or not below `max_tokens`, turns that do not
/// alternate from `user`, unknown block types, blank text (in the system
/// prompt too), thinking blocks without their signature, tool results that
/// answer no tool use of the turn before, tool inputs that are not
/// objects, and — with thinking on — a tool-using assistant turn that
/// does not start with its thinking block.
pub fn check(messages: &Map<String, Value>) -> Result<(), String> {
    if let Some(extra) = messages.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(format!("{extra}: Extra inputs are not permitted"));
    }
    let Some(max_tokens) = messages.get("max_tokens").and_then(Value::as_u64) else {
        return Err("max_tokens: Field required".into());
    };
    let thinking = thinking_on(messages);
    if thinking {
        let budget = messages["thinking"]["budget_tokens"].as_u64().unwrap_or(0);
        if budget < 1024 || budget >= max_tokens {
            return Err("thinking.budget_tokens: must be ≥ 1024 and less than max_tokens".into());
        }
    }
    let blank = |block: &Value| block["text"].as_str().is_none_or(|t| t.trim().is_empty());
    if let Some(Value::Array(system)) = messages.get("system") {
        if system
            .iter()
            .any(|block| block["type"] != "text" || blank(block))
        {
            return Err("system: text content blocks must be non-empty".into());
        }
    }
    let turns = messages
        .get("messages")
        .and_then(Value::as_array)
        .filter(|turns| !turns.is_empty())
        .ok_or("messages: at least one message is required")?;
    let mut tool_uses: Vec<&str> = Vec::new();
    for (index, turn) in turns.iter().enumerate() {
        let expected = if index % 2 == 0 { "user" } else { "assistant" };
        if turn["role"] != expected {
            return Err(format!(
                "messages.{index}.role: roles must alternate, starting with `user`"
            ));
        }
        let blocks = match &turn["content"] {
            Value::String(_) => continue,
            Value::Array(blocks) => blocks,
            _ => {
                return Err(format!(
                    "messages.{index}.content: must be a string or blocks"
                ))
            }
        };
        let mut used = Vec::new();
        for block in blocks {
            match (expected, block["type"].as_str()) {
                (_, Some("text")) if !blank(block) => {}
                ("user", Some("image" | "document" | "search_result")) => {}
                ("user", Some("tool_result")) => {
                    let id = block["tool_use_id"].as_str().unwrap_or("");
                    if !tool_uses.contains(&id) {
                        return Err(format!(
                            "messages.{index}: tool_result `{id}` answers no tool_use of the previous turn"
                        ));
                    }
                }
                ("assistant", Some("tool_use")) if block["input"].is_object() => {
                    used.push(block["id"].as_str().unwrap_or(""));
                }
                ("assistant", Some("thinking")) if block["signature"].is_string() => {}
                ("assistant", Some("redacted_thinking")) if block["data"].is_string() => {}
                ("assistant", Some("server_tool_use" | "web_search_tool_result")) => {}
                (_, kind) => {
                    return Err(format!("messages.{index}: invalid content block {kind:?}"))
                }
            }
        }
        let opens_with_thinking = blocks.first().is_some_and(|block| {
            matches!(
                block["type"].as_str(),
                Some("thinking" | "redacted_thinking")
            )
        });
        if thinking && !used.is_empty() && !opens_with_thinking {
            return Err(format!(
                "messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block"
            ));
        }
        tool_uses = used;
    }
    Ok(())
}

/// Whether the request turned extended thinking on.
pub fn thinking_on(messages: &Map<String, Value>) -> bool {
    messages
        .get("thinking")
        .is_some_and(|thinking| thinking["type"] == "enabled")
}

/// The prefixes the mock has cached, by hash.
#[derive(Debug, Default)]
pub struct PromptCache(Mutex<HashSet<u64>>);

/// Prompt tokens a request read from or wrote to the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUse {
    pub read: u64,
    pub written: u64,
}

impl PromptCache {
    /// The request's prefix up to its last `cache_control` breakpoint
    /// (tools, then system, then messages, as Anthropic orders them):
    /// read when seen before, written otherwise; nothing without one.
    pub fn use_for(&self, messages: &Map<String, Value>) -> CacheUse {
        let mut prefix = String::new();
        let mut breakpoint = None;
        for field in ["tools", "system", "messages"] {
            walk_blocks(messages.get(field), &mut prefix, &mut breakpoint);
        }
        let Some(length) = breakpoint else {
            return CacheUse::default();
        };
        let mut hasher = DefaultHasher::new();
        prefix[..length].hash(&mut hasher);
        let tokens = length.div_ceil(BYTES_PER_TOKEN) as u64;
        let Ok(mut seen) = self.0.lock() else {
            return CacheUse::default();
        };
        if seen.insert(hasher.finish()) {
            CacheUse {
                read: 0,
                written: tokens,
            }
        } else {
            CacheUse {
                read: tokens,
                written: 0,
            }
        }
    }
}

/// Appends each block (or turn) of `value` to `prefix`, noting where the
/// prefix ends after one marked with `cache_control`.
fn walk_blocks(value: Option<&Value>, prefix: &mut String, breakpoint: &mut Option<usize>) {
    match value {
        Some(Value::Array(items)) => {
            for item in items {
                match item.get("content") {
                    Some(content @ Value::Array(_)) => {
                        walk_blocks(Some(content), prefix, breakpoint)
                    }
                    _ => {
                        prefix.push_str(&item.to_string());
                        if item.get("cache_control").is_some() {
                            *breakpoint = Some(prefix.len());
                        }
                    }
                }
            }
        }
        Some(other) => prefix.push_str(&other.to_string()),
        None => {}
    }
}

/// The usage a message reports: of `prompt_tokens` (at least the cached
/// prefix), what was read and written apart from fresh input.
fn usage(prompt_tokens: u64, output_tokens: u64, cache: CacheUse) -> Value {
    let cached = cache.read + cache.written;
    json!({
        "input_tokens": prompt_tokens.saturating_sub(cached).max(1),
        "cache_creation_input_tokens": cache.written,
        "cache_read_input_tokens": cache.read,
        "output_tokens": output_tokens,
    })
}

/// A whole message with the thinking block first when `thinking`, and
/// usage with the cache's part.
pub fn patch_message(message: &mut Value, thinking: bool, cache: CacheUse) {
    if thinking {
        if let Some(Value::Array(content)) = message.get_mut("content") {
            let block = json!({"type": "thinking", "thinking": THINKING, "signature": SIGNATURE});
            content.insert(0, block);
        }
    }
    let count = |field: &str| message["usage"][field].as_u64().unwrap_or(0);
    message["usage"] = usage(count("input_tokens"), count("output_tokens"), cache);
}

/// A stream's frames with a thinking block (its `thinking_delta` and
/// `signature_delta`) before the answer's blocks when `thinking`, and the
/// real input figures in `message_start` and `message_delta`.
pub fn patch_stream(
    frames: Vec<Bytes>,
    prompt_tokens: u64,
    thinking: bool,
    cache: CacheUse,
) -> Vec<Bytes> {
    let start_usage = usage(prompt_tokens, 1, cache);
    let mut out = Vec::with_capacity(frames.len() + 1);
    for frame in frames {
        let mut events = Vec::new();
        for raw in frame
            .split(|&b| b == b'\n')
            .collect::<Vec<_>>()
            .split(|line| line.is_empty())
        {
            let name = raw.iter().find_map(|line| line.strip_prefix(b"event: "));
            let data = raw.iter().find_map(|line| line.strip_prefix(b"data: "));
            let (Some(name), Some(data)) = (name, data) else {
                continue;
            };
            let Ok(mut data) = serde_json::from_slice::<Value>(data) else {
                continue;
            };
            let name = String::from_utf8_lossy(name).into_owned();
            match name.as_str() {
                "message_start" => data["message"]["usage"] = start_usage.clone(),
                "message_delta" => {
                    let output = data["usage"]["output_tokens"].as_u64().unwrap_or(0);
                    data["usage"] = usage(prompt_tokens, output, cache);
                }
                _ if thinking => {
                    if let Some(index) = data.get("index").and_then(Value::as_u64) {
                        data["index"] = (index + 1).into();
                    }
                }
                _ => {}
            }
            let starts = name == "message_start";
            events.push((name, data));
            if thinking && starts {
                events.extend(thinking_events());
            }
        }
        let mut bytes = BytesMut::new();
        for (name, data) in events {
            bytes.put_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
        }
        if !bytes.is_empty() {
            out.push(bytes.freeze());
        }
    }
    out
}

/// The events of the thinking block, at index 0.
fn thinking_events() -> Vec<(String, Value)> {
    let delta = |delta: Value| json!({"type": "content_block_delta", "index": 0, "delta": delta});
    vec![
        (
            "content_block_start".into(),
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ),
        (
            "content_block_delta".into(),
            delta(json!({"type": "thinking_delta", "thinking": THINKING})),
        ),
        (
            "content_block_delta".into(),
            delta(json!({"type": "signature_delta", "signature": SIGNATURE})),
        ),
        (
            "content_block_stop".into(),
            json!({"type": "content_block_stop", "index": 0}),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_prefix_is_written_once_then_read() {
        let cache = PromptCache::default();
        let request = body(
            json!({"system": [{"type": "text", "text": "You are terse. ".repeat(100),
            "cache_control": {"type": "ephemeral"}}], "messages": [{"role": "user", "content": "hi"}]}),
        );
        let first = cache.use_for(&request);
        assert!(first.written > 300 && first.read == 0, "{first:?}");
        let again = cache.use_for(&request);
        assert_eq!((again.read, again.written), (first.written, 0));
        let plain = body(json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(cache.use_for(&plain), CacheUse::default());
    }

    #[test]
    fn thinking_must_come_back_before_tool_results() {
        let turns = |assistant: Value| {
            body(json!({"model": "m", "max_tokens": 2048,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "messages": [{"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": assistant},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}]}))
        };
        let tool = json!({"type": "tool_use", "id": "t1", "name": "w", "input": {}});
        let signed = json!({"type": "thinking", "thinking": THINKING, "signature": SIGNATURE});
        assert!(check(&turns(json!([signed, tool]))).is_ok());
        let error = check(&turns(json!([tool]))).unwrap_err();
        assert!(error.contains("Expected `thinking`"), "{error}");
        let unsigned = json!({"type": "thinking", "thinking": THINKING});
        assert!(check(&turns(json!([unsigned, tool]))).is_err());
    }
}
