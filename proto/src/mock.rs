//! The deterministic mock completion shared by the node's built-in `mock`
//! provider and the benchmark's mock upstream: the same messages always give
//! the same words, and `usage` counts what was really produced. Given tools,
//! it calls one, with arguments made from the tool's schema, unless the
//! conversation just answered a call; so tool use can be tested end to end.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::chat::ChatRequest;
use crate::usage::Usage;

/// The most tokens one mock completion has, whatever is asked.
pub const MAX_OUTPUT_TOKENS: u64 = 100_000;

const WORDS: [&str; 32] = [
    "chorus", "gateway", "many", "voices", "one", "endpoint", "nodes", "gossip", "counters",
    "merge", "stream", "tokens", "arrive", "steady", "the", "cluster", "agrees", "on", "health",
    "latency", "and", "budgets", "without", "a", "central", "database", "every", "request",
    "finds", "its", "way", "home",
];

/// One generated completion: its id, words and token counts.
#[derive(Debug, Clone)]
pub struct MockCompletion {
    pub id: String,
    pub model: String,
    pub created: u64,
    /// One entry per output token, each with its leading space where
    /// needed; for a tool call, the pieces of its arguments.
    pub tokens: Vec<String>,
    /// The tool it calls, instead of answering in text.
    pub tool_call: Option<MockToolCall>,
    pub usage: Usage,
}

/// The one tool call of a mock completion; its arguments are the tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockToolCall {
    pub id: String,
    pub name: String,
}

impl MockCompletion {
    /// Builds the reply to `messages`. `created` is the caller's clock (seconds),
    /// kept out of here so the content stays a pure function of the input.
    pub fn new(model: &str, messages: &[Value], output_tokens: usize, created: u64) -> Self {
        let seed = fnv1a(messages.iter().map(|m| m.to_string()));
        let tokens: Vec<String> = (0..output_tokens)
            .map(|i| {
                let word = WORDS[(seed.wrapping_add(i as u64 * 7) % WORDS.len() as u64) as usize];
                if i == 0 {
                    word.to_owned()
                } else {
                    format!(" {word}")
                }
            })
            .collect();
        MockCompletion {
            id: format!("chatcmpl-mock{seed:016x}"),
            model: model.to_owned(),
            created,
            usage: Usage::new(prompt_tokens(messages), tokens.len() as u64),
            tokens,
            tool_call: None,
        }
    }

    /// Calls the tool `tool` (an OpenAI function tool) instead: its
    /// arguments give each property of the tool's schema a value of its
    /// type, streamed in pieces of a few characters.
    pub fn calling(mut self, tool: &Value) -> Self {
        let function = tool.get("function").unwrap_or(&Value::Null);
        let properties = function
            .pointer("/parameters/properties")
            .and_then(Value::as_object);
        let arguments: serde_json::Map<String, Value> = properties
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, (name, schema))| {
                let value = match schema.get("type").and_then(Value::as_str) {
                    Some("string") => Value::from(WORDS[i % WORDS.len()]),
                    Some("integer" | "number") => Value::from(7),
                    Some("boolean") => Value::Bool(true),
                    Some("array") => Value::Array(Vec::new()),
                    Some("object") => Value::Object(serde_json::Map::new()),
                    _ => Value::Null,
                };
                (name.clone(), value)
            })
            .collect();
        let arguments = Value::Object(arguments).to_string();
        let chars: Vec<char> = arguments.chars().collect();
        self.tokens = chars
            .chunks(8)
            .map(|piece| piece.iter().collect())
            .collect();
        self.usage = Usage::new(self.usage.prompt_tokens, self.tokens.len() as u64);
        self.tool_call = Some(MockToolCall {
            id: format!(
                "call_{}",
                self.id
                    .get(self.id.len().saturating_sub(12)..)
                    .unwrap_or("")
            ),
            name: function
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("tool")
                .to_owned(),
        });
        self
    }

    /// The reply to `request`: `default_tokens` tokens, fewer when the
    /// request's `max_tokens` says so, at least one and at most
    /// [`MAX_OUTPUT_TOKENS`]; stamped with the current time.
    pub fn for_request(request: &ChatRequest, default_tokens: u64) -> Self {
        let ceiling = default_tokens.clamp(1, MAX_OUTPUT_TOKENS);
        let tokens = request
            .max_output_tokens()
            .map_or(ceiling, |asked| asked.clamp(1, ceiling));
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let completion =
            MockCompletion::new(&request.model, request.messages(), tokens as usize, created);
        match tool_to_call(request) {
            Some(tool) => completion.calling(tool),
            None => completion,
        }
    }

    pub fn text(&self) -> String {
        self.tokens.concat()
    }

    /// `stop`, or `tool_calls` when it calls a tool.
    fn finish_reason(&self) -> &'static str {
        if self.tool_call.is_some() {
            "tool_calls"
        } else {
            "stop"
        }
    }

    /// The non-streaming `chat.completion` object.
    pub fn completion_json(&self) -> Vec<u8> {
        let message = match &self.tool_call {
            None => json!({"role": "assistant", "content": self.text(), "refusal": null}),
            Some(call) => json!({"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": self.text()}}]}),
        };
        to_vec(&json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": self.finish_reason()
            }],
            "usage": self.usage,
            "system_fingerprint": "fp_chorus_mock"
        }))
    }

    /// The `chat.completion.chunk` payloads in the order OpenAI sends them: a
    /// role chunk, one chunk per token, the finish chunk and, when asked, the
    /// usage chunk with empty choices. The `[DONE]` terminator is not included.
    pub fn chunk_payloads(&self, include_usage: bool) -> Vec<Vec<u8>> {
        let mut payloads = Vec::with_capacity(self.tokens.len() + 3);
        payloads.push(self.chunk(
            json!({"role": "assistant", "content": ""}),
            None,
            include_usage,
        ));
        if let Some(call) = &self.tool_call {
            let opening = json!({"tool_calls": [{"index": 0, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""}}]});
            payloads.push(self.chunk(opening, None, include_usage));
        }
        for token in &self.tokens {
            let delta = match self.tool_call {
                None => json!({"content": token}),
                Some(_) => json!({"tool_calls": [{"index": 0, "function": {"arguments": token}}]}),
            };
            payloads.push(self.chunk(delta, None, include_usage));
        }
        payloads.push(self.chunk(json!({}), Some(self.finish_reason()), include_usage));
        if include_usage {
            payloads.push(to_vec(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage,
            })));
        }
        payloads
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> Vec<u8> {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        to_vec(&chunk)
    }
}

/// The tool a request's reply calls: the one `tool_choice` names, or the
/// first, unless `tool_choice` is `none` or the last message is a tool's
/// result (the conversation then wants the answer).
fn tool_to_call(request: &ChatRequest) -> Option<&Value> {
    let tools = request.field("tools").and_then(Value::as_array)?;
    let after_result =
        request.messages().last().and_then(|m| m.get("role")) == Some(&json!("tool"));
    let choice = request.field("tool_choice");
    if after_result || choice == Some(&json!("none")) {
        return None;
    }
    match choice.and_then(|choice| choice.pointer("/function/name")) {
        Some(name) => tools
            .iter()
            .find(|tool| tool.pointer("/function/name") == Some(name)),
        None => tools.first(),
    }
}

/// A rough prompt size in tokens: about four characters a token plus a few
/// tokens of framing per message, as OpenAI's own estimate suggests.
fn prompt_tokens(messages: &[Value]) -> u64 {
    messages
        .iter()
        .map(|message| {
            let chars = match message.get("content") {
                Some(Value::String(text)) => text.chars().count(),
                Some(other) => other.to_string().chars().count(),
                None => 0,
            };
            3 + chars.div_ceil(4) as u64
        })
        .sum()
}

fn fnv1a(parts: impl Iterator<Item = String>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn to_vec(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<Value> {
        vec![json!({"role": "user", "content": text})]
    }

    #[test]
    fn same_input_same_words() {
        let a = MockCompletion::new("m", &messages("hello"), 8, 1);
        let b = MockCompletion::new("m", &messages("hello"), 8, 2);
        let c = MockCompletion::new("m", &messages("other"), 8, 1);
        assert_eq!(a.text(), b.text());
        assert_eq!(a.id, b.id);
        assert_ne!(a.text(), c.text());
        assert_eq!(a.usage.completion_tokens, 8);
        assert_eq!(a.usage.prompt_tokens, 3 + 2);
    }

    #[test]
    fn stream_chunks_rebuild_the_completion() {
        let completion = MockCompletion::new("m", &messages("hello"), 5, 1);
        let payloads = completion.chunk_payloads(true);
        assert_eq!(payloads.len(), 5 + 3);
        let text: String = payloads
            .iter()
            .map(|p| serde_json::from_slice::<Value>(p).unwrap())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, completion.text());
        let last: Value = serde_json::from_slice(payloads.last().unwrap()).unwrap();
        assert_eq!(last["usage"]["completion_tokens"], 5);
        assert_eq!(completion.chunk_payloads(false).len(), 5 + 2);
    }

    fn request(body: Value) -> ChatRequest {
        ChatRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn given_tools_it_calls_one_until_a_result_comes_back() {
        let tools = json!([
            {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}},
            {"type": "function", "function": {"name": "weather", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}
        ]);
        let asked = |messages: Value, choice: Value| {
            let mut body = json!({"model": "m", "messages": messages, "tools": tools});
            if !choice.is_null() {
                body["tool_choice"] = choice;
            }
            MockCompletion::for_request(&request(body), 16)
        };
        let user = json!([{"role": "user", "content": "weather in Paris?"}]);
        let named = json!({"type": "function", "function": {"name": "weather"}});
        let call = asked(user.clone(), named);
        assert_eq!(
            call.tool_call.as_ref().map(|c| c.name.as_str()),
            Some("weather")
        );
        let completion: Value = serde_json::from_slice(&call.completion_json()).unwrap();
        let arguments = completion["choices"][0]["message"]["tool_calls"][0]["function"]
            ["arguments"]
            .as_str()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(arguments).unwrap(),
            json!({"city": "chorus", "days": 7})
        );
        assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            asked(user.clone(), Value::Null).tool_call.unwrap().name,
            "search"
        );
        assert!(asked(user.clone(), json!("none")).tool_call.is_none());
        let answered = json!([{"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "search", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "found"}]);
        assert!(asked(answered, Value::Null).tool_call.is_none());
    }
}
