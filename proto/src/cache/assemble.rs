//! A finished stream, assembled into the whole completion it stands for,
//! so it can be cached and later answer a request that does not stream;
//! and what counts as a finished answer, fit to keep.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::endpoint::Endpoint;

/// Collects a stream's chunk payloads, in order, into one completion: a
/// chat completion's messages (every text field of the deltas — `content`,
/// `refusal`, a provider's `reasoning_content` — joined, tool calls put
/// together from their pieces) or a text completion's texts, with the
/// finish reasons and the usage.
#[derive(Debug, Default)]
pub struct Assembler {
    /// A legacy text completion rather than a chat completion.
    text_completion: bool,
    head: Head,
    choices: BTreeMap<u64, Draft>,
    usage: Option<Value>,
    /// An `error` came as a chunk: the stream is no answer.
    broken: bool,
}

/// What a chunk carried, for the one passing it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkRole {
    /// Part of the answer.
    Answer,
    /// Only the final usage, with no choices: a client that did not ask
    /// for it must not see it.
    UsageOnly,
}

/// What every chunk repeats, each from the first chunk that has it: some
/// upstreams open with a chunk whose `id` is empty and `created` zero.
#[derive(Debug, Default)]
struct Head {
    id: Option<Value>,
    created: Option<Value>,
    model: Option<Value>,
    system_fingerprint: Option<Value>,
}

/// One choice, so far.
#[derive(Debug, Default)]
struct Draft {
    role: Option<String>,
    /// Text fields of the deltas, joined, in the order they first came.
    texts: Vec<(String, String)>,
    tool_calls: BTreeMap<u64, CallDraft>,
    finish_reason: Option<Value>,
}

#[derive(Debug, Default)]
struct CallDraft {
    id: Option<String>,
    name: String,
    arguments: String,
}

#[derive(Deserialize)]
struct Chunk {
    id: Option<Value>,
    created: Option<Value>,
    model: Option<Value>,
    system_fingerprint: Option<Value>,
    #[serde(default)]
    choices: Option<Vec<ChoiceChunk>>,
    usage: Option<Value>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChoiceChunk {
    #[serde(default)]
    index: u64,
    delta: Option<Map<String, Value>>,
    /// A text completion's piece.
    text: Option<String>,
    finish_reason: Option<Value>,
}

#[derive(Deserialize)]
struct CallPiece {
    index: Option<u64>,
    id: Option<String>,
    function: Option<FunctionPiece>,
}

#[derive(Deserialize)]
struct FunctionPiece {
    name: Option<String>,
    arguments: Option<String>,
}

impl Assembler {
    /// An assembler for a stream from `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        Assembler {
            text_completion: endpoint == Endpoint::Completions,
            ..Assembler::default()
        }
    }

    /// Takes the next chunk's `data` payload.
    pub fn push(&mut self, payload: &[u8]) -> Result<ChunkRole, String> {
        let chunk: Chunk =
            serde_json::from_slice(payload).map_err(|e| format!("unreadable chunk: {e}"))?;
        if chunk.error.is_some_and(|error| !error.is_null()) {
            self.broken = true;
        }
        let head = &mut self.head;
        for (slot, value) in [
            (&mut head.id, chunk.id),
            (&mut head.created, chunk.created),
            (&mut head.model, chunk.model),
            (&mut head.system_fingerprint, chunk.system_fingerprint),
        ] {
            if slot.is_none() && value.as_ref().is_some_and(is_set) {
                *slot = value;
            }
        }
        let has_usage = chunk.usage.as_ref().is_some_and(|usage| !usage.is_null());
        if has_usage {
            self.usage = chunk.usage;
        }
        let choices = chunk.choices.unwrap_or_default();
        if choices.is_empty() && has_usage {
            return Ok(ChunkRole::UsageOnly);
        }
        for choice in choices {
            self.choices.entry(choice.index).or_default().take(choice)?;
        }
        Ok(ChunkRole::Answer)
    }

    /// The whole completion's JSON; `None` unless it is a finished
    /// answer: no error came, and every choice (at least one) has its
    /// finish reason.
    pub fn finish(self) -> Option<Vec<u8>> {
        let finished = !self.broken
            && !self.choices.is_empty()
            && self
                .choices
                .values()
                .all(|draft| draft.finish_reason.is_some());
        if !finished {
            return None;
        }
        let head = self.head;
        let text_completion = self.text_completion;
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .map(|(index, draft)| draft.into_choice(index, text_completion))
            .collect();
        let mut completion = Map::new();
        completion.insert("id".into(), head.id.unwrap_or(Value::Null));
        let object = if text_completion {
            "text_completion"
        } else {
            "chat.completion"
        };
        completion.insert("object".into(), object.into());
        completion.insert("created".into(), head.created.unwrap_or(Value::Null));
        completion.insert("model".into(), head.model.unwrap_or(Value::Null));
        completion.insert("choices".into(), Value::Array(choices));
        if let Some(usage) = self.usage {
            completion.insert("usage".into(), usage);
        }
        if let Some(fingerprint) = head.system_fingerprint {
            completion.insert("system_fingerprint".into(), fingerprint);
        }
        serde_json::to_vec(&completion).ok()
    }
}

/// Whether a head field has a value: not null, not empty, not zero.
fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Number(number) => number.as_f64() != Some(0.0),
        _ => true,
    }
}

/// Whether `body`, a whole answer from `endpoint` that came with a 200, is
/// a finished one fit to keep: no `error` in it, and every choice (at
/// least one) finished, or for embeddings at least one vector.
pub fn is_finished_answer(endpoint: Endpoint, body: &[u8]) -> bool {
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    if answer.get("error").is_some_and(|error| !error.is_null()) {
        return false;
    }
    let non_empty = |field: &str| {
        answer
            .get(field)
            .and_then(Value::as_array)
            .filter(|items| !items.is_empty())
    };
    match endpoint {
        Endpoint::Embeddings => non_empty("data").is_some(),
        Endpoint::ChatCompletions | Endpoint::Completions => {
            non_empty("choices").is_some_and(|choices| {
                choices
                    .iter()
                    .all(|choice| choice.get("finish_reason").is_some_and(|r| !r.is_null()))
            })
        }
    }
}

impl Draft {
    fn take(&mut self, choice: ChoiceChunk) -> Result<(), String> {
        if let Some(reason) = choice.finish_reason.filter(|reason| !reason.is_null()) {
            self.finish_reason = Some(reason);
        }
        if let Some(text) = choice.text {
            self.append("text", &text);
        }
        for (field, value) in choice.delta.into_iter().flatten() {
            match (field.as_str(), value) {
                ("role", Value::String(role)) => self.role = Some(role),
                ("tool_calls", Value::Array(pieces)) => {
                    for (position, piece) in pieces.into_iter().enumerate() {
                        let piece: CallPiece = serde_json::from_value(piece)
                            .map_err(|e| format!("unreadable tool call: {e}"))?;
                        // Some upstreams leave `index` out of parallel calls.
                        let index = piece.index.unwrap_or(position as u64);
                        let call = self.tool_calls.entry(index).or_default();
                        if piece.id.is_some() {
                            call.id = piece.id;
                        }
                        if let Some(function) = piece.function {
                            call.name.push_str(function.name.as_deref().unwrap_or(""));
                            call.arguments
                                .push_str(function.arguments.as_deref().unwrap_or(""));
                        }
                    }
                }
                (_, Value::String(text)) => self.append(&field, &text),
                _ => {}
            }
        }
        Ok(())
    }

    fn append(&mut self, field: &str, text: &str) {
        match self.texts.iter_mut().find(|(name, _)| name == field) {
            Some((_, joined)) => joined.push_str(text),
            None => self.texts.push((field.to_owned(), text.to_owned())),
        }
    }

    fn text(&mut self, field: &str) -> Option<String> {
        let at = self.texts.iter().position(|(name, _)| name == field)?;
        Some(self.texts.remove(at).1)
    }

    fn into_choice(mut self, index: u64, text_completion: bool) -> Value {
        let finish_reason = self.finish_reason.take().unwrap_or(Value::Null);
        if text_completion {
            let text = self.text("text").unwrap_or_default();
            return json!({"text": text, "index": index, "logprobs": null,
                "finish_reason": finish_reason});
        }
        let mut message = Map::new();
        let role = self.role.take().unwrap_or_else(|| "assistant".to_owned());
        message.insert("role".into(), role.into());
        // A role chunk's empty content is no answer when tools were called.
        let content = self
            .text("content")
            .filter(|content| !content.is_empty() || self.tool_calls.is_empty());
        message.insert("content".into(), content.into());
        for (field, text) in self.texts {
            message.insert(field, text.into());
        }
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self
                .tool_calls
                .into_values()
                .map(|call| {
                    json!({"id": call.id, "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments}})
                })
                .collect();
            message.insert("tool_calls".into(), calls.into());
        }
        json!({"index": index, "message": message, "logprobs": null,
            "finish_reason": finish_reason})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MockCompletion;

    fn assembled(endpoint: Endpoint, payloads: &[Vec<u8>]) -> Option<Value> {
        let mut assembler = Assembler::new(endpoint);
        for payload in payloads {
            assembler.push(payload).unwrap();
        }
        Some(serde_json::from_slice(&assembler.finish()?).unwrap())
    }

    fn chat(payloads: &[&str]) -> Option<Value> {
        let payloads: Vec<Vec<u8>> = payloads.iter().map(|p| p.as_bytes().to_vec()).collect();
        assembled(Endpoint::ChatCompletions, &payloads)
    }

    fn mock() -> MockCompletion {
        let messages = [json!({"role": "user", "content": "hello"})];
        MockCompletion::new("alias", &messages, 6, 1_700_000_000)
    }

    #[test]
    fn a_streamed_chat_completion_assembles_into_the_whole_one() {
        let completion = mock();
        let whole: Value = serde_json::from_slice(&completion.completion_json()).unwrap();
        let streamed =
            assembled(Endpoint::ChatCompletions, &completion.chunk_payloads(true)).unwrap();
        for field in ["id", "created", "model", "usage"] {
            assert_eq!(streamed[field], whole[field], "{field}");
        }
        assert_eq!(streamed["object"], "chat.completion");
        let message = &streamed["choices"][0]["message"];
        assert_eq!(
            message["content"],
            whole["choices"][0]["message"]["content"]
        );
        assert_eq!(message["role"], "assistant");
        assert_eq!(streamed["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn tool_calls_are_put_together_from_their_pieces() {
        let tool = json!({"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                "days": {"type": "integer"}}}}});
        let completion = mock().calling(&tool);
        let whole: Value = serde_json::from_slice(&completion.completion_json()).unwrap();
        let streamed =
            assembled(Endpoint::ChatCompletions, &completion.chunk_payloads(false)).unwrap();
        assert_eq!(
            streamed["choices"][0]["message"]["tool_calls"],
            whole["choices"][0]["message"]["tool_calls"]
        );
        assert_eq!(streamed["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(streamed["choices"][0]["finish_reason"], "tool_calls");
        assert!(streamed.get("usage").is_none(), "no usage chunk came");
        // Parallel calls without an `index` stay apart.
        let parallel = chat(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}},{"id":"b","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        ])
        .unwrap();
        let calls = parallel["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1]["function"]["name"], "g");
    }

    #[test]
    fn text_completions_and_extra_text_fields_assemble_too() {
        let completion = mock();
        let whole: Value = serde_json::from_slice(&completion.text_completion_json()).unwrap();
        let streamed =
            assembled(Endpoint::Completions, &completion.text_chunk_payloads(true)).unwrap();
        assert_eq!(streamed["object"], "text_completion");
        assert_eq!(streamed["choices"][0]["text"], whole["choices"][0]["text"]);
        assert_eq!(streamed["usage"], whole["usage"]);
        let reasoning = chat(&[
            r#"{"id":"","created":0,"choices":[]}"#,
            r#"{"id":"x","created":5,"choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"thi"}}]}"#,
            r#"{"id":"y","choices":[{"index":0,"delta":{"reasoning_content":"nk"}},{"index":1,"delta":{"content":"b"},"finish_reason":"stop"}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}"#,
        ])
        .unwrap();
        assert_eq!(reasoning["id"], "x", "the first id that is one");
        assert_eq!(reasoning["created"], 5);
        assert_eq!(
            reasoning["choices"][0]["message"]["reasoning_content"],
            "think"
        );
        assert_eq!(reasoning["choices"][0]["message"]["content"], "a");
        assert_eq!(reasoning["choices"][1]["message"]["content"], "b");
    }

    #[test]
    fn only_a_finished_answer_is_assembled() {
        let unfinished = r#"{"id":"x","choices":[{"index":0,"delta":{"content":"cut"}}]}"#;
        assert_eq!(chat(&[unfinished]), None, "no finish reason");
        let finish = r#"{"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert!(chat(&[unfinished, finish]).is_some());
        let error = r#"{"error":{"message":"overloaded"}}"#;
        assert_eq!(chat(&[unfinished, error, finish]), None, "an error came");
        assert_eq!(chat(&[]), None, "no choices");
    }

    #[test]
    fn whole_answers_are_checked_the_same_way() {
        let finished =
            |endpoint, body: Value| is_finished_answer(endpoint, body.to_string().as_bytes());
        let chat = Endpoint::ChatCompletions;
        assert!(is_finished_answer(chat, &mock().completion_json()));
        assert!(is_finished_answer(
            Endpoint::Completions,
            &mock().text_completion_json()
        ));
        assert!(!finished(chat, json!({"choices": []})));
        assert!(!finished(
            chat,
            json!({"choices": [{"message": {}, "finish_reason": null}]})
        ));
        assert!(!finished(
            chat,
            json!({"error": {"message": "no"}, "choices": [{"finish_reason": "stop"}]})
        ));
        assert!(finished(
            Endpoint::Embeddings,
            json!({"data": [{"embedding": [0.1]}]})
        ));
        assert!(!finished(Endpoint::Embeddings, json!({"data": []})));
        assert!(!is_finished_answer(chat, b"not json"));
    }

    #[test]
    fn the_usage_chunk_is_told_apart_and_garbage_is_an_error() {
        let mut assembler = Assembler::new(Endpoint::ChatCompletions);
        let payloads = mock().chunk_payloads(true);
        let roles: Vec<ChunkRole> = payloads
            .iter()
            .map(|payload| assembler.push(payload).unwrap())
            .collect();
        assert_eq!(roles.last(), Some(&ChunkRole::UsageOnly));
        assert!(roles[..roles.len() - 1]
            .iter()
            .all(|role| *role == ChunkRole::Answer));
        assert!(assembler.push(b"not json").is_err());
    }
}
