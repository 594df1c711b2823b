//! A whole completion, replayed as the chunks of a stream for a client
//! that asked to stream an answer the cache holds.

use serde_json::{json, Map, Value};

/// The `data` payloads of a stream that carries `completion` (a chat or a
/// text completion), without the `[DONE]` terminator: for each choice its
/// role, each text field (`content`, `refusal`, …) and its tool calls
/// whole, then its finish reason; the usage chunk last, when asked for and
/// known. An error says why `completion` cannot be streamed.
pub fn replay_chunks(completion: &[u8], include_usage: bool) -> Result<Vec<Vec<u8>>, String> {
    let completion: Map<String, Value> = serde_json::from_slice(completion)
        .map_err(|e| format!("the cached completion is unreadable: {e}"))?;
    let (object, chat) = match completion.get("object").and_then(Value::as_str) {
        Some("chat.completion") => ("chat.completion.chunk", true),
        Some("text_completion") => ("text_completion", false),
        other => return Err(format!("a {other:?} object has no stream form")),
    };
    let chunk = |choices: Vec<Value>| {
        let mut chunk = Map::new();
        for field in ["id", "created", "model", "system_fingerprint"] {
            if let Some(value) = completion.get(field) {
                chunk.insert(field.into(), value.clone());
            }
        }
        chunk.insert("object".into(), object.into());
        chunk.insert("choices".into(), choices.into());
        chunk
    };
    let choices = completion
        .get("choices")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut chunks: Vec<Map<String, Value>> = Vec::new();
    for choice in choices {
        let index = choice.get("index").cloned().unwrap_or(Value::from(0));
        let finish_reason = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        if !chat {
            let text = choice.get("text").cloned().unwrap_or(Value::from(""));
            chunks.push(chunk(vec![json!({"text": text, "index": index,
                "logprobs": null, "finish_reason": finish_reason})]));
            continue;
        }
        let delta = |delta: Value, finish_reason: Value| {
            chunk(vec![
                json!({"index": index, "delta": delta, "logprobs": null,
                "finish_reason": finish_reason}),
            ])
        };
        let message = choice.get("message").and_then(Value::as_object);
        let role = message
            .and_then(|message| message.get("role"))
            .cloned()
            .unwrap_or(Value::from("assistant"));
        chunks.push(delta(json!({"role": role, "content": ""}), Value::Null));
        for (field, value) in message.into_iter().flatten() {
            match (field.as_str(), value) {
                ("role", _) => {}
                ("tool_calls", Value::Array(calls)) => {
                    let pieces: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(i, call)| {
                            let mut piece = call.clone();
                            if let Value::Object(piece) = &mut piece {
                                piece.insert("index".into(), i.into());
                            }
                            piece
                        })
                        .collect();
                    chunks.push(delta(json!({"tool_calls": pieces}), Value::Null));
                }
                (_, Value::String(text)) if !text.is_empty() => {
                    chunks.push(delta(json!({ field: text }), Value::Null));
                }
                _ => {}
            }
        }
        chunks.push(delta(json!({}), finish_reason));
    }
    if include_usage {
        if let Some(usage) = completion.get("usage").filter(|usage| !usage.is_null()) {
            let mut last = chunk(Vec::new());
            last.insert("usage".into(), usage.clone());
            chunks.push(last);
        }
    }
    chunks
        .iter()
        .map(|chunk| serde_json::to_vec(chunk).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Assembler;
    use crate::endpoint::Endpoint;
    use crate::mock::MockCompletion;

    fn mock() -> MockCompletion {
        let messages = [json!({"role": "user", "content": "replay"})];
        MockCompletion::new("alias", &messages, 5, 1_700_000_000)
    }

    /// Replaying and assembling again gives back the completion.
    fn round_trip(endpoint: Endpoint, completion: &[u8], include_usage: bool) -> Value {
        let mut assembler = Assembler::new(endpoint);
        for chunk in replay_chunks(completion, include_usage).unwrap() {
            assembler.push(&chunk).unwrap();
        }
        serde_json::from_slice(&assembler.finish().unwrap()).unwrap()
    }

    #[test]
    fn a_replayed_completion_assembles_back_into_itself() {
        let tool = json!({"type": "function", "function": {"name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}});
        for (endpoint, completion) in [
            (Endpoint::ChatCompletions, mock().completion_json()),
            (
                Endpoint::ChatCompletions,
                mock().calling(&tool).completion_json(),
            ),
            (Endpoint::Completions, mock().text_completion_json()),
        ] {
            let mut whole: Value = serde_json::from_slice(&completion).unwrap();
            // A `null` refusal is no text: the stream has no piece for it.
            if let Some(Value::Object(message)) = whole.pointer_mut("/choices/0/message") {
                message.remove("refusal");
            }
            assert_eq!(round_trip(endpoint, &completion, true), whole);
        }
    }

    #[test]
    fn usage_comes_last_and_only_when_asked() {
        let completion = mock().completion_json();
        let with = replay_chunks(&completion, true).unwrap();
        let last: Value = serde_json::from_slice(with.last().unwrap()).unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["completion_tokens"], 5);
        let without = replay_chunks(&completion, false).unwrap();
        assert_eq!(without.len() + 1, with.len());
        assert!(without
            .iter()
            .all(|chunk| !String::from_utf8_lossy(chunk).contains("usage")));
        let first: Value = serde_json::from_slice(&without[0]).unwrap();
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    }

    #[test]
    fn embeddings_and_garbage_have_no_stream_form() {
        assert!(replay_chunks(br#"{"object":"list","data":[]}"#, false).is_err());
        assert!(replay_chunks(b"nope", false).is_err());
    }
}
