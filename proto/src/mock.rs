//! The deterministic mock completion shared by the node's built-in `mock`
//! provider and the benchmark's mock upstream: the same messages always give
//! the same words, and `usage` counts what was really produced. Given tools,
//! it calls one, with arguments made from the tool's schema, unless the
//! conversation just answered a call; so tool use can be tested end to end.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Value};

use crate::chat::ChatRequest;
use crate::endpoint::Endpoint;
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
        // A text completion's prompt is read as one user message.
        let mut prompt = String::new();
        request.input_text(&mut prompt);
        let prompt = [json!({"role": "user", "content": prompt})];
        let messages = match request.endpoint {
            Endpoint::ChatCompletions => request.messages(),
            Endpoint::Completions | Endpoint::Embeddings => &prompt,
        };
        let completion = MockCompletion::new(&request.model, messages, tokens as usize, created);
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

    /// The legacy `text_completion` object.
    pub fn text_completion_json(&self) -> Vec<u8> {
        to_vec(&json!({
            "id": self.id.replace("chatcmpl", "cmpl"),
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"text": self.text(), "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": self.usage,
        }))
    }

    /// The legacy completion's stream payloads: a chunk per token, the
    /// finish chunk and, when asked, the usage chunk. No `[DONE]`.
    pub fn text_chunk_payloads(&self, include_usage: bool) -> Vec<Vec<u8>> {
        let chunk = |text: &str, finish_reason: Option<&str>| {
            to_vec(&json!({
                "id": self.id.replace("chatcmpl", "cmpl"),
                "object": "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish_reason}],
            }))
        };
        let mut payloads: Vec<Vec<u8>> =
            self.tokens.iter().map(|token| chunk(token, None)).collect();
        payloads.push(chunk("", Some("stop")));
        if include_usage {
            payloads.push(to_vec(&json!({
                "id": self.id.replace("chatcmpl", "cmpl"),
                "object": "text_completion",
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

/// What the mock answers a request with, on any endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MockReply {
    /// The whole JSON body.
    Whole(Vec<u8>),
    /// The stream's `data` payloads, without `[DONE]`.
    Chunks(Vec<Vec<u8>>),
}

impl MockReply {
    /// The reply to `request`: `default_tokens` of output unless it says
    /// fewer; chunks when it asked to stream.
    pub fn to(request: &ChatRequest, default_tokens: u64) -> Self {
        if request.endpoint == Endpoint::Embeddings {
            return MockReply::Whole(embeddings_json(request));
        }
        let completion = MockCompletion::for_request(request, default_tokens);
        let chat = request.endpoint == Endpoint::ChatCompletions;
        match (request.stream, chat) {
            (false, true) => MockReply::Whole(completion.completion_json()),
            (false, false) => MockReply::Whole(completion.text_completion_json()),
            (true, true) => MockReply::Chunks(completion.chunk_payloads(request.include_usage)),
            (true, false) => {
                MockReply::Chunks(completion.text_chunk_payloads(request.include_usage))
            }
        }
    }
}

/// Dimensions of a mock embedding unless the request asks for others.
const EMBEDDING_DIMENSIONS: u64 = 8;
/// The most dimensions a mock embedding has, whatever is asked.
const MAX_EMBEDDING_DIMENSIONS: u64 = 4096;

/// The embeddings response for `request`: for each input (a string or an
/// array of token ids) a unit vector that depends only on it, with
/// `dimensions` entries (8 unless asked), as floats or, with
/// `encoding_format: "base64"`, as little-endian `f32`s in base64 — what
/// the OpenAI SDKs ask for by default. Usage counts the input's tokens.
pub fn embeddings_json(request: &ChatRequest) -> Vec<u8> {
    let inputs: Vec<Value> = match request.field("input") {
        Some(Value::Array(items)) if items.iter().all(|item| !item.is_number()) => items.clone(),
        Some(input) => vec![input.clone()],
        None => Vec::new(),
    };
    let dimensions = request
        .field("dimensions")
        .and_then(Value::as_u64)
        .unwrap_or(EMBEDDING_DIMENSIONS)
        .clamp(1, MAX_EMBEDDING_DIMENSIONS);
    let base64 = request.field("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let seed = fnv1a(std::iter::once(input.to_string()));
            let raw: Vec<f32> = (0..dimensions)
                .map(|i| ((seed.rotate_left(i as u32 % 64) % 2000) as f32 / 1000.0) - 1.0)
                .collect();
            let norm = raw
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::EPSILON);
            let vector: Vec<f32> = raw.iter().map(|x| x / norm).collect();
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Value::from(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    // About four characters a token, each input counted apart.
    let prompt_tokens: u64 = inputs
        .iter()
        .map(|input| match input {
            Value::String(text) => (text.chars().count() as u64).div_ceil(4).max(1),
            Value::Array(ids) => ids.len() as u64,
            _ => 1,
        })
        .sum();
    to_vec(&json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
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
    fn embeddings_are_unit_vectors_of_their_input_alone() {
        let embed = |body: Value| -> Value {
            let request =
                ChatRequest::parse_at(Endpoint::Embeddings, body.to_string().as_bytes()).unwrap();
            serde_json::from_slice(&embeddings_json(&request)).unwrap()
        };
        let both = embed(json!({"model": "e", "input": ["a", "b"], "dimensions": 16}));
        let alone = embed(json!({"model": "e", "input": "b", "dimensions": 16}));
        assert_eq!(both["data"][1]["embedding"], alone["data"][0]["embedding"]);
        assert_ne!(both["data"][0]["embedding"], both["data"][1]["embedding"]);
        let vector: Vec<f64> =
            serde_json::from_value(alone["data"][0]["embedding"].clone()).unwrap();
        assert_eq!(vector.len(), 16);
        assert!((vector.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-4);
        assert_eq!(both["usage"]["prompt_tokens"], 2);
        let encoded = embed(
            json!({"model": "e", "input": "b", "dimensions": 16, "encoding_format": "base64"}),
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f64> = bytes
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect();
        assert_eq!(decoded, vector);
        let ids = embed(json!({"model": "e", "input": [1, 2, 3]}));
        assert_eq!(
            ids["data"].as_array().unwrap().len(),
            1,
            "one input of token ids"
        );
        assert_eq!(ids["usage"]["prompt_tokens"], 3);
    }

    #[test]
    fn a_text_completion_streams_the_same_text() {
        let request = ChatRequest::parse_at(
            Endpoint::Completions,
            br#"{"model":"c","prompt":"Once upon","max_tokens":4}"#,
        )
        .unwrap();
        let completion = MockCompletion::for_request(&request, 16);
        let whole: Value = serde_json::from_slice(&completion.text_completion_json()).unwrap();
        let streamed: String = completion
            .text_chunk_payloads(true)
            .iter()
            .map(|p| serde_json::from_slice::<Value>(p).unwrap())
            .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(whole["choices"][0]["text"], streamed.as_str());
        assert_eq!(whole["usage"]["completion_tokens"], 4);
        assert_eq!(whole["object"], "text_completion");
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
