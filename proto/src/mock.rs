//! The deterministic mock completion shared by the node's built-in `mock`
//! provider and the benchmark's mock upstream: the same messages always give
//! the same words, and `usage` counts what was really produced.

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
    /// One entry per output token, each with its leading space where needed.
    pub tokens: Vec<String>,
    pub usage: Usage,
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
        }
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
        MockCompletion::new(&request.model, request.messages(), tokens as usize, created)
    }

    pub fn text(&self) -> String {
        self.tokens.concat()
    }

    /// The non-streaming `chat.completion` object.
    pub fn completion_json(&self) -> Vec<u8> {
        to_vec(&json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.text(), "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
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
        for token in &self.tokens {
            payloads.push(self.chunk(json!({"content": token}), None, include_usage));
        }
        payloads.push(self.chunk(json!({}), Some("stop"), include_usage));
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
}
