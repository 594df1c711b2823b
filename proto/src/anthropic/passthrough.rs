//! Anthropic answers on their way to an Anthropic client, untranslated:
//! only `model` changes (a message's own, or `message_start`'s message's),
//! spliced into the bytes as they came, as [`crate::rewrite`] does for
//! OpenAI. The same read yields what accounting needs — usage with its
//! cache reads and writes, the text for estimating tokens — and what the
//! stream's hold-back needs: which events carry content and which one ends
//! the stream. Thinking blocks and their signatures, citations, server
//! tool results and any block Chorus does not know pass as they came.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::usage;
use crate::rewrite::{failure_message, with_model, RewrittenBody};

/// A message, or the `message` of `message_start`.
#[derive(Deserialize)]
struct MessageView<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Option<Vec<&'a RawValue>>,
}

/// One stream event's data.
#[derive(Deserialize)]
struct EventView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// `message_start`'s message.
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    /// `message_delta`'s running usage.
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    /// `content_block_delta`'s delta.
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    /// `content_block_start`'s block.
    #[serde(borrow, default)]
    content_block: Option<&'a RawValue>,
}

/// The text-bearing fields of a content block or a delta: text, thinking,
/// a tool's input as it streams, and a tool's whole input.
#[derive(Deserialize)]
struct TextView<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

/// A whole message with `model` set to `alias`, its usage read and its
/// text collected into `text`. Fails only when the body is not a JSON
/// object.
pub fn rewrite_message(
    body: &[u8],
    alias: &str,
    text: &mut String,
) -> Result<RewrittenBody, String> {
    let message: MessageView = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    for block in message.content.iter().flatten() {
        block_text(block, text);
    }
    let (usage, usage_error) = read_usage(message.usage, &mut Map::new());
    Ok(RewrittenBody {
        json: Some(with_model(body, message.model, alias)?),
        usage,
        usage_error,
        starts_reply: true,
        ends_stream: false,
        failure: None,
    })
}

/// Reads one Anthropic stream: its usage comes in parts, input at
/// `message_start` and output (and in newer API versions, final input
/// figures) at each `message_delta`, each replacing what came before.
#[derive(Debug, Default)]
pub struct EventReader {
    usage: Map<String, Value>,
}

impl EventReader {
    /// One event's data, `model` set to `alias` where it stands. Usage is
    /// reported at `message_delta`, when the output is counted; the
    /// opening events (`message_start`, `ping`, `content_block_start`)
    /// carry none of the reply, so a stream that fails after them alone
    /// may still be retried unseen.
    pub fn event(
        &mut self,
        data: &[u8],
        alias: &str,
        text: &mut String,
    ) -> Result<RewrittenBody, String> {
        let event: EventView = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        let mut json = None;
        let (mut usage, mut usage_error) = (None, None);
        match event.kind.as_ref() {
            "message_start" => {
                if let Some(message) = event.message {
                    let view: MessageView =
                        serde_json::from_str(message.get()).map_err(|e| e.to_string())?;
                    (_, usage_error) = read_usage(view.usage, &mut self.usage);
                    json = Some(with_model(data, view.model, alias)?);
                }
            }
            "message_delta" => (usage, usage_error) = read_usage(event.usage, &mut self.usage),
            _ => {}
        }
        for block in [event.delta, event.content_block].into_iter().flatten() {
            block_text(block, text);
        }
        let opening = matches!(
            event.kind.as_ref(),
            "message_start" | "ping" | "content_block_start"
        );
        Ok(RewrittenBody {
            json: Some(json.unwrap_or_else(|| data.to_vec())),
            usage,
            usage_error,
            starts_reply: !opening,
            ends_stream: matches!(event.kind.as_ref(), "message_stop" | "error"),
            failure: (event.kind == "error").then(|| failure_message(data, "/error/message")),
        })
    }
}

/// Merges a `usage` object's counts into `parts` and reads the whole: a
/// usage, or why one that was there could not be read.
fn read_usage(
    raw: Option<&RawValue>,
    parts: &mut Map<String, Value>,
) -> (Option<crate::Usage>, Option<String>) {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return (None, None);
    };
    match serde_json::from_str::<Map<String, Value>>(raw.get()) {
        Ok(reported) => {
            parts.extend(reported.into_iter().filter(|(_, count)| count.is_u64()));
            (Some(usage(Some(&Value::Object(parts.clone())))), None)
        }
        Err(error) => (None, Some(format!("unreadable `usage`: {error}"))),
    }
}

/// Appends the text of a content block or delta.
fn block_text(block: &RawValue, out: &mut String) {
    let Ok(view) = serde_json::from_str::<TextView>(block.get()) else {
        return;
    };
    for part in [view.text, view.thinking, view.partial_json]
        .into_iter()
        .flatten()
    {
        out.push_str(&part);
    }
    if let Some(input) = view.input.filter(|input| input.get() != "{}") {
        out.push_str(input.get());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Usage;

    #[test]
    fn an_error_event_ends_the_stream_as_a_failure() {
        let mut reader = EventReader::default();
        let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        let read = reader
            .event(error.to_string().as_bytes(), "claude", &mut String::new())
            .unwrap();
        assert!(read.ends_stream);
        assert_eq!(read.failure.as_deref(), Some("Overloaded"));
    }

    #[test]
    fn a_message_keeps_every_byte_but_the_model() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
            "content":[{"type":"thinking","thinking":"Let me see.","signature":"EqQBCkYIBxgCKkDz"},
                       {"type":"text","text":"Hi","citations":null},
                       {"type":"tool_use","id":"toolu_1","name":"f","input":{"x":1.10}}],
            "stop_reason":"tool_use","usage":{"input_tokens":12,"cache_read_input_tokens":100000,
            "cache_creation_input_tokens":200,"output_tokens":30,"service_tier":"standard"}}"#;
        let mut text = String::new();
        let out = rewrite_message(body, "claude", &mut text).unwrap();
        let expected =
            String::from_utf8_lossy(body).replace("claude-sonnet-4-5-20250929", "claude");
        assert_eq!(String::from_utf8(out.json.unwrap()).unwrap(), expected);
        assert_eq!(
            out.usage,
            Some(Usage::new(100_212, 30).with_cache(100_000, 200))
        );
        assert_eq!(text, r#"Let me see.Hi{"x":1.10}"#);
    }

    #[test]
    fn a_stream_reports_usage_from_its_parts_and_holds_only_openings() {
        let mut reader = EventReader::default();
        let mut text = String::new();
        let mut read = |event: Value| {
            reader
                .event(event.to_string().as_bytes(), "claude", &mut text)
                .unwrap()
        };
        let start = read(
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 1}}}),
        );
        assert!(!start.starts_reply && !start.ends_stream);
        assert_eq!(start.usage, None, "output is not known yet");
        let start: Value = serde_json::from_slice(&start.json.unwrap()).unwrap();
        assert_eq!(start["message"]["model"], "claude");
        assert!(!read(json!({"type": "ping"})).starts_reply);
        let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}});
        assert!(!read(block).starts_reply);
        let delta = read(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Hmm."}}));
        assert!(delta.starts_reply);
        read(
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}}),
        );
        let end = read(
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}),
        );
        assert_eq!(end.usage, Some(Usage::new(100, 7).with_cache(90, 0)));
        assert!(read(json!({"type": "message_stop"})).ends_stream);
        assert_eq!(text, "Hmm.");
    }

    #[test]
    fn what_is_not_json_fails_and_bad_usage_is_named() {
        let mut reader = EventReader::default();
        assert!(reader.event(b"not json", "a", &mut String::new()).is_err());
        let out = reader
            .event(
                br#"{"type":"message_delta","usage":[1]}"#,
                "a",
                &mut String::new(),
            )
            .unwrap();
        assert!(out.usage_error.unwrap().contains("usage"));
    }
}
