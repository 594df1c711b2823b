//! Responses API answers on their way to a Responses client from an
//! upstream that speaks the API, untranslated: only `model` changes (the
//! response's own, or the `response` of a lifecycle event's), spliced into
//! the bytes as they came, as [`crate::rewrite`] does for chat. The same
//! read yields usage (with cached input), the text for estimating tokens,
//! and what the stream's hold-back needs.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::error::ErrorBody;
use crate::rewrite::{failure_message, with_model, RewrittenBody};
use crate::Usage;

/// A response object, or a lifecycle event's `response`.
#[derive(Deserialize)]
struct ResponseView<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(borrow, default)]
    output: Option<Vec<&'a RawValue>>,
}

/// One stream event's data.
#[derive(Deserialize)]
struct EventView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
    /// A text, refusal, reasoning or arguments delta.
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
    #[serde(default)]
    sequence_number: Option<u64>,
}

/// The events that open a response or an item without any of its
/// content, which a stream may hold back until content follows.
const OPENING: [&str; 5] = [
    "response.created",
    "response.queued",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
];

/// The events an upstream ends a stream with.
const ENDING: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// A whole response with `model` set to `alias`, its usage read and its
/// text collected into `text`.
pub fn rewrite_response(
    body: &[u8],
    alias: &str,
    text: &mut String,
) -> Result<RewrittenBody, String> {
    let response: ResponseView = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    for item in response.output.iter().flatten() {
        item_text(item, text);
    }
    let (usage, usage_error) = read_usage(response.usage.as_ref());
    Ok(RewrittenBody {
        json: Some(with_model(body, response.model, alias)?),
        usage,
        usage_error,
        starts_reply: true,
        ends_stream: false,
        failure: None,
    })
}

/// Reads one Responses stream, remembering the last sequence number so
/// an error event that ends a broken stream follows on from it.
#[derive(Debug, Default)]
pub struct EventReader {
    last_sequence: Option<u64>,
}

impl EventReader {
    /// One event's data, `model` set to `alias` where a `response` holds
    /// it. Usage comes with the response that ends the stream.
    pub fn event(
        &mut self,
        data: &[u8],
        alias: &str,
        text: &mut String,
    ) -> Result<RewrittenBody, String> {
        let event: EventView = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        self.last_sequence = event.sequence_number.or(self.last_sequence);
        let (mut json, mut usage, mut usage_error) = (None, None, None);
        if let Some(response) = event.response {
            let view: ResponseView =
                serde_json::from_str(response.get()).map_err(|e| e.to_string())?;
            if ENDING.contains(&event.kind.as_ref()) {
                (usage, usage_error) = read_usage(view.usage.as_ref());
            }
            json = Some(with_model(data, view.model, alias)?);
        }
        if event.kind.ends_with(".delta") {
            text.push_str(event.delta.as_deref().unwrap_or(""));
        }
        let failure = match event.kind.as_ref() {
            "response.failed" => Some(failure_message(data, "/response/error/message")),
            "error" => Some(failure_message(data, "/message")),
            _ => None,
        };
        Ok(RewrittenBody {
            json: Some(json.unwrap_or_else(|| data.to_vec())),
            usage,
            usage_error,
            starts_reply: !OPENING.contains(&event.kind.as_ref()),
            ends_stream: ENDING.contains(&event.kind.as_ref()) || failure.is_some(),
            failure,
        })
    }

    /// The event that ends a stream broken after its client got content:
    /// the Responses API's `error` event, next in sequence, which also
    /// carries the error object the OpenAI SDKs raise on.
    pub fn error_frame(&self, error: &ErrorBody) -> Bytes {
        let detail = &error.error;
        let event = json!({
            "type": "error",
            "sequence_number": self.last_sequence.map_or(0, |last| last + 1),
            "code": detail.code,
            "message": detail.message,
            "param": detail.param,
            "error": detail,
        });
        let mut frame = BytesMut::new();
        frame.put_slice(b"event: error\ndata: ");
        frame.put_slice(event.to_string().as_bytes());
        frame.put_slice(b"\n\n");
        frame.freeze()
    }
}

/// The Responses API's `usage` as Chorus counts it: input tokens with the
/// cached ones among them, and output tokens.
fn read_usage(usage: Option<&Value>) -> (Option<Usage>, Option<String>) {
    let Some(usage) = usage.filter(|usage| !usage.is_null()) else {
        return (None, None);
    };
    let count = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64);
    match (count("/input_tokens"), count("/output_tokens")) {
        (Some(input), Some(output)) => {
            let cached = count("/input_tokens_details/cached_tokens").unwrap_or(0);
            (Some(Usage::new(input, output).with_cache(cached, 0)), None)
        }
        _ => (
            None,
            Some("`usage` lacks `input_tokens` or `output_tokens`".into()),
        ),
    }
}

/// Appends an output item's text: its content parts', a call's arguments.
fn item_text(item: &RawValue, out: &mut String) {
    let Ok(item) = serde_json::from_str::<Value>(item.get()) else {
        return;
    };
    for part in item["content"].as_array().into_iter().flatten() {
        for field in ["text", "refusal"] {
            out.push_str(part[field].as_str().unwrap_or(""));
        }
    }
    out.push_str(item["arguments"].as_str().unwrap_or(""));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorType;

    #[test]
    fn a_response_keeps_every_byte_but_the_model() {
        let body = br#"{"id":"resp_1","object":"response","model":"gpt-5-2025-08-07","output":[
            {"type":"reasoning","id":"rs_1","encrypted_content":"gAAA"},
            {"type":"message","content":[{"type":"output_text","text":"Hi","annotations":[]}]},
            {"type":"function_call","call_id":"c","name":"f","arguments":"{\"x\":1.10}"}],
            "usage":{"input_tokens":120,"input_tokens_details":{"cached_tokens":100},
            "output_tokens":9,"total_tokens":129}}"#;
        let mut text = String::new();
        let out = rewrite_response(body, "gpt", &mut text).unwrap();
        let expected = String::from_utf8_lossy(body).replace("gpt-5-2025-08-07", "gpt");
        assert_eq!(String::from_utf8(out.json.unwrap()).unwrap(), expected);
        assert_eq!(out.usage, Some(Usage::new(120, 9).with_cache(100, 0)));
        assert_eq!(text, r#"Hi{"x":1.10}"#);
    }

    /// What `reader` makes of `event`, for alias `gpt`.
    fn read(reader: &mut EventReader, text: &mut String, event: Value) -> RewrittenBody {
        reader
            .event(event.to_string().as_bytes(), "gpt", text)
            .unwrap()
    }

    #[test]
    fn an_upstreams_failure_ends_the_stream_as_a_failure() {
        let mut reader = EventReader::default();
        let mut text = String::new();
        let mut read = |event: Value| read(&mut reader, &mut text, event);
        let failed = read(json!({"type": "response.failed", "sequence_number": 4,
            "response": {"id": "r", "model": "gpt-5", "status": "failed",
                "error": {"code": "server_error", "message": "model crashed"},
                "usage": {"input_tokens": 5, "output_tokens": 1}}}));
        assert!(failed.ends_stream);
        assert_eq!(failed.failure.as_deref(), Some("model crashed"));
        assert_eq!(
            failed.usage,
            Some(Usage::new(5, 1)),
            "what it used still counts"
        );
        let error = read(
            json!({"type": "error", "sequence_number": 5, "code": "server_error",
            "message": "overloaded", "param": null}),
        );
        assert!(error.ends_stream);
        assert_eq!(error.failure.as_deref(), Some("overloaded"));
        let done = read(json!({"type": "response.completed", "sequence_number": 3,
            "response": {"id": "r", "model": "gpt-5", "status": "completed", "usage": null}}));
        assert_eq!(done.failure, None);
    }

    #[test]
    fn a_stream_holds_openings_and_ends_at_completed() {
        let mut reader = EventReader::default();
        let mut text = String::new();
        let mut read = |event: Value| read(&mut reader, &mut text, event);
        let created = read(json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_1", "model": "gpt-5", "status": "in_progress", "usage": null}}));
        assert!(!created.starts_reply && created.usage.is_none());
        let created: Value = serde_json::from_slice(&created.json.unwrap()).unwrap();
        assert_eq!(created["response"]["model"], "gpt");
        let added = read(
            json!({"type": "response.output_item.added", "sequence_number": 1,
            "output_index": 0, "item": {"type": "message", "content": []}}),
        );
        assert!(!added.starts_reply);
        let delta = read(
            json!({"type": "response.output_text.delta", "sequence_number": 2,
            "delta": "Hello"}),
        );
        assert!(delta.starts_reply && !delta.ends_stream);
        let done = read(json!({"type": "response.completed", "sequence_number": 3,
            "response": {"id": "resp_1", "model": "gpt-5", "status": "completed",
                "usage": {"input_tokens": 5, "output_tokens": 1}}}));
        assert!(done.ends_stream);
        assert_eq!(done.usage, Some(Usage::new(5, 1)));
        assert_eq!(text, "Hello");
        let frame = reader.error_frame(&ErrorBody::new(ErrorType::Upstream, "cut"));
        let frame = std::str::from_utf8(&frame).unwrap();
        let data: Value = serde_json::from_str(
            frame
                .strip_prefix("event: error\ndata: ")
                .unwrap()
                .trim_end(),
        )
        .unwrap();
        assert_eq!(data["sequence_number"], 4);
        assert_eq!(data["error"]["message"], "cut");
    }
}
