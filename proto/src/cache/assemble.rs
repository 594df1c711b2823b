//! A finished stream, assembled into the whole completion it stands for,
//! so it can be cached and later answer a request that does not stream.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Collects a stream's chunk payloads, in order, into one completion: a
/// chat completion's messages (every text field of the deltas — `content`,
/// `refusal`, a provider's `reasoning_content` — joined, tool calls put
/// together from their pieces) or a text completion's texts, with the
/// finish reasons and the usage.
#[derive(Debug, Default)]
pub struct Assembler {
    head: Option<Head>,
    choices: BTreeMap<u64, Draft>,
    usage: Option<Value>,
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

/// What every chunk repeats, taken from the first.
#[derive(Debug)]
struct Head {
    id: Value,
    created: Value,
    model: Value,
    system_fingerprint: Option<Value>,
    /// A legacy text completion rather than a chat completion.
    text_completion: bool,
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
    object: Option<String>,
    created: Option<Value>,
    model: Option<Value>,
    system_fingerprint: Option<Value>,
    #[serde(default)]
    choices: Option<Vec<ChoiceChunk>>,
    usage: Option<Value>,
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
    #[serde(default)]
    index: u64,
    id: Option<String>,
    function: Option<FunctionPiece>,
}

#[derive(Deserialize)]
struct FunctionPiece {
    name: Option<String>,
    arguments: Option<String>,
}

impl Assembler {
    /// Takes the next chunk's `data` payload.
    pub fn push(&mut self, payload: &[u8]) -> Result<ChunkRole, String> {
        let chunk: Chunk =
            serde_json::from_slice(payload).map_err(|e| format!("unreadable chunk: {e}"))?;
        let head = self.head.get_or_insert_with(|| Head {
            id: chunk.id.unwrap_or(Value::Null),
            created: chunk.created.unwrap_or(Value::Null),
            model: chunk.model.unwrap_or(Value::Null),
            system_fingerprint: None,
            text_completion: chunk.object.as_deref() == Some("text_completion"),
        });
        if let Some(fingerprint) = chunk.system_fingerprint.filter(|f| !f.is_null()) {
            head.system_fingerprint = Some(fingerprint);
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

    /// The whole completion's JSON; `None` when no chunk came.
    pub fn finish(self) -> Option<Vec<u8>> {
        let head = self.head?;
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .map(|(index, draft)| draft.into_choice(index, head.text_completion))
            .collect();
        let mut completion = Map::new();
        completion.insert("id".into(), head.id);
        let object = if head.text_completion {
            "text_completion"
        } else {
            "chat.completion"
        };
        completion.insert("object".into(), object.into());
        completion.insert("created".into(), head.created);
        completion.insert("model".into(), head.model);
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
                    for piece in pieces {
                        let piece: CallPiece = serde_json::from_value(piece)
                            .map_err(|e| format!("unreadable tool call: {e}"))?;
                        let call = self.tool_calls.entry(piece.index).or_default();
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

    fn assembled(payloads: &[Vec<u8>]) -> Value {
        let mut assembler = Assembler::default();
        for payload in payloads {
            assembler.push(payload).unwrap();
        }
        serde_json::from_slice(&assembler.finish().unwrap()).unwrap()
    }

    fn mock() -> MockCompletion {
        let messages = [json!({"role": "user", "content": "hello"})];
        MockCompletion::new("alias", &messages, 6, 1_700_000_000)
    }

    #[test]
    fn a_streamed_chat_completion_assembles_into_the_whole_one() {
        let completion = mock();
        let whole: Value = serde_json::from_slice(&completion.completion_json()).unwrap();
        let streamed = assembled(&completion.chunk_payloads(true));
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
        let streamed = assembled(&completion.chunk_payloads(false));
        assert_eq!(
            streamed["choices"][0]["message"]["tool_calls"],
            whole["choices"][0]["message"]["tool_calls"]
        );
        assert_eq!(streamed["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(streamed["choices"][0]["finish_reason"], "tool_calls");
        assert!(streamed.get("usage").is_none(), "no usage chunk came");
    }

    #[test]
    fn text_completions_and_extra_text_fields_assemble_too() {
        let completion = mock();
        let whole: Value = serde_json::from_slice(&completion.text_completion_json()).unwrap();
        let streamed = assembled(&completion.text_chunk_payloads(true));
        assert_eq!(streamed["object"], "text_completion");
        assert_eq!(streamed["choices"][0]["text"], whole["choices"][0]["text"]);
        assert_eq!(streamed["usage"], whole["usage"]);
        let reasoning = assembled(&[
            br#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"thi"}}]}"#.to_vec(),
            br#"{"id":"x","choices":[{"index":0,"delta":{"reasoning_content":"nk"}},{"index":1,"delta":{"content":"b"}}]}"#.to_vec(),
            br#"{"id":"x","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}"#.to_vec(),
        ]);
        assert_eq!(
            reasoning["choices"][0]["message"]["reasoning_content"],
            "think"
        );
        assert_eq!(reasoning["choices"][0]["message"]["content"], "a");
        assert_eq!(reasoning["choices"][1]["message"]["content"], "b");
    }

    #[test]
    fn the_usage_chunk_is_told_apart_and_garbage_is_an_error() {
        let mut assembler = Assembler::default();
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
        assert_eq!(Assembler::default().finish(), None);
    }
}
