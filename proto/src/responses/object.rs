//! The `response` object a translated answer becomes, built the same way
//! whether the answer came whole or streamed: a [`Draft`] gathers output
//! items (messages, function calls) and usage, and writes the object at
//! any status — `in_progress` for a stream's first events, `completed`,
//! `incomplete` or `failed` at its end.

use base64::Engine;
use serde_json::{json, Map, Value};

/// The request parameters a response repeats, with the value the
/// Responses API reports when the request left one out.
fn echoed_defaults() -> [(&'static str, Value); 15] {
    [
        ("conversation", Value::Null),
        ("instructions", Value::Null),
        ("max_output_tokens", Value::Null),
        ("metadata", json!({})),
        ("parallel_tool_calls", Value::Bool(true)),
        ("previous_response_id", Value::Null),
        ("reasoning", json!({"effort": null, "summary": null})),
        ("store", Value::Bool(true)),
        ("temperature", json!(1.0)),
        ("text", json!({"format": {"type": "text"}})),
        ("tool_choice", json!("auto")),
        ("tools", json!([])),
        ("top_p", json!(1.0)),
        ("truncation", json!("disabled")),
        ("user", Value::Null),
    ]
}

/// What a response takes from its request: its id, when it was made, and
/// the parameters it repeats.
#[derive(Debug, Clone)]
pub struct Envelope {
    id: String,
    created_at: u64,
    echo: Map<String, Value>,
}

impl Envelope {
    /// The envelope of the response `id` to `request` (a Responses
    /// body), made at `created_at` (seconds since the epoch).
    pub fn new(id: String, created_at: u64, request: &Map<String, Value>) -> Self {
        let echo = echoed_defaults()
            .into_iter()
            .map(|(field, default)| {
                let value = request.get(field).filter(|v| !v.is_null());
                (field.to_owned(), value.cloned().unwrap_or(default))
            })
            .collect();
        Envelope {
            id,
            created_at,
            echo,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The kind of an assistant message's content part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    Text,
    Refusal,
}

impl PartKind {
    /// The part holding `text`.
    pub fn part(self, text: &str) -> Value {
        match self {
            PartKind::Text => {
                json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
            }
            PartKind::Refusal => json!({"type": "refusal", "refusal": text}),
        }
    }

    /// The name stream events about the part start with.
    pub fn event_prefix(self) -> &'static str {
        match self {
            PartKind::Text => "response.output_text",
            PartKind::Refusal => "response.refusal",
        }
    }
}

/// A response being put together.
#[derive(Debug)]
pub struct Draft {
    envelope: Envelope,
    model: Value,
    /// The output items so far, finished or not, in order.
    pub output: Vec<Value>,
    usage: Value,
    /// Why the answer stopped short, as `incomplete_details.reason`.
    incomplete: Option<&'static str>,
}

impl Draft {
    pub fn new(envelope: Envelope) -> Self {
        Draft {
            envelope,
            model: Value::Null,
            output: Vec::new(),
            usage: Value::Null,
            incomplete: None,
        }
    }

    pub fn set_model(&mut self, model: &Value) {
        if !model.is_null() {
            self.model = model.clone();
        }
    }

    /// The id of the output item that would come next, of a kind
    /// (`msg`, `fc`).
    pub fn next_item_id(&self, kind: &str) -> String {
        let suffix = self
            .envelope
            .id
            .strip_prefix("resp_")
            .unwrap_or(&self.envelope.id);
        format!("{kind}_{suffix}_{}", self.output.len())
    }

    /// Takes a chat answer's `finish_reason` and `usage`, where given.
    pub fn finish(&mut self, finish_reason: Option<&str>, usage: &Value) {
        if let Some(reason) = finish_reason {
            self.incomplete = match reason {
                "length" => Some("max_output_tokens"),
                "content_filter" => Some("content_filter"),
                _ => None,
            };
        }
        if !usage.is_null() {
            self.usage = response_usage(usage);
        }
    }

    /// `completed`, or `incomplete` when the answer stopped short.
    pub fn end_status(&self) -> &'static str {
        match self.incomplete {
            Some(_) => "incomplete",
            None => "completed",
        }
    }

    /// The response object at `status`, with `error` for a failed one.
    pub fn object(&self, status: &str, error: Option<Value>) -> Value {
        let mut object = json!({
            "id": self.envelope.id,
            "object": "response",
            "created_at": self.envelope.created_at,
            "status": status,
            "error": error,
            "incomplete_details": self.incomplete.filter(|_| status == "incomplete")
                .map(|reason| json!({"reason": reason})),
            "model": self.model,
            "output": self.output,
        });
        if let Value::Object(fields) = &mut object {
            fields.extend(self.envelope.echo.clone());
            fields.insert("usage".into(), self.usage.clone());
        }
        object
    }
}

/// An assistant message item with one content part.
pub fn message_item(id: &str, kind: PartKind, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [kind.part(text)]})
}

/// What a reasoning item's `encrypted_content` starts with when it
/// carries thinking blocks from Chorus's translation; OpenAI's own is
/// opaque and never starts so.
const THINKING_PREFIX: &str = "chorus-thinking-v1:";

/// A reasoning item: the model's thinking as its summary, and the thinking
/// blocks a later turn must send back (Anthropic's, signed) in
/// `encrypted_content`, as opaque to the client as OpenAI's own.
pub fn reasoning_item(id: &str, text: &str, blocks: &[Value], status: &str) -> Value {
    let mut item = json!({"type": "reasoning", "id": id, "status": status,
        "summary": [{"type": "summary_text", "text": text}]});
    if !blocks.is_empty() {
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(Value::from(blocks.to_vec()).to_string());
        item["encrypted_content"] = json!(format!("{THINKING_PREFIX}{encoded}"));
    }
    item
}

/// A chat message's (or delta's) thinking: `reasoning_content` and the
/// `thinking_blocks` kept with it; `None` when it has neither.
pub fn thinking_of(message: &Value) -> Option<(&str, Vec<Value>)> {
    let reasoning = message["reasoning_content"].as_str().unwrap_or("");
    let blocks = message["thinking_blocks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (!reasoning.is_empty() || !blocks.is_empty()).then_some((reasoning, blocks))
}

/// The thinking blocks a reasoning item carries back, when Chorus made it.
pub fn reasoning_blocks(item: &Value) -> Vec<Value> {
    let encoded = item["encrypted_content"]
        .as_str()
        .and_then(|content| content.strip_prefix(THINKING_PREFIX));
    encoded
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default()
}

/// A function call item.
pub fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status})
}

/// A chat `usage` object in the Responses API's terms.
fn response_usage(usage: &Value) -> Value {
    let count = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (count("/prompt_tokens"), count("/completion_tokens"));
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": count("/prompt_tokens_details/cached_tokens")},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": count("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": input + output,
    })
}
